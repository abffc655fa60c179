"""OpenVINO stateful decoding against explicit cache tensors (and ONNX Runtime), on the same bundles.

    .venv/bin/python benchmarks/generate/openvino_state.py              # llama-0.5b fp32 and int4
    .venv/bin/python benchmarks/generate/openvino_state.py --bundles build/x/bundle,build/y/bundle

Each bundle runs on: ONNX Runtime (the cache bound as OrtValues), OpenVINO with the cache fed and fetched as
tensors every step, OpenVINO stateful (the cache in the compiled model's variables), and stateful with a u8
KV cache asked of the CPU plugin. Batch 1 and 4, a 128-token prompt of random ids, 64 new tokens, greedy,
end-of-sequence ignored; rounds alternate the systems in rotated order and medians are reported. Each row
says whether its first row's tokens equal ONNX Runtime's, and what the cache is held as.

The default bundles: the generation benchmark's llama-0.5b (``benchmarks/generate/run.py``; exported once
into ``build/generate``) and its int4 form (``int4-sym-128``, built here once). Results:
``benchmarks/results/openvino-state.json`` and ``openvino-state.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as generate_run  # noqa: E402  (the generation benchmark's models and machine facts)

RESULTS = generate_run.RESULTS
SYSTEMS = {  # name -> backend, load options
    "ort:cpu": ("ort:cpu", {}),
    "openvino tensors": ("openvino:f32", {}),
    "openvino stateful": ("openvino:f32", {"stateful": True}),
    "openvino stateful, u8 cache asked": ("openvino:f32", {"stateful": True, "kv_cache_precision": "u8"}),
}


def int4_bundle(source: Path) -> Path:
    """``source``'s int4-sym-128 form (ONNX Runtime's MatMulNBits), built once beside it."""
    from modelport.bundle import Bundle
    from modelport.optimization.text_search import build_candidate, text_plan

    target = source.parent / "int4-sym-128"
    if not (target / "modelport.json").is_file():
        candidate = next(c for c in text_plan(["int4-sym-128"]) if c.name == "int4-sym-128")
        build_candidate(candidate, Bundle.open(source), source.parent, data=None)  # writes source.parent/NAME
    return target


def measure(bundle: Path, rounds: int, threads: int, say) -> list[dict]:
    from modelport.generation.api import load_generator

    rng = np.random.default_rng(0)
    vocab = json.loads((bundle / "modelport.json").read_text())["generation"]["layout"]["vocab_size"]
    prompts = {batch: rng.integers(3, vocab, (batch, 128)).tolist() for batch in (1, 4)}
    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    tokens: dict[tuple[str, int], list[int]] = {}
    held: dict[str, str] = {}
    names = list(SYSTEMS)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            backend, options = SYSTEMS[name]
            with load_generator(bundle, backend, threads=threads, **options) as lm:
                lm.generate([prompts[1][0][:8]], max_new_tokens=4, ignore_eos=True)  # warm-up
                for batch, rows in prompts.items():
                    out = lm.generate(rows, max_new_tokens=64, ignore_eos=True)
                    times.setdefault((name, batch), []).append(
                        (out[0].time_to_first_token_s, (out[0].decode_tokens_per_s or 0.0) * batch)
                    )
                    tokens[(name, batch)] = out[0].token_ids
                held[name] = lm.describe().get("kv_cache_held_as") or "tensors"
            say(f"{bundle.name} round {round_ + 1}: {name}")
    rows = []
    for (name, batch), got in times.items():
        base = statistics.median(t for _, t in times[("ort:cpu", batch)])
        rate = statistics.median(t for _, t in got)
        rows.append({"bundle": f"{bundle.parent.name}/{bundle.name}", "system": name, "batch": batch,
                     "ttft_s": round(statistics.median(f for f, _ in got), 3), "decode_tokens_per_s": round(rate, 2),
                     "vs_ort": round(rate / base, 2), "cache": held[name],
                     "same_tokens_as_ort": tokens[(name, batch)] == tokens[("ort:cpu", batch)]})  # fmt: skip
    return rows


def markdown(rows: list[dict], machine: dict) -> str:
    lines = ["# OpenVINO stateful decoding against explicit cache tensors", "",
             f"`benchmarks/generate/openvino_state.py`. Machine: {machine['cpu']}, {machine['threads']} threads. "
             "Prompt 128 random ids, 64 new tokens, greedy; medians of alternating rounds.", "",
             "| bundle | system | batch | first token (s) | decode tok/s | vs ort:cpu | cache held as "
             "| same tokens as ort |",
             "|---|---|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["bundle"], r["batch"], list(SYSTEMS).index(r["system"]))):
        lines.append(f"| {r['bundle']} | {r['system']} | {r['batch']} | {r['ttft_s']} | {r['decode_tokens_per_s']} | "
                     f"{r['vs_ort']}x | {r['cache']} | {'yes' if r['same_tokens_as_ort'] else 'no'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", default="", help="comma-separated generation bundles (default: llama-0.5b, int4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    from modelport.benchmark.machine import fingerprint
    from modelport.machine import physical_cores

    threads = physical_cores()
    if args.bundles:
        bundles = [Path(b) for b in args.bundles.split(",")]
    else:
        _, fp32, _ = generate_run.prepare("llama-0.5b", say)
        bundles = [fp32, int4_bundle(fp32)]
    rows = [row for bundle in bundles for row in measure(bundle, args.rounds, threads, say)]
    machine = {"cpu": fingerprint(threads).get("cpu", "?"), "threads": threads}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "openvino-state.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    (args.out / "openvino-state.md").write_text(markdown(rows, machine))
    print(markdown(rows, machine))


if __name__ == "__main__":
    main()
