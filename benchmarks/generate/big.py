"""A model bigger than protobuf's 2 GB, end to end: export -> verify -> optimize to int4 -> generate, each step
the command a user would type, with its wall time and peak RSS.

The model: a LLaMA-style decoder of TinyLlama's shape (22 layers, hidden 2048, intermediate 5632, 32 heads,
4 KV heads, vocab 32000: 1.1 B parameters, 4.4 GB in fp32), random weights (seeded), saved as a transformers
folder with the tokenizer of the model ``stdlib_lm.py`` trains (its ids, < 8192, all lie in this vocabulary),
so every step reads text like a user's. With random weights the quality figures are noise: optimize runs
under a budget nothing fails and picks by speed; quality is judged on the trained model (``optimize.py``).

Each step runs as its own process (``os.wait4`` gives its peak RSS): ``build`` (the folder), ``export``
(``modelport export hf:DIR --task text-generation``: the weights go to ``model.onnx.data``, the manifest's
sha256s cover every file), ``verify`` (``modelport verify``: generation against transformers again),
``optimize`` (``modelport optimize --precision int4 --candidates ...`` on held-out standard-library text) and
``generate`` (128 new tokens from a text prompt, on the int4 bundle).

    .venv/bin/python benchmarks/generate/big.py [--steps build,export,verify,optimize,generate]

Results: ``benchmarks/results/generate-big.md`` and ``.json``; the bundles stay in ``build/generate/tinyllama-1.1b``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = ROOT / "build" / "generate" / "tinyllama-1.1b"
TRAINED = ROOT / "build" / "models" / "stdlib-lm"
RESULTS = ROOT / "benchmarks" / "results"
MODELPORT = [sys.executable, "-m", "modelport"]
STEPS = ("build", "export", "verify", "optimize", "generate")
CANDIDATES = "int4-sym-128,int4-asym-128"  # the fastest int4 layouts on the 0.5 B model (generate-optimize.md)
LOOSE = "top1>=0.000001,ppl<=1000000,kl<=1000000"  # random weights: speed decides, quality is noise
LIMIT_GIB = 16
GENERATED = ("finish_reason", "time_to_first_token_s", "decode_tokens_per_s")
CONFIG = dict(
    hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
    vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
    bos_token_id=0, eos_token_id=0, pad_token_id=1,
)  # fmt: skip
BUILD = f"""
import shutil, sys, torch, transformers as T
torch.manual_seed(0)
model = T.LlamaForCausalLM(T.LlamaConfig(**{CONFIG!r})).eval()
model.save_pretrained(sys.argv[1])
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    try:
        shutil.copyfile(f"{{sys.argv[2]}}/{{name}}", f"{{sys.argv[1]}}/{{name}}")
    except FileNotFoundError:
        pass
