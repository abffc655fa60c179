"""The demo job: export the real all-MiniLM-L6-v2, then embed real sentences with the ONNX model and
compare with sentence-transformers' own ``encode()``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelport.compare import cosine
from modelport.errors import ParityError
from modelport.exporting import ExportResult, export
from modelport.runtime.ort import OrtRunner

__all__ = ["run_demo", "DemoReport", "SENTENCES", "COSINE_THRESHOLD"]

COSINE_THRESHOLD = 0.9999
SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "ONNX Runtime executes the exported graph on the CPU.",
    "Exports that load fine but answer wrong are worse than exports that fail loudly, because nobody notices them.",
]


@dataclass
class DemoReport:
    export: ExportResult
    sentences: list[str]
    token_counts: list[int] = field(default_factory=list)
    cosines: list[float] = field(default_factory=list)
    threshold: float = COSINE_THRESHOLD

    @property
    def passed(self) -> bool:
        return bool(self.cosines) and min(self.cosines) >= self.threshold


def embed(bundle_model: Path, sentences: list[str]) -> tuple[np.ndarray, list[int]]:
    """Tokenize with the package's tokenizer (padded batch) and run the ONNX model."""
    from transformers import AutoTokenizer

    from modelport.sources.demo import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder(), local_files_only=True)
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="np")
    feed = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with OrtRunner(bundle_model) as runner:
        outputs = runner.infer(feed)
    return outputs["sentence_embedding"], [int(n) for n in feed["attention_mask"].sum(1)]


def reference_embeddings(sentences: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from modelport.sources.demo import minilm_folder

    model = SentenceTransformer(str(minilm_folder()), device="cpu")
    return model.encode(sentences, convert_to_numpy=True)


def run_demo(output: Path, progress: Callable[[str], None] | None = None) -> DemoReport:
    result = export("demo:minilm", output, progress=progress)
    if progress:
        progress("embedding sentences with ONNX Runtime and sentence-transformers")
    ours, counts = embed(result.bundle.model_path, SENTENCES)
    theirs = reference_embeddings(SENTENCES)
    report = DemoReport(result, SENTENCES, counts, [cosine(a, b) for a, b in zip(ours, theirs, strict=True)])
    if not report.passed:
        raise ParityError(
            f"sentence embeddings differ from sentence-transformers (min cosine "
            f"{min(report.cosines):.6f} < {COSINE_THRESHOLD})",
            "this is a modelport bug; please report it",
        )
    return report
