"""Triton Python-backend model for a generation bundle, written by `modelport triton --platform python`:
a decoupled model (``model_transaction_policy { decoupled: true }``) that runs modelport's
continuous-batching scheduler on the bundle copied beside it (``bundle/``) and sends each request's text
through its response sender, so Triton's ``generate_stream`` streams it and ``generate`` answers whole.

Inputs (all but ``text_input`` optional, each ``[1]``): ``text_input``, ``max_tokens`` (default 16),
``temperature`` (default 1; 0 is greedy), ``top_p``, ``top_k``, ``seed``, ``ignore_eos``, ``stream``
(default false: one response with the whole text, as Triton's vLLM backend). The same names are read
from the request's parameters too. Outputs: ``text_output`` (the new piece when streaming) and
``finish_reason`` (on the last response). Copied into each repository as ``1/model.py``; Triton imports
it, modelport never does.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
OPTIONS = {"max_tokens": int, "temperature": float, "top_p": float, "top_k": int, "seed": int,
           "ignore_eos": bool, "stream": bool}  # fmt: skip


class TritonPythonModel:
    def initialize(self, args):
        from modelport.generation.api import load_generator
        from modelport.generation.scheduler import Scheduler

        config = json.loads(args["model_config"])
        written = config.get("parameters", {}).get("max_sequences", {})  # by modelport triton
        sequences = int(written.get("string_value", 16))
        folder = Path(args["model_repository"]) / args["model_version"] / "bundle"
        self.lm = load_generator(folder)
        self.scheduler = Scheduler(self.lm, max_running=sequences).start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self._submit(request, sender)
            except Exception as exc:  # the client hears why (a modelport error's str has the fix); serving goes on
                _send_error(sender, str(exc))
        return None

    def _submit(self, request, sender):
        from modelport.generation.loop import room_for
        from modelport.generation.sampling import Decoding

        text = pb_utils.get_input_tensor_by_name(request, "text_input")
        if text is None:
            raise ValueError("text_input is required: the prompt, a string")
        options = self._options(request)
        prompt = self.lm.encode([text.as_numpy().reshape(-1)[0].decode("utf-8")])[0]
        stream = options.pop("stream", False)
        new = room_for(prompt, options.pop("max_tokens", 16), self.lm.layout)
        decoding = Decoding(max_new_tokens=new, **{"temperature": 1.0, **options})
        ticket = None

        def on_update(update):  # on the scheduler's thread
            if ticket is not None and sender.is_cancelled():
                ticket.cancel()  # the client left: the slot frees at the next step
            if update.error is not None:
                _send_error(sender, f"generation failed: {update.error}")
            elif update.result is not None:
                text = update.text if stream else (update.result.text or "")
                sender.send(_response(text, update.result.finish_reason), flags=FINAL)
            elif stream and update.text:
                sender.send(_response(update.text, ""))

        ticket = self.scheduler.submit(prompt, decoding, on_update)

    def _options(self, request):
        """The options from the inputs, then the request's parameters (which win)."""
        options = {}
        for name, kind in OPTIONS.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                options[name] = kind(tensor.as_numpy().reshape(-1)[0])
        for name, value in json.loads(request.parameters() or "{}").items():
            if name in OPTIONS:
                options[name] = OPTIONS[name](value)
        return options

    def finalize(self):
        self.scheduler.stop()
        self.lm.close()


def _send_error(sender, message):
    sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)), flags=FINAL)


def _send_error(sender, message):
    sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)), flags=FINAL)


def _response(text, finish_reason):
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("finish_reason", np.array([finish_reason.encode("utf-8")], dtype=np.object_)),
        ]
    )
