"""Serving generation: aggregate decode tokens/s, time to first token and inter-token latency (p50/p99) at 1, 4
and 16 concurrent streams, every server on the same prompts, one run.

    .venv/bin/python benchmarks/serve_generate/run.py                       # every system found here
    .venv/bin/python benchmarks/serve_generate/run.py --systems modelport,modelport-off --streams 1,4

Model: the ~0.5 B LLaMA-style model of ``benchmarks/generate`` (random weights; ``models.py``), fp32 and its
int4 form (``modelport optimize``, int4-sym-128); ``--variants`` adds modelport's other forms (``models.py``:
int4 with prompt passes on OpenVINO, int4 and bf16 on OpenVINO), served by modelport only. Prompts: 128
random token ids per stream (different per stream), greedy, 128 new tokens (end-of-sequence ignored where
the server allows it). Systems, each started as its own server process and stopped after its rounds:

- ``modelport``: ``modelport serve`` with continuous batching (``--max-sequences 16``), fp32 and int4;
- ``modelport-off``: the same with batching off (one sequence at a time: the baseline of the 3x goal);
- ``triton``: the real tritonserver (nvidia-pytriton's) on the decoupled Python-backend generation model
  that ``modelport triton`` writes (``make triton-env``), over Triton's ``generate_stream``;
- ``llama.cpp``: llama-cpp-python's OpenAI server on GGUF from the same weights (f16, and Q4_0 beside int4;
  ``benchmarks/generate/peers/setup.sh llamacpp``; ``LLAMACPP_EXTRA_BUFFERS=0`` turns its weight repacking
  off, ``llamacpp_server.py``);
- ``vllm``: vLLM's CPU build's OpenAI server (bf16, the only precision it runs here; prefix caching off;
  ``setup.sh vllm``);
- ``ovgenai``: OpenVINO GenAI's continuous-batching pipeline (``peer_ovgenai_server.py``: it has no server
  of its own) on optimum-intel's export, NNCF int4 beside int4 and fp32 beside fp32 (``setup.sh ovgenai``);
- ``in-process``: ``LanguageModel.generate`` on the same prompts as one batch, no server: the ceiling.

A system whose environment is missing is listed with the reason. Each server's peak RSS (its process tree's
VmHWM) is reported. For modelport with batching on, every stream's text is checked against the same
prompt served alone (batching must not change answers).

Results: ``benchmarks/results/serve-generate.json`` and ``serve-generate.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from load import Target, run_streams  # noqa: E402
from servers import PYTHON, RESULTS, ROOT, Server, free_port  # noqa: E402

import models  # noqa: E402

TRITON_PYTHON = ROOT / "build" / "peers" / "triton" / "venv" / "bin" / "python"
LLAMACPP_PYTHON = ROOT / "build" / "gen-llamacpp-env" / "bin" / "python"
VLLM_PYTHON = ROOT / "build" / "gen-vllm-env" / "bin" / "python"
OVGENAI_PYTHON = ROOT / "build" / "gen-ovgenai-env" / "bin" / "python"
SYSTEMS = ("in-process", "modelport", "modelport-off", "triton", "llama.cpp", "vllm", "ovgenai")
NAME = "lm"
LLAMACPP = "lm-gguf"  # the llama.cpp server's model name (its prompts are text: see as_prompt)


def prompts(count: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, length).tolist() for _ in range(count)]


def start(system: str, variant: str, bundle: Path, hf: Path, work: Path, threads: int) -> tuple[Server, Target]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / f"{system}-{variant}.log"
    if system in ("modelport", "modelport-off", "triton"):
        argv = [str(PYTHON), "-m", "modelport", "serve", f"{NAME}={bundle}", "--port", str(port), "--log-level",
                "warning", "--max-sequences", "16"]  # fmt: skip
        if system == "triton":
            argv += ["--engine", "triton", "--triton-python", str(TRITON_PYTHON), "--grpc-port", str(free_port())]
            server, target = Server(argv, url + "/v2/health/ready", log), Target(url, NAME, "triton")
        else:
            argv += ["--no-grpc", "--threads", str(threads)] + (["--no-batching"] if system == "modelport-off" else [])
            target = Target(url, NAME, extra={"ignore_eos": True})
            server = Server(argv, url + "/v2/health/ready", log)
        server.wait(900)
        return server, target
    if system == "llama.cpp":
        gguf = llamacpp_gguf(hf, work, "q4_0" if variant == "int4" else "f16", threads)
        argv = [str(LLAMACPP_PYTHON), str(HERE / "llamacpp_server.py"), "--model", gguf, "--model_alias", LLAMACPP,
                "--port", str(port), "--n_ctx", "8192", "--n_threads", str(threads),
                "--n_threads_batch", str(threads)]  # fmt: skip
        server = Server(argv, url + "/v1/models", log)
        server.wait(600)
        return server, Target(url, LLAMACPP)
    if system == "vllm":
        argv = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf), "--dtype", "bfloat16",
                "--port", str(port), "--served-model-name", NAME, "--max-num-seqs", "16", "--max-model-len", "512",
                "--no-enable-prefix-caching"]  # fmt: skip
        env = {"VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}", "VLLM_CPU_KVCACHE_SPACE": "4"}
        server = Server(argv, url + "/v1/models", log, env)
        server.wait(1200)
        return server, Target(url, NAME, extra={"ignore_eos": True})
    if system == "ovgenai":
        folder = ovgenai_model(hf, work, "int4" if variant == "int4" else "fp32")
        argv = [str(OVGENAI_PYTHON), str(HERE / "peer_ovgenai_server.py"), "--model", folder, "--port", str(port),
                "--threads", str(threads), "--max-sequences", "16", "--name", NAME]  # fmt: skip
        server = Server(argv, url + "/v1/models", log)
        server.wait(900)
        return server, Target(url, NAME, extra={"ignore_eos": True})
    raise ValueError(system)


def peer_build(python: Path, peer: str, **args: Any) -> str:
    """What ``benchmarks/generate/peers/<peer>.py``'s ``build(args)`` returns, run in the peer's own venv."""
    peers = ROOT / "benchmarks" / "generate" / "peers"
    code = (f"import sys, argparse; sys.path.insert(0, {str(peers)!r}); import {peer} as p\n"
            f"print(p.build(argparse.Namespace(**{args!r})))")  # fmt: skip
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def ovgenai_model(hf: Path, work: Path, precision: str) -> str:
    """optimum-intel's OpenVINO export of the model at ``precision`` (NNCF int4, or fp32), built once."""
    return peer_build(OVGENAI_PYTHON, "peer_ovgenai", model=str(hf), work=str(work.parent / "ovgenai"),
                      precision=precision)  # fmt: skip


