"""Triton Python-backend model written by `modelport triton --platform python`: runs the bundle copied
beside it (``bundle/``) through modelport's runner, on the backend the bundle records. Copied into each
repository as ``1/model.py``; Triton imports it, modelport never does."""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend


class TritonPythonModel:
    def initialize(self, args):
        from modelport.runtime.registry import create

        folder = Path(args["model_repository"]) / args["model_version"] / "bundle"
        self.runner = create(None, folder).load()
        self.outputs = [o["name"] for o in json.loads(args["model_config"])["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feed = {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}
                outputs = self.runner.infer(feed)
                tensors = [pb_utils.Tensor(name, outputs[name]) for name in self.outputs]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # the client hears why, the model keeps serving
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def finalize(self):
        self.runner.close()
