"""Generation benchmark: time to first token and decode tokens/s, every system on the same prompts, one run.

    .venv/bin/python benchmarks/generate/run.py            # both models, every system found (make bench)
    .venv/bin/python benchmarks/generate/run.py --models gpt2-small --rounds 2

Models (random weights from configs, seeded; nothing downloaded): GPT-2 small (124 M) and a LLaMA-style
model of ~0.5 B parameters (grouped-query attention, RoPE). Prompts: random token ids, 128 per row, batch 1
and 4, greedy, exactly 128 new tokens (end-of-sequence ignored). Systems: transformers eager ``generate``
(fp32, and bf16 where the CPU has AVX512-BF16 or AMX), ``torch.compile`` (static cache), modelport generate on
ONNX Runtime (IO binding) and on OpenVINO (fp32), and the peers in venvs of their own when set up
(``benchmarks/generate/peers/setup.sh optimum|genai``): optimum-onnx ``ORTModelForCausalLM`` and
onnxruntime-genai with its model builder. Rounds alternate the systems in rotated order, so a slow spell
of the shared machine falls on all; medians are reported.

The roofline: decoding one step reads every weight once (the input embedding table aside: a step reads one
row of it, unless it is tied to the LM head), so tokens/s <= batch x read bandwidth / bytes read per step.
The read bandwidth is measured in the same run, with the benchmark's threads (torch.sum over 1 GiB of
fp32, best of 5, before and after each round; the median is used); each row gives its fraction of it.
That bandwidth is itself an estimate (one way of reading memory): a row near or above 100% decodes at
the speed of memory. Also measured: modelport's tokens/s at 32 and at 512 new tokens (the cost per token
must not grow with what was generated beyond attention itself).

Results: ``benchmarks/results/generate.json`` and ``generate.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "generate"
RESULTS = ROOT / "benchmarks" / "results"
PEERS = {
    "optimum-onnx": (ROOT / "build" / "gen-optimum-env" / "bin" / "python", "peer_optimum.py"),
    "onnxruntime-genai": (ROOT / "build" / "gen-genai-env" / "bin" / "python", "peer_genai.py"),
}
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_model(name: str) -> Any:
    import transformers as T

    torch.manual_seed(0)
    if name == "gpt2-small":
        config = T.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
        return T.GPT2LMHeadModel(config).eval()
    if name == "llama-0.5b":
        config = T.LlamaConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                               num_key_value_heads=4, vocab_size=64000, max_position_embeddings=2048,
                               tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)  # fmt: skip
        return T.LlamaForCausalLM(config).eval()
    raise SystemExit(f"unknown model {name!r}: gpt2-small or llama-0.5b")


def prepare(name: str, say: Any) -> tuple[Path, Path, int]:
    """The model's folder and its modelport bundle (exported and verified once, then reused)."""
    import modelport

    folder, bundle = BUILD / name / "hf", BUILD / name / "bundle"
    if not (folder / "config.json").is_file():
        build_model(name).save_pretrained(folder)
    if not (bundle / "modelport.json").is_file():
        say(f"{name}: exporting and verifying the generation bundle")
        start = time.perf_counter()
        result = modelport.export(f"hf:{folder}", bundle, task="text-generation", progress=say)
        say(f"{name}: {result.parity.summary()} ({time.perf_counter() - start:.0f} s)")
    return folder, bundle, step_bytes(folder)


def step_bytes(folder: Path) -> int:
    """Bytes of weights one decode step reads: all of them but the input embedding tables (token and, for
    GPT-2, position), of which a step reads one row each, unless the token table is also the LM head."""
    from safetensors import safe_open

    tied = json.loads((folder / "config.json").read_text()).get("tie_word_embeddings", True)
    lookups = ("wpe.weight",) if tied else ("wpe.weight", "wte.weight", "embed_tokens.weight")
    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "np") as f:
            for key in f.keys():
                if not key.endswith(lookups):
                    view = f.get_slice(key)
                    total += int(np.prod(view.get_shape())) * _BYTES[view.get_dtype()]
    return total


