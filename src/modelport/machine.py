"""What this machine offers a process: its physical cores and the memory a new allocation can get.

Read from Linux's ``/proc`` (with the process's CPU affinity); elsewhere the answers fall back to
``os.cpu_count()`` and "unknown". The runtimes size their thread pools from ``physical_cores``; feeds and
benchmarks check their sizes against ``available_memory``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["physical_cores", "available_memory"]


def physical_cores() -> int:
    """Physical cores this process may use: ONNX Runtime's own default, made explicit so reports show
    it. Hyper-threads share a core's FPU and slow matrix kernels down, so they are not counted."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    processor, package = -1, "0"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                processor = int(value)
            elif key == "physical id":
                package = value
            elif key == "core id" and processor in allowed:
                cores.add((package, value))
    except (OSError, ValueError):
        pass
    return max(1, min(len(cores) or len(allowed), len(allowed)))


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can get (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
