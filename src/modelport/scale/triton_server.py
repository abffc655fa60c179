"""``serve --engine triton``: a real Triton Inference Server on a model repository (or on bundles, written
as a Python-backend repository in a temp folder first), started, waited for and stopped cleanly.

Triton comes from the ``nvidia-pytriton`` wheel (its ``tritonserver`` 2.51 binary, Python backend and
Python stubs) installed in a Python environment of its own: the wheel needs numpy < 2, and its Python
backend answers wrong with numpy 2, so modelport never shares its own environment with it. That Python
(``python=``, or ``$MODELPORT_TRITON_PYTHON``) must have ``nvidia-pytriton``, numpy < 2 and, for
repositories written by ``modelport triton --platform python``, modelport itself (``make triton-env``
makes one at ``build/peers/triton/venv``).

The stub the Python backend starts embeds libpython and finds its prefix from ``python3`` on ``PATH``:
the environment's ``bin`` goes first on ``PATH``, so the models import that environment's packages.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelport.errors import ResourceError, UsageError
from modelport.scale.lifecycle import port_for, until_stopped
from modelport.scale.triton import CONFIG, is_repository, triton_repository

__all__ = ["serve_triton", "TritonServer", "TritonEnv", "find_triton", "PYTHON_ENV", "SETUP_HINT"]

PYTHON_ENV = "MODELPORT_TRITON_PYTHON"
SETUP_HINT = (
    "make triton-env (a venv with nvidia-pytriton, numpy<2 and modelport: build/peers/triton/venv), then pass "
    f"--triton-python build/peers/triton/venv/bin/python or set {PYTHON_ENV}"
)
STOP_GRACE_S = 30.0

# run by the Triton environment's Python: where its wheel put Triton, and what that Python has
_PROBE = r"""
import importlib.util, json, pathlib, sys, sysconfig
out = {"python": f"{sys.version_info[0]}.{sys.version_info[1]}"}
spec = importlib.util.find_spec("pytriton")
if spec:
    root = pathlib.Path(spec.origin).parent
    out["dist"] = str(root / "tritonserver")
    out["libs"] = str(root.parent / "nvidia_pytriton.libs")
for name in ("numpy", "modelport"):
    try:
        module = __import__(name)
        out[name] = getattr(module, "__version__", "yes")
    except Exception:
        out[name] = None
