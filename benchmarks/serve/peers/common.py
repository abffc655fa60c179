"""Shared by the peer launchers: the command line, and the onnxruntime session every peer runs.

Stdlib only at import time (start.py imports it under any Python); onnxruntime and numpy are imported
inside the functions that need them, which only run in a peer's own venv.
"""

from __future__ import annotations

import argparse
import os
import pathlib

PEERS = ("mlserver", "kserve", "triton")
HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
BUILD = REPO / "build" / "peers"


def venv_python(peer: str) -> pathlib.Path:
    return BUILD / peer / "venv" / "bin" / "python"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Serve one ONNX model over the Open Inference Protocol v2 with a peer server "
        "(onnxruntime, CPUExecutionProvider)."
    )
    p.add_argument("peer", choices=PEERS)
    p.add_argument("--model", required=True, help="the .onnx file")
    p.add_argument("--name", required=True, help="model name: /v2/models/NAME/infer")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: HTTP port + 1)")
    p.add_argument("--threads", type=int, required=True, help="onnxruntime intra_op_num_threads")
    p.add_argument(
        "--batching",
        action="store_true",
        help="server-side batching, max 8 requests, 2 ms (mlserver: adaptive batching; "
        "triton: dynamic_batching); kserve has none",
    )
    p.add_argument("--workdir", default=None, help="where the peer's config goes (default: a temp folder)")
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for readiness")
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    args.model = os.path.abspath(args.model)
    if args.grpc_port is None:
        args.grpc_port = args.http_port + 1
    if args.threads < 1:
        parser().error("--threads must be >= 1")
    return args


def make_session(path: str, threads: int):
    """The session every peer runs: CPU provider, intra_op=threads, inter_op=1, default optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# onnxruntime type strings -> numpy dtype names; v2 datatype names
ORT_NUMPY = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
ORT_V2 = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
}


class OnnxRunner:
    """A session plus what the wrappers need: input dtypes (feeds are cast to them) and output names."""

    def __init__(self, path: str, threads: int):
        import numpy as np

        self.session = make_session(path, threads)
        self.inputs = {i.name: np.dtype(ORT_NUMPY[i.type]) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feed: dict) -> list:
        import numpy as np

        missing = set(self.inputs) - set(feed)
        if missing:
            raise ValueError(f"missing inputs: {sorted(missing)}")
        cast = {name: np.asarray(feed[name], dtype=dtype) for name, dtype in self.inputs.items()}
        return self.session.run(self.outputs, cast)