"""


def commands(folder: Path) -> dict[str, list[str]]:
    bundle, opt = WORK / "bundle", WORK / "bundle-int4"
    prompt = (TRAINED / "held-out.txt").read_text().splitlines()[0][:200]
    return {
        "build": [sys.executable, "-c", BUILD, str(folder), str(TRAINED)],
        "export": [*MODELPORT, "export", f"hf:{folder}", "--task", "text-generation", "-o", str(bundle), "--json"],
        "verify": [*MODELPORT, "verify", str(bundle), "--json"],
        "optimize": [
            *MODELPORT,
            "optimize",
            str(bundle),
            "-o",
            str(opt),
            "--precision",
            "int4",
            "--candidates",
            CANDIDATES,
            "--budget",
            LOOSE,
            "--data",
            str(TRAINED / "held-out.txt"),
            "--json",
        ],  # fmt: skip
        "generate": [
            *MODELPORT,
            "generate",
            str(opt),
            "-p",
            prompt,
            "--max-new-tokens",
            "128",
            "--ignore-eos",
            "--json",
        ],  # fmt: skip
    }


def run_step(name: str, argv: list[str]) -> dict:
    """Runs one step in its own process: wall time, peak RSS (``os.wait4``), exit status, its JSON if any."""
    log = WORK / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    record = {"step": name, "seconds": round(seconds, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
              "exit": proc.returncode, "command": " ".join(_short(a) for a in argv)}  # fmt: skip
    text = log.read_text()
    start_json = text.find("{")
    if start_json >= 0:
        try:
            record["output"] = json.loads(text[start_json:])
        except json.JSONDecodeError:
            pass
    if proc.returncode:
        record["tail"] = text[-2000:]
    return record


def _short(arg: str) -> str:
    if arg == sys.executable:
        return "python"
    if "\n" in arg:
        return "<build script>"
    return arg.replace(str(ROOT) + "/", "") if arg.startswith(str(ROOT)) or "build/" in arg else arg


def files(folder: Path) -> list[dict]:
    return [{"file": f.name, "bytes": f.stat().st_size} for f in sorted(folder.iterdir()) if f.is_file()]


def summary(records: list[dict]) -> dict:
    """Facts from the steps' outputs: export's files and sha256 coverage, the choice and speeds."""
    facts: dict = {}
    bundle = WORK / "bundle"
    if (bundle / "modelport.json").is_file():
        manifest = json.loads((bundle / "modelport.json").read_text())
        on_disk = {f.name for f in bundle.iterdir() if f.is_file() and f.name != "modelport.json"}
        facts["export_files"] = files(bundle)
        facts["sha256_cover_every_file"] = on_disk == set(manifest.get("files", {}))
    for r in records:
        out = r.get("output") or {}
        if r["step"] == "optimize" and out:
            facts["optimize"] = {k: out.get(k) for k in ("candidate", "decode_tokens_per_s", "speedup_vs_fp32")}
            facts["optimize"]["candidates"] = [
                {k: c.get(k) for k in ("name", "decode_tokens_per_s", "ttft_ms", "weight_bytes", "build_s")}
                for c in out.get("candidates", [])
            ]
        if r["step"] == "generate" and out:
            first = out["results"][0]
            facts["generate"] = {"backend": out.get("backend"), "new_tokens": len(first["token_ids"]),
                                 **{k: first.get(k) for k in GENERATED}}  # fmt: skip
    return facts


def markdown(records: list[dict], facts: dict, machine: dict) -> str:
    lines = [
        "# A 1.1 B model (4.4 GB of fp32 weights) end to end",
        "",
        "`benchmarks/generate/big.py`: TinyLlama's shape (22 layers, hidden 2048, 32 heads, 4 KV heads, vocab "
        "32000), random weights, every step the command a user types, each in its own process.",
        f"Machine: {machine.get('cpu')}, {machine.get('physical_cores')} cores, {machine.get('memory_gb')} GB; "
        f"limit for the pipeline: peak RSS <= {LIMIT_GIB} GiB.",
        "",
        "| step | wall time (s) | peak RSS (GiB) | exit |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['step']} | {r['seconds']} | {r['peak_rss_gib']} | {r['exit']} |" for r in records]
    peak = max((r["peak_rss_gib"] for r in records), default=0)
    lines += ["", f"Peak RSS over the pipeline: {peak} GiB ({'within' if peak <= LIMIT_GIB else 'OVER'} "
              f"the {LIMIT_GIB} GiB limit)."]  # fmt: skip
    if "export_files" in facts:
        big = [f for f in facts["export_files"] if f["bytes"] > 1e6]
        names = ", ".join(f"`{f['file']}` ({f['bytes'] / 1e9:.2f} GB)" for f in big)
        lines += ["", f"Export wrote {names}; the manifest's sha256s cover every file: "
                  f"{facts['sha256_cover_every_file']}."]  # fmt: skip
    if "optimize" in facts:
        o = facts["optimize"]
        lines += ["", f"Optimize chose `{o['candidate']}`: {o['decode_tokens_per_s']} tok/s decoding, "
                  f"{o['speedup_vs_fp32'] and round(o['speedup_vs_fp32'], 2)}x fp32 (batch 1, 64-token prompt, "
                  "32 new tokens, median of 3)."]  # fmt: skip
        lines += ["", "| candidate | decode tok/s | first token (ms) | weights (GB) | build (s) |"]
        lines += ["|---|---:|---:|---:|---:|"]
        for c in o["candidates"]:
            size = c["weight_bytes"] and round(c["weight_bytes"] / 1e9, 2)
            lines.append(f"| {c['name']} | {c['decode_tokens_per_s']} | {c['ttft_ms']} | {size} | {c['build_s']} |")
    if "generate" in facts:
        lines += ["", f"Generate on the int4 bundle: {json.dumps(facts['generate'])}."]
    lines += ["", "Commands:", ""] + [f"- {r['step']}: `{r['command']}`" for r in records if r["step"] != "build"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    if not (TRAINED / "held-out.txt").is_file():
        subprocess.run([sys.executable, str(HERE / "stdlib_lm.py"), "--out", str(TRAINED)], check=True)
    WORK.mkdir(parents=True, exist_ok=True)
    folder = WORK / "hf"
    argv = commands(folder)
    for name, target in (("build", folder), ("export", WORK / "bundle"), ("optimize", WORK / "bundle-int4")):
        if name in steps and target.exists():
            shutil.rmtree(target)  # ours, under build/: redone from scratch so the figures are the step's own
    records = []
    for name in steps:
        print(f"[big] {name} ...", flush=True)
        record = run_step(name, argv[name])
        print(f"[big] {name}: {record['seconds']} s, peak RSS {record['peak_rss_gib']} GiB, exit {record['exit']}",
              flush=True)  # fmt: skip
        records.append(record)
        if record["exit"]:
            print(record.get("tail", ""), file=sys.stderr)
            break
    from modelport.benchmark.machine import fingerprint
    from modelport.machine import physical_cores

    machine = fingerprint(physical_cores())
    facts = summary(records)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generate-big.json").write_text(json.dumps({"machine": machine, "steps": records, **facts}, indent=1))
    (args.out / "generate-big.md").write_text(markdown(records, facts, machine))
    print((args.out / "generate-big.md").read_text())


if __name__ == "__main__":
    main()
