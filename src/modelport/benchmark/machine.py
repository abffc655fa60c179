"""What a benchmark ran on: the machine fingerprint, memory readings, and the measured sgemm peak.

A latency means nothing without the CPU, the cores it was allowed and the library versions that
produced it, so every record carries them. The peak is measured, not looked up: the best fp32 matrix
multiply this machine sustains through PyTorch with the same threads, which is the roof a model's
achieved GFLOP/s is compared against.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from modelport.machine import physical_cores

__all__ = ["fingerprint", "measure_peak", "rss_mb", "reset_peak_rss", "peak_rss_mb", "CpuClock", "busy_limit"]

# the CPU features that decide which kernels the runtimes pick
FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
LIBRARIES = ("modelport", "torch", "onnxruntime", "onnxruntime-gpu", "openvino", "onnx", "numpy", "transformers")


def fingerprint(threads: int) -> dict[str, Any]:
    cpu = _cpuinfo()
    return {
        "cpu": cpu.get("model name", platform.processor() or platform.machine()),
        "flags": [f for f in FLAGS if f in cpu.get("flags", "").split()],
        "physical_cores": physical_cores(),
        "logical_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(_meminfo_kb("MemTotal") / 2**20, 1),
        "threads": threads,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "versions": {name: version for name in LIBRARIES if (version := _version(name))},
    }


def measure_peak(threads: int, seconds: float = 3.0) -> float:
    """Best fp32 GFLOP/s of square matrix multiplies (n = 512, 1024, 2048) through PyTorch with ``threads``.
    The best single multiply, not the mean: the roof is what the hardware can do, not what it did while
    something else ran."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = 0.0
    try:
        for n in (512, 1024, 2048):
            a, b = torch.randn(n, n), torch.randn(n, n)
            out = torch.empty(n, n)
            torch.mm(a, b, out=out)  # first call: allocations and kernel choice
            stop = time.perf_counter() + seconds / 3
            while time.perf_counter() < stop:
                start = time.perf_counter()
                torch.mm(a, b, out=out)
                best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    finally:
        torch.set_num_threads(previous)
    return round(best, 1)


class CpuClock:
    """How many cores *other* processes kept busy between ``start()`` and ``others()``: the machine's busy
    time (``/proc/stat``) minus this process's own (all its threads). A benchmark on a machine where
    something else runs is fiction: on 2 cores, with two other processes spinning, PyTorch eager on
    all-MiniLM-L6-v2 (1, 128) took 932 ms against ONNX Runtime's 73 ms, because OpenMP's threads collapse
    under oversubscription while the others degrade gently. Unavailable (None) off Linux."""

    def __init__(self) -> None:
        self._start: tuple[float, float, float] | None = None

    def start(self) -> CpuClock:
        self._start = _cpu_reading()
        return self

    def others(self) -> float | None:
        now = _cpu_reading()
        if self._start is None or now is None:
            return None
        busy, own, wall = (b - a for a, b in zip(self._start, now, strict=True))
        return max(0.0, (busy - own) / wall) if wall > 0 else None

    @classmethod
    def sample(cls, seconds: float = 0.5) -> float | None:
        """Others' busy cores over ``seconds`` of this process sleeping."""
        clock = cls().start()
        time.sleep(seconds)
        return clock.others()


def busy_limit(threads: int) -> float:
    """Cores others may keep busy before a run on ``threads`` threads counts as disturbed: half a core, or a
    quarter of the spare cores on a bigger machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0.5, (cpus - threads) * 0.25)


def _cpu_reading() -> tuple[float, float, float] | None:
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process, wall seconds)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def reset_peak_rss() -> bool:
    """Hand freed heap back to the OS, then reset the kernel's high-water mark (Linux ``clear_refs`` 5),
    so the next peak counts new memory rather than memory an earlier step freed and the allocator kept.
    False where the mark cannot be reset."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    return _status_kb("VmHWM") / 1024


def _status_kb(key: str) -> float:
    return _field_kb(Path("/proc/self/status"), key)


def _meminfo_kb(key: str) -> float:
    return _field_kb(Path("/proc/meminfo"), key)


def _field_kb(path: Path, key: str) -> float:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if not key:
                break  # the first processor is enough
            info.setdefault(key, value)
    except OSError:
        pass
    return info


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
