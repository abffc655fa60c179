"""Compressed generation against the peers at their own int4/int8 settings: quality on the trained model, speed
on the big ones, one run.

1. Quality, on the model ``stdlib_lm.py`` trains (the only one here whose next-token guesses mean
   something): ``modelport optimize`` with the default budget chooses a candidate; then every system scores
   the same held-out chunks (the ones the chosen bundle carries, text it never saw) teacher-forced, and its
   logits are compared with fp32 PyTorch's: top-1 agreement, perplexity ratio, KL, and the verdict against
   the same budget. A peer outside the budget is still timed, and marked so.
2. Speed, on ``llama-0.5b`` (``run.py``) and the 1.1 B TinyLlama-shaped model (``big.py``; run that first):
   modelport's chosen candidate, rebuilt on the big model with the same recipe, and every peer, batch 1 and
   4, a 128-token prompt (random ids, seeded), exactly 128 new tokens greedily. Every system runs in a process
   of its own per round (its peak RSS: the process tree's VmHWM; the process loads its model, warms up on 4 tokens,
   then generates), rounds alternate the systems in rotated order, medians are reported.

Systems: modelport (the chosen candidate, on the backend optimize chose), transformers eager bf16 (where the
CPU has bf16), and the peers of ``peers/`` whose venvs exist (``peers/setup.sh llamacpp|ct2|ovgenai|genai|vllm``):
llama.cpp GGUF Q4_0/Q4_K_M/Q8_0, CTranslate2 int8, OpenVINO GenAI int4/int8 (NNCF), onnxruntime-genai int4,
vLLM's CPU build in bf16 (it has no weight-only int4/int8 path for a plain transformers folder on CPU).

The roofline beside each row: tokens/s <= batch x read bandwidth / bytes one step reads (measured as in
``run.py``). modelport's bytes are exact: the graph's weights but the input embedding table (a step reads one
row of it). A peer's: its weight files less the embedding table at the file's mean bytes per parameter.

    .venv/bin/python benchmarks/generate/compressed.py [--models llama-0.5b,tinyllama-1.1b] [--rounds 3]

Results: ``benchmarks/results/generate-compressed.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as generate_run  # noqa: E402  (models, bandwidth)

sys.path.insert(0, str(HERE / "peers"))
import protocol as peer_protocol  # noqa: E402  (the peers' logits file, which the workers write too)

ROOT = HERE.parents[1]
BUILD = ROOT / "build" / "generate-compressed"
TRAINED = ROOT / "build" / "models" / "stdlib-lm"
BIG = ROOT / "build" / "generate" / "tinyllama-1.1b"
RESULTS = ROOT / "benchmarks" / "results"
PEER_DIR = HERE / "peers"
LOOSE = "top1>=0.000001,ppl<=1000000,kl<=1000000"  # random weights: the recipe was judged on the trained model
# (label, venv, script, precision)
PEERS = [
    ("llama.cpp Q4_0", "llamacpp", "peer_llamacpp.py", "q4_0"),
    ("llama.cpp Q4_K_M", "llamacpp", "peer_llamacpp.py", "q4_k_m"),
    ("llama.cpp Q8_0", "llamacpp", "peer_llamacpp.py", "q8_0"),
    ("CTranslate2 int8", "ct2", "peer_ct2.py", "int8"),
    ("OpenVINO GenAI int4", "ovgenai", "peer_ovgenai.py", "int4"),
    ("OpenVINO GenAI int8", "ovgenai", "peer_ovgenai.py", "int8"),
    ("onnxruntime-genai int4", "genai", "peer_genai.py", "int4"),
    ("vLLM CPU bf16", "vllm", "peer_vllm.py", "bf16"),
]


# -- the systems, each a command that follows the peers' protocol ---------------------------------------------


def commands(hf: Path, bundles: dict[str, Path], work: Path, bf16: bool) -> dict[str, list[str]]:
    """label -> the command, less the per-run arguments (--batch, --prompt-ids, ... or --score).

    BUNDLES: modelport's, by candidate name."""
    out = {f"modelport {name}": [sys.executable, __file__, "--worker", "modelport", "--model", str(bundle)]
           for name, bundle in bundles.items()}  # fmt: skip
    if bf16:
        out["transformers eager bf16"] = [sys.executable, __file__, "--worker", "transformers", "--model", str(hf)]
    for label, venv, script, precision in PEERS:
        python = ROOT / "build" / f"gen-{venv}-env" / "bin" / "python"
        if python.exists() and (PEER_DIR / script).is_file():
            out[label] = [str(python), str(PEER_DIR / script), "--model", str(hf), "--work",
                          str(work / f"peer-{venv}"), "--precision", precision]  # fmt: skip
    return out


