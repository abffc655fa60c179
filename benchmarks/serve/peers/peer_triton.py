"""Triton peer: the tritonserver binary (2.51) shipped in the nvidia-pytriton wheel, serving a model
repository written into --workdir with one Python-backend model (triton_model.py) that runs onnxruntime.

Run by start.py with build/peers/triton/venv/bin/python (common.py on PYTHONPATH): derives config.pbtxt
from the ONNX graph (symbolic dims -> -1), copies the wheel's python backend plus its Python 3.11 stub into
--workdir/backends, then execs tritonserver with the wheel's bundled libraries on LD_LIBRARY_PATH and this
venv's bin first on PATH (the stub embeds libpython3.11 and takes its prefix from `python3` on PATH, so it
imports this venv's onnxruntime and numpy; numpy must be < 2 for the wheel's python backend).
Metrics are off; HTTP and gRPC listen on 127.0.0.1.
--batching: max_batch_size 8, dynamic_batching with max_queue_delay_microseconds 2000 (dims then without
the batch axis, which must be symbolic in every input and output).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import sysconfig

import common

PYTHON_STUB_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _dims(shape) -> list:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def config_pbtxt(args) -> str:
    session = common.make_session(args.model, 1)

    def tensors(items, kind):
        out = []
        for t in items:
            dims = _dims(t.shape)
            if args.batching:
                if not dims or dims[0] != -1:
                    sys.exit(f"triton --batching: {kind} {t.name!r} has no symbolic batch axis: {t.shape}")
                dims = dims[1:]
            if t.type not in common.ORT_V2:
                sys.exit(f"triton: unsupported type {t.type} of {kind} {t.name!r}")
            shape = ", ".join(map(str, dims))
            out.append(f'  {{ name: "{t.name}" data_type: TYPE_{common.ORT_V2[t.type]} dims: [ {shape} ] }}')
        return ",\n".join(out)

    lines = [
        f'name: "{args.name}"',
        'backend: "python"',
        f"max_batch_size: {8 if args.batching else 0}",
        f"input [\n{tensors(session.get_inputs(), 'input')}\n]",
        f"output [\n{tensors(session.get_outputs(), 'output')}\n]",
        "instance_group [ { count: 1 kind: KIND_CPU } ]",
        f'parameters: {{ key: "onnx" value: {{ string_value: "{args.model}" }} }}',
        f'parameters: {{ key: "threads" value: {{ string_value: "{args.threads}" }} }}',
    ]
    if args.batching:
        lines.append("dynamic_batching { max_queue_delay_microseconds: 2000 }")
    return "\n".join(lines) + "\n"


def launch(repository: pathlib.Path, workdir: pathlib.Path, http_port: int, grpc_port: int) -> None:
    """exec the wheel's tritonserver on ``repository`` (Python backend set up under ``workdir``)."""
    import pytriton

    dist = pathlib.Path(pytriton.__file__).parent / "tritonserver"
    libs = pathlib.Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    stub = dist / "python_backend_stubs" / PYTHON_STUB_VERSION / "triton_python_backend_stub"
    for path in (dist / "bin" / "tritonserver", dist / "backends" / "python", libs, stub):
        if not path.exists():
            sys.exit(f"triton: {path} missing (nvidia-pytriton wheel layout changed?)")
    backend = workdir / "backends" / "python"
    if backend.exists():
        shutil.rmtree(backend)
    shutil.copytree(dist / "backends" / "python", backend, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(stub, backend / "triton_python_backend_stub")

    env = dict(os.environ)
    lib_path = [str(libs)]
    # the stub links libpython3.11.so.1.0: take this venv's base interpreter's when it is a shared build
    soname = sysconfig.get_config_var("INSTSONAME") or ""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    if soname and (pathlib.Path(libdir) / soname).exists():
        lib_path.insert(0, libdir)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_path + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    # the stub's embedded Python runs isolated (PYTHONPATH, PYTHONHOME ignored) and finds its prefix
    # from `python3` on PATH: this venv's bin first, so it imports this venv's numpy<2 and onnxruntime
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env.get("PATH", "")])

    binary = str(dist / "bin" / "tritonserver")
    argv = [
        binary,
        f"--model-repository={repository}",
        f"--backend-directory={workdir / 'backends'}",
        f"--cache-directory={dist / 'caches'}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--allow-gpu-metrics=false",
        "--exit-on-error=true",
        "--log-verbose=0",
    ]
    os.execve(binary, argv, env)


def main() -> None:
    args = common.parse()
    work = pathlib.Path(args.workdir)
    version_dir = work / "models" / args.name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    (work / "models" / args.name / "config.pbtxt").write_text(config_pbtxt(args))
    shutil.copy(common.HERE / "triton_model.py", version_dir / "model.py")
    shutil.copy(common.HERE / "common.py", version_dir / "common.py")  # the stub puts this folder on sys.path
    launch(work / "models", work, args.http_port, args.grpc_port)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--repository":  # peer_triton.py --repository REPO WORKDIR HTTP GRPC
        launch(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
