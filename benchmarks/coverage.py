"""The task coverage table: every (architecture, task) row of ``tests/models/hf_tasks.py`` exported here from a
tiny folder with no --input, verified against PyTorch, beside what optimum-onnx exports for the same model type.

    .venv/bin/python benchmarks/coverage.py            # writes benchmarks/results/tasks-coverage.{md,json}
                                                       # and the table between the README's coverage markers

Each row is also a test (``tests/test_hf_tasks.py``, and ``tests/test_seq2seq.py`` / ``tests/test_generate.py``
for the generating ones), so the table cannot claim what the suite does not check. The optimum-onnx column
is read from its ``optimum/exporters/onnx/model_configs.py`` (``register_tasks_manager_onnx``) at commit
1939f27a (2026-04-15); "-with-past" variants are folded into their task.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.models import hf_tasks  # noqa: E402
from tests.models.lm import tiny_lm  # noqa: E402
from tests.models.seq2seq import tiny_seq2seq  # noqa: E402

from modelport.errors import ModelportError  # noqa: E402
from modelport.exporting import export  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"

# optimum-onnx's tasks per model type (sentence-similarity: its "transformer" type of sentence_transformers)
OPTIMUM = {
    "bert": {"feature-extraction", "fill-mask", "multiple-choice", "question-answering", "text-classification",
             "token-classification", "sentence-similarity"},
    "roberta": {"feature-extraction", "fill-mask", "multiple-choice", "question-answering", "text-classification",
                "token-classification", "sentence-similarity"},
    "vit": {"feature-extraction", "image-classification", "masked-im"},
    "resnet": {"feature-extraction", "image-classification"},
    "detr": {"feature-extraction", "object-detection", "image-segmentation"},
    "wav2vec2": {"feature-extraction", "automatic-speech-recognition", "audio-classification",
                 "audio-frame-classification", "audio-xvector"},
    "hubert": {"feature-extraction", "automatic-speech-recognition", "audio-classification"},
    "wavlm": {"feature-extraction", "automatic-speech-recognition", "audio-classification",
              "audio-frame-classification", "audio-xvector"},
    "clip": {"feature-extraction", "zero-shot-image-classification", "image-classification", "sentence-similarity"},
    "siglip": {"feature-extraction", "zero-shot-image-classification"},
    "t5": {"feature-extraction", "text2text-generation"},
    "bart": {"feature-extraction", "text2text-generation", "text-generation", "text-classification",
             "question-answering"},
    "marian": {"feature-extraction", "text2text-generation", "text-generation"},
    "whisper": {"feature-extraction", "automatic-speech-recognition", "audio-classification"},
    "gpt2": {"feature-extraction", "text-generation", "text-classification", "token-classification"},
    "llama": {"feature-extraction", "text-generation", "text-classification"},
}  # fmt: skip


# rows that generate: (architecture, task) -> (class, builder, the test file that checks it)
GENERATING = {
    ("gpt2", "text-generation"): ("GPT2LMHeadModel", lambda folder: tiny_lm("gpt2", folder), "test_generate.py"),
    ("llama", "text-generation"): ("LlamaForCausalLM", lambda folder: tiny_lm("llama", folder), "test_generate.py"),
    ("t5", "text2text-generation"): ("T5ForConditionalGeneration", lambda f: tiny_seq2seq("t5", f), "test_seq2seq.py"),
    ("bart", "text2text-generation"): (
        "BartForConditionalGeneration",
        lambda folder: tiny_seq2seq("bart", folder),
        "test_seq2seq.py",
    ),
    ("marian", "text2text-generation"): ("MarianMTModel", lambda f: tiny_seq2seq("marian", f), "test_seq2seq.py"),
    ("whisper", "automatic-speech-recognition"): (
        "WhisperForConditionalGeneration",
        lambda folder: tiny_seq2seq("whisper", folder),
        "test_seq2seq.py",
    ),
}


def measure(row: tuple[str, str], work: Path) -> dict:
    architecture, task = row
    folder = work / f"{architecture}-{task}"
    if row in GENERATING:
        model_class, builder, test = GENERATING[row]
        builder(folder)
    else:
        model_class, test = hf_tasks.model_class(row), "test_hf_tasks.py"
        hf_tasks.build(row, folder)
    started = time.perf_counter()
    record = {"architecture": architecture, "task": task, "class": model_class, "test": test}
    try:
        result = export(f"hf:{folder}", work / f"out-{architecture}-{task}")
    except ModelportError as exc:
        return {**record, "exported": False, "error": str(exc)}
    manifest = result.bundle.manifest
    encoder = (manifest.get("generation") or {}).get("encoder") or {}  # an encoder-decoder: show the encoder's inputs
    parity = result.parity
    record.update(
        exported=True,
        verified=bool(parity.passed),
        seconds=round(time.perf_counter() - started, 1),
        inputs=[i["name"] for i in encoder.get("inputs", manifest["inputs"])],
        strategy=manifest["capture"].get("strategy"),
        checks=len(parity.checks) if hasattr(parity, "checks") else None,
        feeds=len(getattr(parity, "results", []) or []),
    )
    return record


def table(records: list[dict]) -> str:
    lines = [
        "| architecture | task | class | inputs inferred | modelport | test | optimum-onnx |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r["exported"] and r["checks"] is not None:
            verdict = f"{r['checks']} generation checks passed" if r["verified"] else "**failed**"
        elif r["exported"]:
            verdict = f"verified on {r['feeds']} feeds ({r['strategy']})" if r["verified"] else "**failed**"
        else:
            verdict = f"**refused**: {r['error'].split(' — ')[0]}"
        optimum = "yes" if r["task"] in OPTIMUM.get(r["architecture"], set()) else "no"
        names = r.get("inputs", [])
        inputs = ", ".join(f"`{name}`" for name in names if not name.startswith("past_key_values"))
        inputs += " + the KV cache" if any(name.startswith("past_key_values") for name in names) else ""
        row = f"| {r['architecture']} | {r['task']} | {r['class']} | {inputs} | {verdict} | `{r['test']}` | {optimum} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    only = set(sys.argv[1:])  # architectures to run (a quick look; the files are written only for all)
    with tempfile.TemporaryDirectory() as tmp:
        records = []
        for row in [r for r in [*hf_tasks.ROWS, *GENERATING] if not only or r[0] in only]:
            records.append(measure(row, Path(tmp)))
            print(records[-1], flush=True)
    text = table(records)
    if only:
        print(text)
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tasks-coverage.json").write_text(json.dumps(records, indent=2) + "\n")
    header = (
        "# Task coverage\n\nGenerated by `benchmarks/coverage.py` (tiny folders, random weights; a test per row).\n\n"
    )
    (RESULTS / "tasks-coverage.md").write_text(header + text + "\n")
    readme = ROOT / "README.md"
    body = readme.read_text()
    if START in body and END in body:
        before, rest = body.split(START, 1)
        readme.write_text(before + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
