"""Server processes of the serve-generate benchmarks: started, waited for, measured (peak RSS), stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import models

ROOT = models.ROOT
RESULTS = ROOT / "benchmarks" / "results"
PYTHON = ROOT / ".venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process: started, waited for, its peak RSS read, stopped (SIGINT, then SIGKILL)."""

    def __init__(self, argv: list[str], ready: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.ready, self.log = ready, log
        self.proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})  # fmt: skip

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited {self.proc.returncode}: {self.log.read_text()[-600:]}")
            try:
                with urllib.request.urlopen(self.ready, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"not ready in {timeout:.0f} s: {self.log.read_text()[-600:]}")

    def peak_rss_gib(self) -> float | None:
        from compressed import _tree_hwm  # benchmarks/generate/compressed.py

        try:
            return round(_tree_hwm(self.proc.pid) / 2**30, 2)
        except Exception:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
