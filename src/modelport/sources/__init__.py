"""Model sources: turn the MODEL argument into a module to export, and its specs when it knows them.

``file.py:factory`` and ``package.module:factory`` (code), ``model.pt`` (TorchScript),
``model.pt2`` (ExportedProgram), ``hf:DIR`` (a local transformers folder), ``demo:minilm``.
Nothing here unpickles an arbitrary file.
"""

from __future__ import annotations

from modelport.errors import SourceError
from modelport.sources.loaded import MODEL_FORMS, LoadedModel

__all__ = ["LoadedModel", "load_model", "to_eval", "MODEL_FORMS"]


def load_model(ref: str) -> LoadedModel:
    if ref.startswith("demo:"):
        from modelport.sources import demo

        loaded = demo.load(ref)
    elif ref.startswith("hf:"):
        from modelport.sources import hf
        from modelport.sources.sentence_transformers import load_sentence_transformer, pipeline_folder

        folder = pipeline_folder(ref)
        loaded = load_sentence_transformer(folder) if folder else hf.load(ref)
    elif ref.endswith(".pt2"):
        from modelport.sources import exported_program

        loaded = exported_program.load(ref)
    elif ref.endswith((".pt", ".pth", ".ts")):
        from modelport.sources import torchscript

        loaded = torchscript.load(ref)
    elif ":" in ref:
        from modelport.sources import code

        loaded = code.load(ref)
    else:
        raise SourceError(f"cannot tell what kind of model {ref!r} is", f"MODEL is one of: {MODEL_FORMS}")
    return to_eval(loaded)


def to_eval(loaded: LoadedModel) -> LoadedModel:
    module = loaded.module
    if loaded.kind == "exported_program":  # its graph was captured in one mode already; eval() is refused
        return loaded
    if getattr(module, "training", False):
        affected = sorted(
            {
                type(m).__name__
                for m in module.modules()
                if "Dropout" in type(m).__name__
                or "BatchNorm" in type(m).__name__
                or "InstanceNorm" in type(m).__name__
            }
        )
        loaded.notes.append(
            "the model was in training mode; modelport exports it in eval mode, as model.eval() would"
            + (f" (this changes {', '.join(affected)})" if affected else "")
        )
    if hasattr(module, "eval"):
        module.eval()
    return loaded