_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def bandwidth(threads: int, size: int = 2**30, repeats: int = 5) -> float:
    """Bytes per second read by torch.sum over ``size`` bytes of fp32 with ``threads`` threads, best of
    ``repeats`` (decoding reads its weights; it writes next to nothing)."""
    data = torch.ones(size // 4, dtype=torch.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = float("inf")
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            torch.sum(data)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return size / best


class _Clock:
    """A transformers streamer that only notes when each step's tokens arrive (the first call is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class Transformers:
    def __init__(self, folder: Path, dtype: torch.dtype, compiled: bool) -> None:
        import transformers as T

        self.model = T.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        if compiled:
            self.model.generation_config.cache_implementation = "static"
            self.model.forward = torch.compile(self.model.forward, dynamic=False)

    def run(self, ids: np.ndarray, new: int) -> tuple[float, float, list[int]]:
        clock = _Clock()
        tensor = torch.from_numpy(ids)
        start = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=new,
                                      min_new_tokens=new, do_sample=False, streamer=clock, pad_token_id=0)  # fmt: skip
        first, end = clock.times[1], clock.times[-1]
        return first - start, (new - 1) * len(ids) / (end - first), out[0, ids.shape[1] :].tolist()

    def close(self) -> None:
        del self.model


class Modelport:
    def __init__(self, bundle: Path, backend: str, threads: int) -> None:
        from modelport.generation.api import load_generator

        self.lm = load_generator(bundle, backend, threads=threads)

    def run(self, ids: np.ndarray, new: int) -> tuple[float, float, list[int]]:
        results = self.lm.generate([row.tolist() for row in ids], max_new_tokens=new, ignore_eos=True)
        first = results[0].time_to_first_token_s
        return first, (results[0].decode_tokens_per_s or 0.0) * len(ids), results[0].token_ids

    def close(self) -> None:
        self.lm.close()


class PeerFailed(Exception):
    """A peer's own error line (it already names the exception type)."""


class Peer:
    def __init__(self, name: str, folder: Path, prompts: dict[int, Path], threads: int) -> None:
        self.python, self.script = PEERS[name]
        self.folder, self.prompts, self.threads, self.name = folder, prompts, threads, name
        self.work = folder.parent / f"peer-{name}"

    def run(self, ids: np.ndarray, new: int) -> tuple[float, float, list[int]]:
        command = [str(self.python), str(ROOT / "benchmarks" / "generate" / "peers" / self.script),
                   "--model", str(self.folder), "--work", str(self.work), "--batch", str(len(ids)),
                   "--prompt-tokens", str(ids.shape[1]), "--new-tokens", str(new), "--rounds", "1",
                   "--threads", str(self.threads), "--prompt-ids", str(self.prompts[len(ids)])]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines or "error" in lines[-1]:
            why = lines[-1]["error"] if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise PeerFailed(why)
        row = lines[-1]
        return row["ttft_s"], row["decode_tokens_per_s"], row["first_row_tokens"]

    def close(self) -> None:
        pass


def _reason(exc: Exception) -> str:
    first = (str(exc).splitlines() or [""])[0][:200]
    return first if isinstance(exc, PeerFailed) else f"{type(exc).__name__}: {first}"


def systems(folder: Path, bundle: Path, prompts: dict[int, Path], threads: int, wanted: set[str] | None) -> dict:
    from modelport.runtime.openvino import cpu_has_bf16

    makers = {
        "transformers eager fp32": lambda: Transformers(folder, torch.float32, False),
        "torch.compile fp32": lambda: Transformers(folder, torch.float32, True),
        "modelport ort:cpu": lambda: Modelport(bundle, "ort:cpu", threads),
        "modelport openvino:f32": lambda: Modelport(bundle, "openvino:f32", threads),
    }
    if cpu_has_bf16():
        makers["transformers eager bf16"] = lambda: Transformers(folder, torch.bfloat16, False)
    for name, (python, _) in PEERS.items():
        if python.exists():
            makers[name] = lambda name=name: Peer(name, folder, prompts, threads)
    return {k: v for k, v in makers.items() if wanted is None or k in wanted}


def measure(model: str, args: argparse.Namespace, say: Any) -> dict[str, Any]:
    folder, bundle, weight_bytes = prepare(model, say)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(0)
    prompts = {b: rng.integers(3, vocab, (b, args.prompt_tokens)).astype(np.int64) for b in args.batches}
    files = {}
    for b, ids in prompts.items():
        files[b] = BUILD / model / f"prompts-{b}.json"
        files[b].write_text(json.dumps(ids.tolist()))
    makers = systems(folder, bundle, files, args.threads, set(args.systems.split(",")) if args.systems else None)
    rows: dict[tuple[str, int], list[tuple[float, float]]] = {}
    tokens: dict[tuple[str, int], list[int]] = {}
    errors: dict[str, str] = {}
    live = {}
    for name, make in makers.items():
        say(f"{model}: loading {name}")
        try:
            live[name] = make()
            for b in args.batches:  # warm-up; torch.compile compiles here, for the static cache of the timed length
                live[name].run(prompts[b], args.new_tokens if "compile" in name else 4)
        except Exception as exc:  # a system that cannot run is a row with its reason, not a crash
            errors[name] = _reason(exc)
            live.pop(name, None)
    names = list(live)
    bw = [bandwidth(args.threads)]
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)] if names else []
        for name in order:
            for b in args.batches:
                say(f"{model}: round {r + 1}/{args.rounds}, {name}, batch {b}")
                try:
                    ttft, rate, first_row = live[name].run(prompts[b], args.new_tokens)
                except Exception as exc:
                    errors[name] = _reason(exc)
                    continue
                rows.setdefault((name, b), []).append((ttft, rate))
                tokens[(name, b)] = first_row
        bw.append(bandwidth(args.threads))
    flat = {}
    if "modelport ort:cpu" in live:
        for new in args.flat:
            runs = [live["modelport ort:cpu"].run(prompts[1], new)[1] for _ in range(max(1, args.rounds - 1))]
            flat[new] = statistics.median(runs)
    for runner in live.values():
        runner.close()
    bandwidth_bps = statistics.median(bw)
    return {
        "model": model,
        "weight_bytes": weight_bytes,
        "bandwidth_gbps": bandwidth_bps / 1e9,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "rows": [
            {
                "system": name,
                "batch": b,
                "ttft_s": statistics.median(t for t, _ in values),
                "decode_tokens_per_s": statistics.median(v for _, v in values),
                "rounds": len(values),
                "roofline_tokens_per_s": b * bandwidth_bps / weight_bytes,
                "same_tokens_as_eager": tokens.get((name, b)) == tokens.get(("transformers eager fp32", b)),
            }
            for (name, b), values in rows.items()
        ],
        "errors": errors,
        "flat": {str(k): v for k, v in flat.items()},
        "bundle_verification": json.loads((bundle / "modelport.json").read_text())["parity"]["checks"][0]["detail"],
    }


