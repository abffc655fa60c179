"""``modelport.load``: a ``LanguageModel`` for a generation bundle, a ``Seq2SeqModel`` for an encoder-decoder
one, a plain ``Runner`` for anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.bundle import MANIFEST, Bundle
from modelport.errors import UsageError
from modelport.generation.layout import DecoderLayout
from modelport.generation.model import LanguageModel, is_generation
from modelport.generation.seq2seq import ENCODER_FILE, Seq2SeqModel, is_seq2seq
from modelport.runtime.base import Runner
from modelport.runtime.registry import create, parse_backend

__all__ = ["load", "load_generator", "load_seq2seq"]


def load(
    model: Bundle | str | Path, backend: str | None = None, **options: Any
) -> Runner | LanguageModel | Seq2SeqModel:
    """A loaded runner for a bundle (or any ``.onnx`` file) on ``backend`` (default: the bundle's own, ort:cpu
    unless ``modelport optimize`` chose another): call it with numpy arrays or torch tensors
    (``runner(x=array)``) and close it, or use it as ``with modelport.load(path) as runner:``. A generation
    bundle gives a ``LanguageModel``: ``generate()``, ``stream()``, and raw calls as any runner.
    ``options`` are ``create``'s (``threads``, ``fallback``, ``optimization``, a runner's own settings)."""
    bundle = _bundle_of(model)
    if bundle is not None and is_generation(bundle):
        return load_generator(bundle, backend, **options)
    if bundle is not None and is_seq2seq(bundle):
        return load_seq2seq(bundle, backend, **options)
    return create(backend, bundle or model, **options).load()


def load_generator(
    model: Bundle | str | Path,
    backend: str | None = None,
    *,
    stateful: bool | None = None,
    prefill: str | None = None,
    **options: Any,
) -> LanguageModel:
    """A loaded ``LanguageModel``; ``UsageError`` with the fix for a bundle exported without a cache.

    ``stateful=True`` (OpenVINO backends) keeps the KV cache inside the compiled model. ``prefill`` (a
    backend, e.g. ``openvino:bf16``) runs prompt passes there and the steps after them on ``backend``, the
    same graph on both. The defaults are what ``optimize`` chose for the bundle's own backend (its
    ``runner_options``), else explicit tensors on one runtime."""
    bundle = model if isinstance(model, Bundle) else Bundle.open(model)
    if backend is None or backend == bundle.backend:
        recorded = dict((bundle.optimization or {}).get("runner_options") or {})
        stateful = recorded.pop("stateful", False) if stateful is None else stateful
        prefill = recorded.pop("prefill", None) if prefill is None else prefill
        options = {**recorded, **options}
    if stateful and is_generation(bundle):
        name = parse_backend(backend or bundle.backend).canonical
        if not name.startswith("openvino"):
            raise UsageError(f"stateful decoding runs on OpenVINO, not {name}", "use backend openvino:f32, or drop it")
        layout = DecoderLayout.from_json(bundle.manifest["generation"]["layout"])
        options["state"] = dict(zip(layout.past_names, layout.output_names[1:], strict=True))
    prompt_runner = None
    if prefill and is_generation(bundle):
        if stateful:
            raise UsageError("a stateful cache stays inside one OpenVINO model: it cannot take a prefill backend",
                             "drop prefill, or stateful")  # fmt: skip
        prompt_runner = create(prefill, bundle, threads=options.get("threads"))
    return LanguageModel(bundle, create(backend, bundle, **options), prompt_runner).load()


def load_seq2seq(model: Bundle | str | Path, backend: str | None = None, **options: Any) -> Seq2SeqModel:
    """A loaded ``Seq2SeqModel``: the decoder graph (``model.onnx``) and the encoder graph on one backend."""
    bundle = model if isinstance(model, Bundle) else Bundle.open(model)
    name = backend or bundle.backend
    decoder = create(name, bundle, **options)
    return Seq2SeqModel(bundle, decoder, create(name, bundle.path / ENCODER_FILE, **options)).load()


def _bundle_of(model: Any) -> Bundle | None:
    if isinstance(model, Bundle):
        return model
    if isinstance(model, (str, Path)) and Path(model).is_dir() and (Path(model) / MANIFEST).is_file():
        return Bundle.open(model)
    return None
