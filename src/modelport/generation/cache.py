"""The KV cache between decode steps, kept on the runtime's side.

``OrtCache`` runs ONNX Runtime through IO binding: each step's ``present.*`` outputs stay ``OrtValue``s
that ONNX Runtime allocated, and are bound as the next step's ``past_key_values.*`` inputs, so the
cache never makes a round trip through numpy (only the small token, mask and position arrays go in,
and the logits come out). The graph's attention concatenates past and new keys, so each step writes a
cache one position longer; ONNX Runtime's arena hands the blocks freed by the previous step back out,
and the cost per token grows with the context only by what attention itself reads.

``StateCache`` runs a stateful OpenVINO runner (``openvino_state``): the cache stays in the infer
request's variables, and a step feeds only ids, mask and positions. ``ArrayCache`` is the portable path
for any other runner (OpenVINO with explicit cache tensors): the cache goes out and back in as numpy
arrays. All start with an empty past (``past_sequence_length`` 0) for the prompt pass.

``PrefillCache`` runs the prompt pass on one runner and the steps after it on another, the cache handed
over once between them: a prompt pass is a matrix product over every prompt token (compute-bound, where
OpenVINO's bf16/AMX kernels are several times ONNX Runtime's int4 ones), a step a product with one row
per sequence (memory-bound, where ONNX Runtime's int4 kernels lead). Both runners run the same graph file.

An encoder-decoder's decoder also reads inputs that stay the same for every step of a request (the
cross-attention keys/values the encoder wrote, the encoder's mask): ``hold`` takes them once per
batch (ONNX Runtime: as ``OrtValue``s, bound again each step without a copy). A feed's names that the
graph does not take (a seq2seq decoder has no ``attention_mask`` of its own) are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.diagnose.translate import ort_run_error
from modelport.generation.layout import DecoderLayout
from modelport.runtime.base import Runner

__all__ = ["StepCache", "OrtCache", "ArrayCache", "StateCache", "PrefillCache", "for_runner"]


class StepCache:
    """One sequence batch's cache: ``start(batch)``, then ``step(feed) -> logits`` per forward pass."""

    def __init__(self, runner: Runner, layout: DecoderLayout) -> None:
        self.runner = runner
        self.layout = layout
        self.past_length = 0
        self.fixed: dict[str, Any] = {}
        self._takes = set(layout.input_names)

    def hold(self, arrays: dict[str, np.ndarray]) -> None:
        """Inputs every step of the next batch reads unchanged (set after ``start``; ``start`` clears them)."""
        self.fixed = dict(arrays)

    def _feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: array for name, array in feed.items() if name in self._takes}

    def start(self, batch: int) -> None:
        raise NotImplementedError

    def step(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def arrays(self) -> list[np.ndarray]:
        """The cache as numpy arrays, in ``layout.past_names`` order (read only: the scheduler builds new ones)."""
        raise NotImplementedError

    def replace(self, arrays: list[np.ndarray]) -> None:
        """Carry on from ``arrays`` (``arrays()``'s order): rows added, dropped or padded by the scheduler."""
        raise NotImplementedError

    def _empty(self, batch: int) -> np.ndarray:
        shape = (batch, self.layout.kv_heads, 0, self.layout.head_dim)
        return np.zeros(shape, np.dtype(self.layout.kv_dtype))


class ArrayCache(StepCache):
    def start(self, batch: int) -> None:
        self.past = {name: self._empty(batch) for name in self.layout.past_names}
        self.past_length = 0
        self.fixed = {}

    def step(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        outputs = self.runner.infer({**self._feed(feed), **self.fixed, **self.past})
        presents = self.layout.output_names[1:]
        self.past = {name: outputs[out] for name, out in zip(self.layout.past_names, presents, strict=True)}
        self.past_length += feed["input_ids"].shape[1]
        return outputs["logits"]

    def arrays(self) -> list[np.ndarray]:
        return [self.past[name] for name in self.layout.past_names]

    def replace(self, arrays: list[np.ndarray]) -> None:
        self.past = dict(zip(self.layout.past_names, arrays, strict=True))
        self.past_length = arrays[0].shape[2]


class OrtCache(StepCache):
    def start(self, batch: int) -> None:
        ort = _onnxruntime()
        self.session = self.runner.session  # type: ignore[attr-defined]
        self.past_values = [ort.OrtValue.ortvalue_from_numpy(self._empty(batch)) for _ in self.layout.past_names]
        self.past_length = 0
        self.fixed = {}

    def hold(self, arrays: dict[str, np.ndarray]) -> None:
        ort = _onnxruntime()
        self.fixed = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}

    def step(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        binding = self.session.io_binding()
        for name, array in self._feed(feed).items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name, value in self.fixed.items():
            binding.bind_ortvalue_input(name, value)
        for name, value in zip(self.layout.past_names, self.past_values, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name in self.layout.output_names:
            binding.bind_output(name, "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:
            raise ort_run_error(exc, self.session.get_inputs(), feed, self.runner.path) from exc  # type: ignore[attr-defined]
        outputs = binding.get_outputs()
        self.past_values = list(outputs[1:])
        self.past_length += feed["input_ids"].shape[1]
        return outputs[0].numpy()

    def arrays(self) -> list[np.ndarray]:
        return [value.numpy() for value in self.past_values]

    def replace(self, arrays: list[np.ndarray]) -> None:
        ort = _onnxruntime()
        self.session = self.runner.session  # type: ignore[attr-defined]
        self.past_values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in arrays]
        self.past_length = arrays[0].shape[2]


class StateCache(StepCache):
    request: Any = None  # the infer request holding this cache, made at first use

    def _request(self) -> Any:
        if self.request is None:
            self.request = self.runner.state_request()  # type: ignore[attr-defined]
        return self.request

    def start(self, batch: int) -> None:
        self._request().reset()
        self.past_length = 0
        self.fixed = {}

    def step(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        from modelport.runtime.openvino import infer_error

        try:
            outputs = self._request().infer({**self._feed(feed), **self.fixed})
        except Exception as exc:
            raise infer_error(exc) from exc
        self.past_length += feed["input_ids"].shape[1]
        return outputs["logits"]

    def arrays(self) -> list[np.ndarray]:
        return self._request().read()

    def replace(self, arrays: list[np.ndarray]) -> None:
        self._request().write(arrays)
        self.past_length = arrays[0].shape[2]


class PrefillCache(StepCache):
    """The prompt pass (from an empty past) on ``prompt``'s runner, every later step on ``steps``'s."""

    def __init__(self, prompt: StepCache, steps: StepCache) -> None:
        super().__init__(steps.runner, steps.layout)
        self.prompt, self.steps = prompt, steps

    def start(self, batch: int) -> None:
        self.steps.start(batch)
        self.prompt.start(batch)
        self.past_length = 0

    def hold(self, arrays: dict[str, np.ndarray]) -> None:
        self.prompt.hold(arrays)
        self.steps.hold(arrays)

    def step(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.past_length:
            logits = self.steps.step(feed)
        else:
            logits = self.prompt.step(feed)
            self.steps.replace(self.prompt.arrays())
            self.prompt.start(0)  # its copy of the cache is not needed any more
        self.past_length = self.steps.past_length
        return logits

    def arrays(self) -> list[np.ndarray]:
        return self.steps.arrays()

    def replace(self, arrays: list[np.ndarray]) -> None:
        self.steps.replace(arrays)
        self.past_length = self.steps.past_length


def for_runner(runner: Runner, layout: DecoderLayout, prefill: Runner | None = None) -> StepCache:
    """IO binding on an ONNX Runtime CPU session, the runtime's own state on a stateful runner, numpy
    arrays elsewhere; with ``prefill``, prompt passes run on that runner (``PrefillCache``)."""
    if prefill is not None:
        return PrefillCache(for_runner(prefill, layout), for_runner(runner, layout))
    if getattr(runner, "state", None):
        return StateCache(runner, layout)
    session = getattr(runner, "session", None)
    if session is not None and runner.name.startswith("ort") and session.get_providers()[0] == "CPUExecutionProvider":
        return OrtCache(runner, layout)
    return ArrayCache(runner, layout)


def _onnxruntime() -> Any:
    from modelport.errors import import_onnxruntime

    return import_onnxruntime()