def markdown(records: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = ["# Generation: time to first token and decode tokens/s", "",
             "`benchmarks/generate/run.py` (one run; medians of alternating rounds). Greedy, random-weight models, "
             f"random prompt ids. Machine: {machine['cpu']}, {machine['threads']} threads; torch {torch.__version__}.",
             ""]  # fmt: skip
    for rec in records:
        lines += [f"## {rec['model']} — {rec['weight_bytes'] / 1e9:.2f} GB of fp32 weights read per step, "
                  f"prompt {rec['prompt_tokens']}, {rec['new_tokens']} new tokens; "
                  f"read bandwidth {rec['bandwidth_gbps']:.1f} GB/s (torch.sum, {rec['threads']} threads)", "",
                  "| system | batch | TTFT ms | decode tokens/s | x eager fp32 | of roofline | same tokens as eager |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        eager = {r["batch"]: r for r in rec["rows"] if r["system"] == "transformers eager fp32"}
        for row in sorted(rec["rows"], key=lambda r: (r["batch"], -r["decode_tokens_per_s"])):
            base = eager.get(row["batch"])
            ratio = f"{row['decode_tokens_per_s'] / base['decode_tokens_per_s']:.2f}x" if base else "-"
            lines.append(f"| {row['system']} | {row['batch']} | {row['ttft_s'] * 1000:.0f} | "
                         f"{row['decode_tokens_per_s']:.1f} | {ratio} | "
                         f"{row['decode_tokens_per_s'] / row['roofline_tokens_per_s']:.0%} | "
                         f"{'yes' if row['same_tokens_as_eager'] else 'no'} |")  # fmt: skip
        for name, why in rec["errors"].items():
            lines.append(f"| {name} | - | - | not run: {why} | | | |")
        if rec["flat"]:
            parts = [f"{rate:.1f} tokens/s at {new} new tokens" for new, rate in rec["flat"].items()]
            rates = list(rec["flat"].values())
            lines += ["", f"Cost per token (modelport ort:cpu, batch 1): {', '.join(parts)} "
                      f"({rates[-1] / rates[0]:.0%} of the shorter run's rate)."]  # fmt: skip
        lines += ["", f"Bundle check at export: {rec['bundle_verification']}.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2-small,llama-0.5b")
    parser.add_argument("--systems", default=None, help="comma-separated names (default: every one found)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--flat", type=lambda s: [int(x) for x in s.split(",")], default=[32, 512])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from modelport.benchmark.machine import fingerprint

    machine = fingerprint(args.threads)
    records = [measure(m, args, say) for m in args.models.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generate.json").write_text(json.dumps({"machine": machine, "records": records}, indent=2) + "\n")
    (args.out / "generate.md").write_text(markdown(records, {"cpu": machine.get("cpu", "?"), "threads": args.threads}))
    print((args.out / "generate.md").read_text())


if __name__ == "__main__":
    main()
