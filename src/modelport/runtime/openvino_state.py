"""OpenVINO's stateful decoding: a decoder's KV cache kept inside the compiled model.

``make_stateful`` turns each past input / present output pair of a generation graph into one OpenVINO
variable (``apply_make_stateful_transformation``, as OpenVINO's own LLM pipelines do), so a decode step
feeds only the new tokens, the mask and the positions, and the cache never leaves the runtime. A
variable starts, after ``reset()``, as an empty cache with the batch of the first ``input_ids`` fed.

The state belongs to an infer request, not to the compiled model: ``StateRequest`` is one request with
its own cache (the serving scheduler keeps two, the running batch and a prefill). ``read``/``write`` take
the cache out as numpy arrays and put one back (rows joined or dropped between steps).

``KV_CACHE_PRECISION`` (u8, f16) is passed on, but OpenVINO's CPU plugin compresses the cache only for
attention it fuses into ``ScaledDotProductAttention``; ``held_as`` says what the variables really hold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["make_stateful", "StateRequest", "KV_CACHE_PRECISIONS"]

KV_CACHE_PRECISIONS = ("f32", "f16", "u8")


def make_stateful(model: Any, state: dict[str, str]) -> None:
    """Each ``past input -> present output`` of ``state`` becomes a variable of ``model`` (in place),
    initialised to an empty cache: the batch of ``input_ids``, every other static dim, length 0."""
    import openvino.opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    apply_make_stateful_transformation(model, state)
    ids = model.input("input_ids")
    batch = ops.gather(ops.shape_of(ids, output_type="i64"), ops.constant(np.array([0], np.int64)), ops.constant(0))
    for node in model.get_ops():
        if node.get_type_name() != "ReadValue":
            continue
        rest = [d.get_length() if d.is_static else 0 for d in list(node.get_output_partial_shape(0))[1:]]
        shape = ops.concat([batch, ops.constant(np.array(rest, np.int64))], 0)
        zero = ops.constant(np.zeros((), node.get_output_element_type(0).to_dtype()))
        node.set_arguments([ops.broadcast(zero, shape)])
    model.validate_nodes_and_infer_types()


class StateRequest:
    """One infer request of a stateful compiled model: its own KV cache, in ``names`` order."""

    def __init__(self, compiled: Any, ports: list[tuple[str, Any]], state: dict[str, str]) -> None:
        self.request = compiled.create_infer_request()
        self.ports = ports
        self.names = list(state)
        self._ids = {past + present: past for past, present in state.items()}  # OpenVINO's variable ids

    def reset(self) -> None:
        self.request.reset_state()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer(feed)
        return {name: np.array(result[port], copy=True) for name, port in self.ports}

    def _variables(self) -> dict[str, Any]:
        return {self._ids.get(v.name, v.name): v for v in self.request.query_state()}

    def read(self) -> list[np.ndarray]:
        variables = self._variables()
        return [np.array(variables[name].state.data, copy=True) for name in self.names]

    def write(self, arrays: list[np.ndarray]) -> None:
        import openvino as ov

        variables = self._variables()
        for name, array in zip(self.names, arrays, strict=True):
            variables[name].state = ov.Tensor(np.ascontiguousarray(array))

    def held_as(self) -> str:
        """The element type the variables hold (after a first step), e.g. ``f32`` or ``u8``."""
        variables = self.request.query_state()
        return variables[0].state.element_type.get_type_name() if variables else ""