soname, libdir = sysconfig.get_config_var("INSTSONAME") or "", sysconfig.get_config_var("LIBDIR") or ""
out["libpython_dir"] = libdir if soname and (pathlib.Path(libdir) / soname).exists() else None
print(json.dumps(out))
"""


@dataclass(frozen=True)
class TritonEnv:
    python: Path  # the environment's interpreter
    dist: Path  # the wheel's tritonserver folder: bin/, backends/, python_backend_stubs/, caches/
    libs: Path  # the wheel's bundled shared libraries
    version: str  # the interpreter's major.minor: picks the Python backend stub
    libpython_dir: str | None  # where its libpython.so lives, when it is a shared build
    has_modelport: bool

    @property
    def binary(self) -> Path:
        return self.dist / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        return self.dist / "python_backend_stubs" / self.version / "triton_python_backend_stub"


def find_triton(python: str | Path | None = None) -> TritonEnv:
    """The Triton environment at ``python`` (or ``$MODELPORT_TRITON_PYTHON``), checked: the wheel's layout,
    numpy < 2. Raises a one-line ``UsageError`` saying how to make one."""
    given = python or os.environ.get(PYTHON_ENV)
    if not given:
        raise UsageError("no Triton environment given", SETUP_HINT)
    interpreter = Path(given).expanduser()
    if not interpreter.is_file():
        raise UsageError(f"no Python at {interpreter}", SETUP_HINT)
    try:
        probe = subprocess.run([str(interpreter), "-c", _PROBE], capture_output=True, text=True, timeout=120)
        facts = json.loads(probe.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        raise UsageError(f"{interpreter} did not run as a Python 3 interpreter", SETUP_HINT) from None
    if "dist" not in facts:
        raise UsageError(f"{interpreter} has no nvidia-pytriton (which carries tritonserver)", SETUP_HINT)
    numpy = facts.get("numpy")
    if numpy is None or int(str(numpy).split(".")[0]) >= 2:
        raise UsageError(
            f"the Triton environment has numpy {numpy}: Triton's Python backend needs numpy < 2",
            f"{interpreter} -m pip install 'numpy<2'",
        )
    env = TritonEnv(
        interpreter,
        Path(facts["dist"]),
        Path(facts["libs"]),
        facts["python"],
        facts["libpython_dir"],
        facts.get("modelport") is not None,
    )
    for path in (env.binary, env.dist / "backends" / "python", env.stub):
        if not path.exists():
            raise UsageError(f"{path} is missing: this nvidia-pytriton has another layout", "use nvidia-pytriton 0.7")
    return env


def serve_triton(
    models: Sequence[str | Path],
    *,
    python: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int | None = None,
    instances: int = 1,
    batching: bool = True,
    max_queue_delay_us: int = 0,
    preferred_batch_sizes: Sequence[int] = (),
    max_sequences: int = 16,
    ready_timeout: float = 300.0,
    block: bool = True,
) -> TritonServer:
    """Serve ``models`` with a real Triton: one Triton model repository folder, or bundles (``PATH`` or
    ``NAME=PATH``) written as a Python-backend repository in a temp folder. ``block``: run until
    SIGTERM/Ctrl-C; otherwise return the started server (``with serve_triton(..., block=False) as t``)."""
    server = TritonServer(
        models,
        python=python,
        host=host,
        port=port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        repository_options={
            "instances": instances,
            "batching": batching,
            "max_queue_delay_us": max_queue_delay_us,
            "preferred_batch_sizes": preferred_batch_sizes,
            "max_sequences": max_sequences,
        },
    )
    server.start(ready_timeout)
    if block:
        server.wait()
    return server


class TritonServer:
    def __init__(
        self,
        models: Sequence[str | Path],
        *,
        python: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int | None = None,
        repository_options: dict | None = None,
    ) -> None:
        if not models:
            raise UsageError("no model to serve", "pass a Triton model repository or one or more bundles")
        self.env = find_triton(python)
        self.models = list(models)
        self.host = host
        self.port, self.grpc_port = port_for(host, port, "--port"), port_for(host, grpc_port, "--grpc-port")
        self.metrics_port = port_for(host, metrics_port, "--metrics-port") if metrics_port is not None else None
        self.options = repository_options or {}
        self.repository: Path | None = None
        self.names: list[str] = []
        self._work: Path | None = None
        self._process: subprocess.Popen | None = None
        self._log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 300.0) -> TritonServer:
        self._work = Path(tempfile.mkdtemp(prefix="modelport-triton-"))
        try:
            self.repository = self._repository()
            self.names = sorted(c.name for c in self.repository.iterdir() if (c / CONFIG).is_file())
            self._launch()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> None:
        """Block until Triton exits or SIGTERM/Ctrl-C arrives, then stop it cleanly."""
        try:
            until_stopped(lambda: self._process is not None and self._process.poll() is None)
            died = self._process is not None and self._process.poll() not in (None, 0)
        finally:
            self.stop()
        if died:
            raise ResourceError(f"Triton exited: {self._last_error()}", "see the log lines above")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # Triton unloads its models, then exits
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self) -> TritonServer:
        return self if self._process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------------------
    def _repository(self) -> Path:
        assert self._work is not None
        if len(self.models) == 1 and is_repository(self.models[0]):
            return Path(self.models[0]).resolve()
        if not self.env.has_modelport:
            raise UsageError(
                f"the Triton environment ({self.env.python}) has no modelport for the Python backend to run",
                f"{self.env.python} -m pip install --no-deps -e <modelport checkout>, or make triton-env",
            )
        repo = self._work / "models"
        triton_repository(self.models, repo, platform="python", **self.options)
        return repo

    def _launch(self) -> None:
        assert self._work is not None and self.repository is not None
        env = self.env
        backends = self._work / "backends"
        shutil.copytree(env.dist / "backends" / "python", backends / "python")
        shutil.copy(env.stub, backends / "python" / "triton_python_backend_stub")
        variables = dict(os.environ)
        libraries = [p for p in (env.libpython_dir, str(env.libs), variables.get("LD_LIBRARY_PATH")) if p]
        variables["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
        variables["PATH"] = os.pathsep.join([str(env.python.parent), variables.get("PATH", "")])
        metrics = (
            [f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}"]
            if self.metrics_port is not None
            else ["--allow-metrics=false"]
        )
        argv = [
            str(env.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={env.dist / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-gpu-metrics=false",
            *metrics,
            "--exit-on-error=true",
            "--log-verbose=0",
        ]
        self._log = self._work / "triton.log"
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(argv, env=variables, stdout=log, stderr=subprocess.STDOUT)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        urls = [f"{self.url}/v2/health/ready"] + [f"{self.url}/v2/models/{n}/ready" for n in self.names]
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ResourceError(f"Triton did not start: {self._last_error()}", "fix the repository or the model")
            if all(_answers(url) for url in urls):
                return
            time.sleep(0.25)
        raise ResourceError(
            f"Triton was not ready in {timeout:.0f} s ({self._last_error()})", "give it longer (ready_timeout)"
        )

    def _last_error(self) -> str:
        lines = self._log.read_text(errors="replace").splitlines() if self._log and self._log.exists() else []
        errors = [line for line in lines if line.startswith("E") or "error" in line.lower()]
        return (errors or lines or ["no log"])[-1].strip()[:400]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
