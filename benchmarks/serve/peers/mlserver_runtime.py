"""MLServer runtime: an MLModel that runs the ONNX file with onnxruntime (see peer_mlserver.py).

model-settings.json names it as implementation "mlserver_runtime.OnnxModel"; parameters.extra holds
"onnx" (the file) and "threads" (intra_op_num_threads).
"""

from __future__ import annotations

import os
import sys

from common import OnnxRunner
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

LOG_BATCH = bool(os.environ.get("PEER_LOG_BATCH"))  # PEER_LOG_BATCH=1: one stderr line per onnxruntime run


class OnnxModel(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra or {}
        self._runner = OnnxRunner(extra["onnx"], int(extra["threads"]))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        # inline on the event loop, as MLServer's own runtimes do (parallel_workers=0: one process)
        feed = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        if LOG_BATCH:
            shapes = {k: v.shape for k, v in feed.items()}
            print(f"[peer] run {shapes}", file=sys.stderr, flush=True)
        results = dict(zip(self._runner.outputs, self._runner.run(feed), strict=True))
        wanted = [o.name for o in payload.outputs] if payload.outputs else self._runner.outputs  # as requested
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(n, results[n]) for n in wanted],
        )
