"""KServe peer: a kserve.Model whose predict runs onnxruntime on the v2 InferRequest, served by
kserve.ModelServer (HTTP on --http-port, gRPC on --grpc-port, 1 worker).

Run by start.py with build/peers/kserve/venv/bin/python (common.py on PYTHONPATH). predict is a plain
def, so KServe calls it inline on the event loop (one request at a time, like MLServer with
parallel_workers=0). Per-request logs (latency, access, timing) are off. KServe has no server-side batching: --batching
is refused.
"""

from __future__ import annotations

import logging
import sys
import uuid

import common

ARGS = common.parse()
# kserve.model_server parses sys.argv when imported (parse_known_args, prefix matching): hide ours
sys.argv = sys.argv[:1]

import kserve  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve.utils.numpy_codec import from_np_dtype  # noqa: E402


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: str, threads: int):
        super().__init__(name)
        self.path = path
        self.threads = threads
        self.runner = None

    def load(self) -> bool:
        self.runner = common.OnnxRunner(self.path, self.threads)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        feed = {i.name: i.as_numpy() for i in payload.inputs}
        results = dict(zip(self.runner.outputs, self.runner.run(feed), strict=True))
        binary = bool(payload.from_grpc or payload.use_binary_outputs)
        wanted = [o.name for o in payload.request_outputs] if payload.request_outputs else self.runner.outputs
        outputs = []
        for name in wanted:
            arr = results[name]
            out = InferOutput(name=name, shape=list(arr.shape), datatype=from_np_dtype(arr.dtype))
            out.set_data_from_numpy(arr, binary_data=binary)
            outputs.append(out)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),  # kserve 0.21 refuses a response without an id
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=binary,
        )


def main() -> None:
    if ARGS.batching:
        sys.exit("kserve: ModelServer has no server-side batching (run without --batching)")
    model = OnnxModel(ARGS.name, ARGS.model, ARGS.threads)
    model.load()
    server = kserve.ModelServer(
        http_port=ARGS.http_port,
        grpc_port=ARGS.grpc_port,
        workers=1,
        enable_grpc=True,
        enable_latency_logging=False,
    )
    # no log line per request (the other peers write none either): access log and timing middleware
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
