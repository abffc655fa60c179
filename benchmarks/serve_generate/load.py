"""The load generator of the serve-generate benchmark: N streams at once against one server, each a streamed
completion of the same kind, timed on arrival of each piece of text.

Two protocols: OpenAI's ``/v1/completions`` with ``stream`` (modelport, llama.cpp's server, vLLM, the
OpenVINO GenAI server) and Triton's ``/v2/models/M/generate_stream`` (Triton's Python backend). Per stream:
time to first token (request sent to first text), inter-token latencies (between text pieces: a piece is
one token on every server here, as each sends one event per token), and the tokens generated (the usage the
server reports, else the pieces). Aggregate tokens/s is every stream's tokens over the wall time from the
first request to the last stream's end.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Target", "run_streams", "summary"]


@dataclass(frozen=True)
class Target:
    url: str  # http://host:port
    model: str
    protocol: str = "openai"  # or "triton"
    extra: dict[str, Any] = field(default_factory=dict)  # more body fields (e.g. ignore_eos)


@dataclass
class StreamResult:
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    tokens: int = 0
    text: str = ""
    error: str | None = None
    end: float = 0.0


async def _one(client: httpx.AsyncClient, target: Target, prompt: list[int] | str, new: int) -> StreamResult:
    out = StreamResult()
    if target.protocol == "openai":
        path = "/v1/completions"
        body = {"model": target.model, "prompt": prompt, "max_tokens": new, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}, **target.extra}  # fmt: skip
    else:
        path = f"/v2/models/{target.model}/generate_stream"
        body = {"text_input": prompt, "max_tokens": new, "temperature": 0, "stream": True, **target.extra}
    start = last = time.perf_counter()
    pieces = 0
    usage = None
    try:
        async with client.stream("POST", target.url + path, json=body) as response:
            if response.status_code != 200:
                out.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return out
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    out.error = str(event["error"])[:200]
                    break
                usage = event.get("usage") or usage
                text = _text(event, target.protocol)
                if text:
                    now = time.perf_counter()
                    if out.ttft_s is None:
                        out.ttft_s = now - start
                    else:
                        out.gaps_s.append(now - last)
                    last = now
                    pieces += 1
                    out.text += text
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.end = time.perf_counter()
    out.tokens = usage["completion_tokens"] if usage else pieces
    return out


def _text(event: dict[str, Any], protocol: str) -> str:
    if protocol == "triton":
        return event.get("text_output") or ""
    choices = event.get("choices") or []
    return (choices[0].get("text") or "") if choices else ""


def run_streams(target: Target, prompts: list[Any], new: int, timeout_s: float = 1800) -> dict[str, Any]:
    """All ``prompts`` at once, one stream each; the round's figures."""

    async def main() -> tuple[float, list[StreamResult]]:
        limits = httpx.Limits(max_connections=len(prompts) + 4)
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
            start = time.perf_counter()
            results = await asyncio.gather(*(_one(client, target, p, new) for p in prompts))
            return start, list(results)

    start, results = asyncio.run(main())
    return summary(start, results)


def summary(start: float, results: list[StreamResult]) -> dict[str, Any]:
    ok = [r for r in results if r.error is None]
    wall = max((r.end for r in ok), default=start) - start
    ttfts = sorted(r.ttft_s for r in ok if r.ttft_s is not None)
    gaps = sorted(g for r in ok for g in r.gaps_s)
    tokens = sum(r.tokens for r in ok)
    return {
        "streams": len(results),
        "errors": [r.error for r in results if r.error is not None],
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
        "ttft_p50_s": _quantile(ttfts, 0.5),
        "ttft_p99_s": _quantile(ttfts, 0.99),
        "itl_p50_s": _quantile(gaps, 0.5),
        "itl_p99_s": _quantile(gaps, 0.99),
        "texts": [r.text for r in results],
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q * 100) - 1))], 4)