def llamacpp_gguf(hf: Path, work: Path, precision: str, threads: int) -> str:
    """The GGUF of ``precision`` (f16 straight from the converter, q4_0 by llama.cpp's quantizer), built once."""
    build = work.parent / "llamacpp"
    q4 = peer_build(LLAMACPP_PYTHON, "peer_llamacpp", model=str(hf), work=str(build), precision="q4_0",
                    threads=threads)  # fmt: skip
    return q4 if precision == "q4_0" else str(build / "model-f16.gguf")


def in_process(bundle: Path, ids: list[list[int]], new: int, threads: int) -> dict[str, Any]:
    """The ceiling: one batched ``generate`` in a fresh process (no server)."""
    code = f"""
import json, time, modelport
lm = modelport.load({str(bundle)!r}, threads={threads})
ids = {json.dumps(ids)}
lm.generate(ids[:1], max_new_tokens=4, ignore_eos=True)
start = time.perf_counter()
out = lm.generate(ids, max_new_tokens={new}, ignore_eos=True)
wall = time.perf_counter() - start
tokens = sum(len(g.token_ids) for g in out)
print(json.dumps({{"streams": len(ids), "errors": [], "tokens": tokens, "wall_s": round(wall, 3),
                  "tokens_per_s": round(tokens / wall, 2), "ttft_p50_s": round(out[0].time_to_first_token_s, 4),
                  "ttft_p99_s": round(out[0].time_to_first_token_s, 4), "itl_p50_s": None, "itl_p99_s": None,
                  "texts": [g.text for g in out]}}))
"""
    out = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def as_prompt(target: Target, ids: list[int]) -> list[int] | str:
    """Token ids for the OpenAI servers that take them; text for Triton's generate (the stand-in's words, one
    per id) and for llama-cpp-python's server, which takes strings only: there, one letter per id (its GGUF's
    stand-in vocabulary has a token per byte and no merge of letters), so the prompt is as long, other ids."""
    if target.protocol == "triton":
        return " ".join(f"t{i}" for i in ids)
    if target.model == LLAMACPP:
        return "".join(chr(ord("a") + i % 26) for i in ids)
    return ids


def weights(system: str, variant: str) -> str:
    """What the system's weights are for a variant (the peers run their own nearest precision)."""
    if system == "llama.cpp":
        return "q4_0" if variant == "int4" else "f16"
    if system == "ovgenai":
        return "int4 (NNCF)" if variant == "int4" else "fp32 (computed in OpenVINO's default precision)"
    return "bf16" if system == "vllm" else variant


