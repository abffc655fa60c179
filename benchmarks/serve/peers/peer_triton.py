"""Triton peer: the tritonserver binary (2.51) shipped in the nvidia-pytriton wheel, serving a model
repository written into --workdir with one Python-backend model (triton_model.py) that runs onnxruntime.

Run by start.py with build/peers/triton/venv/bin/python (common.py on PYTHONPATH): derives config.pbtxt
from the ONNX graph (symbolic dims -> -1), then starts tritonserver through modelport.scale.triton_server
(installed in that venv by setup.sh), which sets up the wheel's Python backend and stub and stops Triton on
SIGTERM; the models import this venv's onnxruntime and numpy (< 2 for the wheel's python backend).
Metrics are off; HTTP and gRPC listen on 127.0.0.1.
--batching: max_batch_size 8, dynamic_batching with max_queue_delay_microseconds 2000 (dims then without
the batch axis, which must be symbolic in every input and output).
"""

from __future__ import annotations

import pathlib
import shutil
import sys

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


def main() -> None:
    args = common.parse()
    work = pathlib.Path(args.workdir)
    version_dir = work / "models" / args.name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    (work / "models" / args.name / "config.pbtxt").write_text(config_pbtxt(args))
    shutil.copy(common.HERE / "triton_model.py", version_dir / "model.py")
    shutil.copy(common.HERE / "common.py", version_dir / "common.py")  # the stub puts this folder on sys.path
    # modelport's launcher (installed in this venv): the wheel's backend and stub, libraries, PATH, SIGTERM
    from modelport.scale.triton_server import TritonServer

    TritonServer([work / "models"], python=sys.executable, port=args.http_port, grpc_port=args.grpc_port).start().wait()


if __name__ == "__main__":
    main()
