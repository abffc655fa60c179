"""``modelport optimize`` on generation bundles, measured: quality on a model that knows something, speed on
a big one.

1. Quality: the LLaMA-style model trained here on the Python standard library (``stdlib_lm.py``, trained
   first when ``build/models/stdlib-lm`` is missing: ~20 minutes), exported with a KV cache, optimized with
   the default budget on held-out standard-library text it never saw: every candidate's top1, perplexity
   ratio, KL and greedy agreement against fp32 PyTorch, and the choice.
2. Speed: ``llama-0.5b`` of ``run.py`` (random weights, 1.72 GB read per fp32 step), every candidate built
   and timed by the same search (batch 1, 64-token prompt, 32 new tokens, median of 3) on token ids of the
   same text, under a budget nothing fails: with random weights the quality figures are noise, so only
   decode speed and size are reported from this part.

    .venv/bin/python benchmarks/generate/optimize.py [--parts quality,speed]

Results: ``benchmarks/results/generate-optimize.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as generate_run  # noqa: E402  (the generation benchmark's models and machine facts)

ROOT = HERE.parents[1]
TRAINED = ROOT / "build" / "models" / "stdlib-lm"
WORK = ROOT / "build" / "generate-optimize"
RESULTS = ROOT / "benchmarks" / "results"
LOOSE = "top1>=0.000001,ppl<=1000000,kl<=1000000"  # random weights: nothing is judged, everything timed


def quality(say) -> dict:
    import modelport
    from modelport.cli.optimize_command import TEXT_HEADERS, text_rows

    if not (TRAINED / "train.json").is_file():
        subprocess.run([sys.executable, str(HERE / "stdlib_lm.py"), "--out", str(TRAINED)], check=True)
    trained = json.loads((TRAINED / "train.json").read_text())
    bundle = WORK / "stdlib-lm-bundle"
    if not (bundle / "modelport.json").is_file():
        say("exporting the trained model")
        modelport.export(f"hf:{TRAINED}", bundle, task="text-generation")
    start = time.perf_counter()
    result = modelport.optimize(
        bundle, WORK / "stdlib-lm-opt", data=TRAINED / "held-out.txt", progress=lambda t, _d: say(t)
    )
    search = result.search
    return {
        "model": f"stdlib-lm ({trained['parameters'] / 1e6:.1f} M parameters, {trained['tokens_seen']} tokens seen, "
        f"held-out perplexity {trained['held_out_perplexity']:.1f})",
        "seconds": round(time.perf_counter() - start, 1),
        "data": search.data.describe(),
        "budget": search.budget.text,
        "chosen": search.chosen.name if search.chosen else None,
        "headers": list(TEXT_HEADERS),
        "rows": text_rows(search),
        "candidates": result.to_json()["candidates"],
    }


def speed(say) -> dict:
    import modelport
    from modelport.cli.optimize_command import TEXT_HEADERS, text_rows
    from modelport.sources.hf import load_tokenizer

    _, bundle, step = generate_run.prepare("llama-0.5b", say)
    tok = load_tokenizer(TRAINED)
    lines = (TRAINED / "held-out.txt").read_text().splitlines()
    ids = [tok(line)["input_ids"] for line in lines if line.strip()]
    start = time.perf_counter()
    result = modelport.optimize(bundle, WORK / "llama-0.5b-opt", data=ids, budget=LOOSE, progress=lambda t, _d: say(t))
    search = result.search
    keep = [h for h in TEXT_HEADERS if h not in ("top1", "ppl x", "kl", "greedy", "verdict")]
    cols = [TEXT_HEADERS.index(h) for h in keep]
    return {
        "model": f"llama-0.5b (random weights, {step / 1e9:.2f} GB read per fp32 step)",
        "seconds": round(time.perf_counter() - start, 1),
        "headers": keep,
        "rows": [[row[i] for i in cols] for row in text_rows(search)],
        "candidates": result.to_json()["candidates"],
    }


def markdown(records: dict, machine: dict) -> str:
    where = f"Machine: {machine['cpu']}, {machine['threads']} threads."
    lines = ["# optimize on generation bundles", "", f"`benchmarks/generate/optimize.py`. {where}", ""]
    if "quality" in records:
        q = records["quality"]
        lines += [f"## Quality: {q['model']}", "",
                  f"Budget {q['budget']} against fp32 PyTorch on {q['data']}; figures of the search half; chosen: "
                  f"{q['chosen']} (`*`). {q['seconds']:.0f} s.", "",
                  "| " + " | ".join(q["headers"]) + " |", "|" + "---|" * len(q["headers"])]  # fmt: skip
        lines += ["| " + " | ".join(r) + " |" for r in q["rows"]] + [""]
    if "speed" in records:
        s = records["speed"]
        lines += [f"## Speed: {s['model']}", "",
                  f"Batch 1, 64-token prompt, 32 new tokens, median of 3 generations each. {s['seconds']:.0f} s."
                  + (" Kept from an earlier run (`--parts` left it out)." if s.get("kept_from_an_earlier_run") else ""),
                  "", "| " + " | ".join(s["headers"]) + " |", "|" + "---|" * len(s["headers"])]  # fmt: skip
        lines += ["| " + " | ".join(r) + " |" for r in s["rows"]] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="quality,speed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    previous = args.out / "generate-optimize.json"
    records = json.loads(previous.read_text()) if previous.is_file() else {}  # a part not rerun is kept
    records.pop("machine", None)
    if "quality" in args.parts:
        records["quality"] = quality(say)
    if "speed" in args.parts:
        records["speed"] = speed(say)
    for part in ("quality", "speed"):
        if part in records and part not in args.parts:
            records[part]["kept_from_an_earlier_run"] = True
    from modelport.benchmark.machine import fingerprint
    from modelport.machine import physical_cores

    threads = physical_cores()
    machine = {"cpu": fingerprint(threads).get("cpu", "?"), "threads": threads}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generate-optimize.json").write_text(json.dumps({"machine": machine, **records}, indent=2))
    (args.out / "generate-optimize.md").write_text(markdown(records, machine))
    print(markdown(records, machine))


if __name__ == "__main__":
    main()
