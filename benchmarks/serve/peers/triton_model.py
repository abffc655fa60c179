"""Triton Python-backend model (copied as <repository>/<name>/1/model.py by peer_triton.py): runs the ONNX
file with onnxruntime. config.pbtxt parameters "onnx" (the file) and "threads" (intra_op_num_threads).

With dynamic batching (max_batch_size > 0) Triton hands execute() several requests at once; their
inputs are concatenated along the batch axis, run once and the outputs split back (requests whose
other dims differ are run one by one).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils
from common import OnnxRunner

LOG_BATCH = bool(os.environ.get("PEER_LOG_BATCH"))  # PEER_LOG_BATCH=1: one stderr line per onnxruntime run


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.runner = OnnxRunner(params["onnx"], int(params["threads"]))
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def _feed(self, request) -> dict:
        feed = {}
        for name in self.runner.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            feed[name] = tensor.as_numpy()
        return feed

    def _run(self, feed: dict) -> list:
        if LOG_BATCH:
            shapes = {k: v.shape for k, v in feed.items()}
            print(f"[peer] run {shapes}", file=sys.stderr, flush=True)
        return self.runner.run(feed)

    @staticmethod
    def _response(outputs, names):
        tensors = [pb_utils.Tensor(n, a) for n, a in zip(names, outputs, strict=True)]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests):
        names = self.runner.outputs
        feeds, responses = [], [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                feeds.append((i, self._feed(request)))
            except Exception as exc:  # noqa: BLE001
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        mergeable = (
            self.batching
            and len(feeds) > 1
            and all(f[k].shape[1:] == feeds[0][1][k].shape[1:] for _, f in feeds for k in self.runner.inputs)
        )
        if mergeable:
            first = next(iter(self.runner.inputs))
            sizes = [f[first].shape[0] for _, f in feeds]
            merged = {k: np.concatenate([f[k] for _, f in feeds]) for k in self.runner.inputs}
            try:
                results = self._run(merged)
                bounds = np.cumsum(sizes)[:-1]
                parts = [np.split(r, bounds) for r in results]
                for j, (i, _) in enumerate(feeds):
                    responses[i] = self._response([p[j] for p in parts], names)
            except Exception as exc:  # noqa: BLE001
                for i, _ in feeds:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        else:
            for i, feed in feeds:
                try:
                    responses[i] = self._response(self._run(feed), names)
                except Exception as exc:  # noqa: BLE001
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        return responses