def call(argv: list[str], timeout: float = 3600) -> dict:
    """Runs one system's process: its last JSON line, with its peak RSS; ``error`` on failure.

    The peak RSS is the largest sum over the process tree (the system's process and its children: vLLM runs
    its engine in one) of each process's ``VmHWM``, read every 50 ms. ``ru_maxrss`` from ``wait4`` cannot
    be used here: a forked child starts from this parent's high-water mark, which is larger than the
    smaller systems' own.
    """
    start = time.perf_counter()
    peak = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, cwd=ROOT)
        while proc.poll() is None:
            peak = max(peak, _tree_hwm(proc.pid))
            if time.perf_counter() - start > timeout:
                proc.kill()
                proc.wait()
                return {"error": f"timed out after {timeout:.0f} s"}
            time.sleep(0.05)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    last = (stderr.strip().splitlines() or ["no output"])[-1][:300]
    died = f"killed by signal {-proc.returncode} after: {last}" if proc.returncode < 0 else last
    row = lines[-1] if lines else {"error": died}
    row["wall_s"] = round(time.perf_counter() - start, 1)
    row["peak_rss_bytes"] = peak
    return row


def _tree_hwm(pid: int) -> int:
    """Sum of VmHWM (bytes) over PID and its descendants; 0 for a process already gone."""
    total = 0
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        total = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:"))
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _tree_hwm(int(child))
    except (OSError, StopIteration, ValueError):
        pass
    return total


# -- part 1: quality on the trained model ---------------------------------------------------------------------


def quality(args, say) -> dict:
    import optimize as generate_optimize

    from modelport.sources.hf import load_folder
    from modelport.verification.text_quality import TextBudget, score_texts
    from modelport.verification.text_verify import HELD_OUT_TOKENS, pytorch_logits

    chosen = generate_optimize.WORK / "stdlib-lm-opt"
    if not (chosen / "modelport.json").is_file():
        say("quality: optimize on the trained model (optimize.py's quality part)")
        generate_optimize.quality(say)
    manifest = json.loads((chosen / "modelport.json").read_text())
    entry = manifest["optimizations"][-1]
    budget = TextBudget.parse(entry["budget"])
    chunks_file = chosen / HELD_OUT_TOKENS
    chunks = json.loads(chunks_file.read_text())
    reference = pytorch_logits(load_folder(TRAINED, cache=True), chunks)
    bundles = {entry["candidate"]: chosen}
    for candidate in args.candidate.split(",") if args.candidate else []:  # the speed part's, judged here too
        if candidate == entry["candidate"]:
            continue
        bundles[candidate] = BUILD / "stdlib-lm" / f"modelport-{candidate}"
        if not (bundles[candidate] / "modelport.json").is_file():
            import modelport

            say(f"quality: modelport optimize --candidates {candidate}")
            modelport.optimize(generate_optimize.WORK / "stdlib-lm-bundle", bundles[candidate],
                               candidates=[candidate], data=TRAINED / "held-out.txt")  # fmt: skip
    rows = []
    for label, argv in commands(TRAINED, bundles, BUILD / "stdlib-lm", bf16=args.bf16).items():
        say(f"quality: {label}")
        out = BUILD / "stdlib-lm" / f"logits-{label.replace(' ', '_')}.npy"
        out.parent.mkdir(parents=True, exist_ok=True)
        row = call([*argv, "--score", str(chunks_file), "--score-out", str(out), "--threads", str(args.threads)])
        if "error" in row:
            rows.append({"system": label, "error": row["error"]})
            continue
        logits = np.load(out)
        score = score_texts(reference, [logits[i, : len(c)] for i, c in enumerate(chunks)], chunks)
        misses = score.misses(budget)
        rows.append({"system": label, **score.to_json(), "within": not misses, "misses": misses,
                     "weight_bytes": row.get("weight_bytes")})  # fmt: skip
        out.unlink()
    return {
        "model": json.loads((TRAINED / "train.json").read_text()),
        "chosen": entry["candidate"],
        "backend": entry["backend"],
        "budget": budget.text,
        "chunks": len(chunks),
        "tokens": sum(len(c) - 1 for c in chunks),
        "rows": rows,
        "modelport_recorded_held_out": entry.get("held_out"),
    }