def missing(system: str) -> str | None:
    need = {"triton": (TRITON_PYTHON, "make triton-env"), "llama.cpp": (LLAMACPP_PYTHON, "peers/setup.sh llamacpp"),
            "vllm": (VLLM_PYTHON, "peers/setup.sh vllm"), "ovgenai": (OVGENAI_PYTHON, "peers/setup.sh ovgenai")
            }.get(system)  # fmt: skip
    if need and not need[0].exists():
        return f"no environment: {need[1]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--variants", default="fp32,int4", help="more: int4-prefill,int4-openvino,bf16-openvino")
    parser.add_argument("--streams", default="1,4,16")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve-generate.json")
    args = parser.parse_args()
    say = lambda msg: print(f"[serve-generate] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    variants = args.variants.split(",")
    bundles = models.bundles(variants, say)
    hf = models.folder(say)
    vocab = json.loads((hf / "config.json").read_text())["vocab_size"]
    levels = [int(n) for n in args.streams.split(",")]
    ids = prompts(max(levels), args.prompt_tokens, vocab)
    work = Path(tempfile.mkdtemp(prefix="serve-generate-", dir=models.BUILD))
    rows, skipped = [], {}
    for variant in variants:
        alone: dict[tuple[str, int], list[str]] = {}
        for system in args.systems.split(","):
            if system == "vllm" and variant != "fp32":
                continue  # vLLM runs bf16 only here: listed once
            if variant not in ("fp32", "int4") and system not in ("in-process", "modelport", "modelport-off"):
                continue  # the peers' rows are the fp32 and int4 variants' (the same weights)
            why = missing(system)
            if why:
                skipped[system] = why
                continue
            say(f"{system} ({variant}): starting")
            server = None
            try:
                if system != "in-process":
                    server, target = start(system, variant, bundles[variant], hf, work, args.threads)
                    run_streams(target, [as_prompt(target, ids[0])], 8)  # warm-up
                for n in levels:
                    if system == "in-process":
                        result = in_process(bundles[variant], ids[:n], args.new_tokens, args.threads)
                    else:
                        result = run_streams(target, [as_prompt(target, p) for p in ids[:n]], args.new_tokens)
                    texts = result.pop("texts")
                    row = {"system": system, "variant": variant, "weights": weights(system, variant), **result}
                    if system in ("modelport", "modelport-off"):  # whichever runs second compares
                        other = alone.get(("modelport-off" if system == "modelport" else "modelport", n))
                        if other is not None:
                            row["same_text_as_alone"] = texts == other
                        alone[(system, n)] = texts
                    if server is not None:
                        row["peak_rss_gib"] = server.peak_rss_gib()
                    rows.append(row)
                    say(f"{system} ({variant}) x{n}: {result['tokens_per_s']} tok/s, ttft p50 {result['ttft_p50_s']} s"
                        f"{', errors: ' + str(result['errors'][:2]) if result['errors'] else ''}")  # fmt: skip
            except Exception as exc:
                skipped[f"{system} ({variant})"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                say(f"{system} ({variant}) failed: {skipped[f'{system} ({variant})']}")
            finally:
                if server is not None:
                    server.stop()
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
              "model": models.MODEL, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
              "rows": rows, "skipped": skipped}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Serving generation: {report['model']}, prompt {report['prompt_tokens']}, {report['new_tokens']} new tokens",
        "",
        "Made by `benchmarks/serve_generate/run.py`. Aggregate tokens/s: every stream's tokens over the wall time "
        "of the round; TTFT and ITL (inter-token latency) in seconds.",
        "",
        "| system | weights | streams | tokens/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | peak RSS GiB | errors "
        "| notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        note = "" if "same_text_as_alone" not in r else ("same text as batching off" if r["same_text_as_alone"] else
                                                          "TEXT DIFFERS from batching off")  # fmt: skip
        lines.append(f"| {r['system']} | {r['weights']} | {r['streams']} | {r['tokens_per_s']} | {r['ttft_p50_s']} | "
                     f"{r['ttft_p99_s']} | {r['itl_p50_s']} | {r['itl_p99_s']} | {r.get('peak_rss_gib', '')} | "
                     f"{len(r['errors'])} | {note} |")  # fmt: skip
    if report["skipped"]:
        lines += ["", "Not measured:", ""] + [f"- {k}: {v}" for k, v in report["skipped"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