# -- part 2: speed on the big models --------------------------------------------------------------------------


def prepare(model: str, candidate: str, say) -> tuple[Path, Path]:
    """The model's folder and modelport's bundle of ``candidate`` for it (built once)."""
    import modelport

    if model == "tinyllama-1.1b":
        hf, source = BIG / "hf", BIG / "bundle"
        if not (source / "modelport.json").is_file():
            raise SystemExit("run benchmarks/generate/big.py first: it exports the 1.1 B model")
    else:
        hf, source, _ = generate_run.prepare(model, say)
    out = BUILD / model / f"modelport-{candidate}"
    if not (out / "modelport.json").is_file():
        say(f"{model}: modelport optimize --candidates {candidate}")
        modelport.optimize(source, out, candidates=[candidate], budget=LOOSE, data=_ids(hf))
    return hf, out


def _ids(hf: Path) -> list[list[int]]:
    """Token ids of held-out standard-library text (the random-weight models carry no tokenizer of their own)."""
    from modelport.sources.hf import load_tokenizer

    tok = load_tokenizer(TRAINED)
    vocab = json.loads((hf / "config.json").read_text())["vocab_size"]
    lines = [line for line in (TRAINED / "held-out.txt").read_text().splitlines() if line.strip()]
    return [[t % vocab for t in tok(line)["input_ids"]] for line in lines]


def step_bytes(row: dict, hf: Path) -> int | None:
    """Bytes one decode step reads (see the module's doc): counted from the graph when the system's row names
    one (``graph``: modelport's bundle, onnxruntime-genai's model), else estimated from its weight files."""
    if row.get("graph"):
        return _graph_step_bytes(Path(row["graph"]))
    if not row.get("weight_bytes"):
        return None
    config = json.loads((hf / "config.json").read_text())
    return int(row["weight_bytes"] * (1 - config["vocab_size"] * config["hidden_size"] / _parameters(hf)))


def _graph_step_bytes(bundle: Path) -> int:
    import onnx
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(bundle / "model.onnx"), load_external_data=False)
    gathered = {n.input[0] for n in model.graph.node if n.op_type in ("Gather", "GatherBlockQuantized")}
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    total = 0
    for t in model.graph.initializer:
        if t.name in gathered and consumers.get(t.name) <= {"Gather", "GatherBlockQuantized"}:
            continue  # the input embedding table: one row per token
        if uses_external_data(t):
            total += int(next(e.value for e in t.external_data if e.key == "length"))
        else:
            total += len(t.raw_data) or int(np.prod(t.dims)) * 4
    return total


def _parameters(hf: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in hf.glob("*.safetensors"):
        with safe_open(str(file), "np") as f:
            total += sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    return total


def speed(model: str, candidate: str, args, say) -> dict:
    """CANDIDATE: modelport's, or several, comma-separated (each timed as a system of its own)."""
    built = {c: prepare(model, c, say) for c in candidate.split(",")}
    hf = next(iter(built.values()))[0]
    vocab = json.loads((hf / "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(0)
    prompts = {}
    for b in args.batches:
        prompts[b] = BUILD / model / f"prompts-{b}.json"
        prompts[b].write_text(json.dumps(rng.integers(3, vocab, (b, args.prompt_tokens)).tolist()))
    systems = commands(hf, {c: bundle for c, (_, bundle) in built.items()}, BUILD / model, bf16=args.bf16)
    if args.systems:  # a rerun of some systems only (labels as in the table, comma-separated)
        systems = {k: v for k, v in systems.items() if k in args.systems.split(",") or k.startswith("modelport")}

    def run_args(b: int, new: int) -> list[str]:
        return ["--batch", str(b), "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(new),
                "--rounds", "1", "--threads", str(args.threads), "--prompt-ids", str(prompts[b])]  # fmt: skip

    errors: dict[str, str] = {}
    for label, argv in systems.items():  # builds/converts once (not timed) and checks it runs
        say(f"{model}: preparing {label}")
        row = call([*argv, *run_args(1, 4)])
        if "error" in row:
            errors[label] = row["error"]
    live = [label for label in systems if label not in errors]
    samples: dict[tuple[str, int], list[dict]] = {}
    bw = [generate_run.bandwidth(args.threads)]
    for r in range(args.rounds):
        for label in live[r % len(live) :] + live[: r % len(live)] if live else []:
            for b in args.batches:
                say(f"{model}: round {r + 1}/{args.rounds}, {label}, batch {b}")
                row = call([*systems[label], *run_args(b, args.new_tokens)])
                if "error" in row:
                    errors[f"{label} (batch {b})"] = row["error"]
                else:
                    samples.setdefault((label, b), []).append(row)
        bw.append(generate_run.bandwidth(args.threads))
    bandwidth = statistics.median(bw)
    rows = []
    for (label, b), runs in samples.items():
        weights = runs[0].get("weight_bytes")
        step = step_bytes(runs[0], hf)
        rate = statistics.median(r["decode_tokens_per_s"] for r in runs)
        rows.append({
            "system": label, "batch": b, "rounds": len(runs),
            "ttft_s": statistics.median(r["ttft_s"] for r in runs),
            "decode_tokens_per_s": rate,
            "peak_rss_gib": max(r.get("peak_rss_bytes") or 0 for r in runs) / 2**30,
            "weight_bytes": weights, "step_bytes": step,
            "roofline_tokens_per_s": b * bandwidth / step if step else None,
            "of_roofline": rate / (b * bandwidth / step) if step else None,
        })  # fmt: skip
    return {"model": model, "candidate": candidate, "bandwidth_gbps": bandwidth / 1e9, "rows": rows, "errors": errors,
            "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads}  # fmt: skip


# -- the report -------------------------------------------------------------------------------------------------


def markdown(quality_part: dict | None, speeds: list[dict], machine: dict) -> str:
    lines = ["# Compressed generation: modelport's choice against the peers at their own int4/int8", ""]
    lines += [f"`benchmarks/generate/compressed.py`. Machine: {machine['cpu']}, {machine['threads']} threads.", ""]
    within = {}
    if quality_part:
        q = quality_part
        lines += [f"## Quality on the trained model (stdlib-lm), budget `{q['budget']}`", "",
                  f"{q['chunks']} held-out chunks ({q['tokens']} predicted tokens) of standard-library text, "
                  f"teacher-forced, against fp32 PyTorch. modelport chose `{q['chosen']}` ({q['backend']}).", "",
                  "| system | top-1 agreement | perplexity ratio | KL | within the budget |",
                  "|---|---:|---:|---:|---|"]  # fmt: skip
        for r in q["rows"]:
            if "error" in r:
                lines.append(f"| {r['system']} | not run: {r['error']} | | | |")
                continue
            within[r["system"]] = r["within"]
            verdict = "yes" if r["within"] else "no: " + "; ".join(r["misses"])
            lines.append(f"| {r['system']} | {r['top1']:.4f} | {r['ppl_ratio']:.4f} | {r['kl']:.4f} | {verdict} |")
        lines.append("")
    for s in speeds:
        lines += [f"## Speed: {s['model']} (modelport: `{s['candidate']}`)", "",
                  f"Prompt {s['prompt_tokens']} tokens, {s['new_tokens']} new tokens, greedy, {s['threads']} threads; "
                  f"read bandwidth {s['bandwidth_gbps']:.1f} GB/s.", "",
                  "| system | batch | first token (s) | decode tok/s | peak RSS (GiB) | weights (GB) | % of roofline | "
                  "meets the budget on the trained model |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in sorted(s["rows"], key=lambda r: (r["batch"], -r["decode_tokens_per_s"])):
            size = f"{r['weight_bytes'] / 1e9:.2f}" if r["weight_bytes"] else "?"
            roof = f"{100 * r['of_roofline']:.0f}%" if r["of_roofline"] else "?"
            meets = {True: "yes", False: "no"}.get(within.get(r["system"]), "not measured")
            lines.append(f"| {r['system']} | {r['batch']} | {r['ttft_s']:.3f} | {r['decode_tokens_per_s']:.1f} | "
                         f"{r['peak_rss_gib']:.2f} | {size} | {roof} | {meets} |")  # fmt: skip
        for label, why in s["errors"].items():
            lines.append(f"| {label} | | not run: {why} | | | | | |")
        lines.append("")
        if s.get("notes"):  # written into the JSON by hand after a run, when a figure needs a caveat
            lines += ["Notes:", *[f"- {n}" for n in s["notes"]], ""]
    return "\n".join(lines) + "\n"


# -- worker mode: modelport and transformers behind the peers' protocol -----------------------------------------


def worker(args) -> None:
    import resource

    row: dict = {"system": args.worker}
    try:
        if args.worker == "modelport":
            from modelport.bundle import Bundle
            from modelport.generation.api import load_generator

            bundle = Bundle.open(args.model)
            lm = load_generator(bundle, bundle.backend, threads=args.threads)
            lm.load()
            row["system"] = f"modelport {bundle.optimization.get('candidate') if bundle.optimization else 'fp32'}"
            row["weight_bytes"] = sum(f.stat().st_size for f in Path(args.model).glob("model.onnx*"))
            row["graph"] = args.model
            if args.score:
                chunks = json.loads(Path(args.score).read_text())
                peer_protocol.save_logits(args.score_out, [lm.logits(c) for c in chunks])
            else:
                ids = json.loads(Path(args.prompt_ids).read_text())
                lm.generate(ids, max_new_tokens=4, ignore_eos=True)
                out = lm.generate(ids, max_new_tokens=args.new_tokens, ignore_eos=True)
                row.update(ttft_s=out[0].time_to_first_token_s,
                           decode_tokens_per_s=(out[0].decode_tokens_per_s or 0.0) * len(ids),
                           first_row_tokens=out[0].token_ids)  # fmt: skip
        else:
            import torch

            from modelport.verification.text_verify import pytorch_logits

            torch.set_num_threads(args.threads)
            runner = generate_run.Transformers(Path(args.model), torch.bfloat16, compiled=False)
            row["weight_bytes"] = sum(p.numel() * p.element_size() for p in runner.model.parameters())
            if args.score:
                chunks = json.loads(Path(args.score).read_text())
                peer_protocol.save_logits(args.score_out, pytorch_logits(runner.model, chunks))
            else:
                ids = np.array(json.loads(Path(args.prompt_ids).read_text()), np.int64)
                runner.run(ids, 4)
                ttft, rate, tokens = runner.run(ids, args.new_tokens)
                row.update(ttft_s=ttft, decode_tokens_per_s=rate, first_row_tokens=tokens)
        row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if args.score:
            row["scored"] = args.score_out
    except Exception as exc:  # the row says why, as a peer's does
        row["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    print(json.dumps(row), flush=True)


def main() -> None:
    from modelport.benchmark.machine import fingerprint
    from modelport.runtime.openvino import cpu_has_bf16

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="llama-0.5b,tinyllama-1.1b")
    p.add_argument("--parts", default="quality,speed")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", default="1,4")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for generate-compressed.md and .json")
    p.add_argument("--systems", help="only these systems besides modelport (labels as in the table, comma-separated)")
    p.add_argument("--stem", default="generate-compressed", help="the results' file name, less .md/.json")
    p.add_argument(
        "--candidate",
        help="modelport's candidate(s) for the speed part, comma-separated (default: the quality part's choice)",
    )
    p.add_argument("--worker", choices=("modelport", "transformers"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--prompt-ids", help=argparse.SUPPRESS)
    p.add_argument("--score", help=argparse.SUPPRESS)
    p.add_argument("--score-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.bf16 = cpu_has_bf16()
    parts = set(args.parts.split(","))

    def say(msg: str) -> None:
        print(f"[compressed] {msg}", flush=True)

    previous = args.out / "generate-compressed.json"  # the quality part is kept from the full run
    q = quality(args, say) if "quality" in parts else json.loads(previous.read_text())["quality"]  # kept
    candidate = args.candidate or q["chosen"]
    speeds = [speed(m, candidate, args, say) for m in args.models.split(",")] if "speed" in parts else []
    machine = fingerprint(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine, "quality": q, "speed": speeds}
    (args.out / f"{args.stem}.json").write_text(json.dumps(record, indent=1))
    (args.out / f"{args.stem}.md").write_text(markdown(q, speeds, machine))
    print((args.out / f"{args.stem}.md").read_text())


if __name__ == "__main__":
    main()
