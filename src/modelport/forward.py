"""How the declared inputs reach ``forward``, and how its outputs flatten into ONNX outputs.

Inputs bind by name when every spec name is a parameter of ``forward``, by position when none is;
a mix is refused, since it would silently feed one tensor where another belongs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modelport.errors import SourceError, UsageError, first_line
from modelport.spec import Signature

__all__ = ["CallPlan", "plan_call", "flatten_outputs", "run_eager"]


@dataclass(frozen=True)
class CallPlan:
    by_name: bool
    params: tuple[str, ...]  # forward parameter that receives each input, in input order

    def split(self, values: list[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.by_name:
            return (), dict(zip(self.params, values, strict=True))
        return tuple(values), {}


def forward_params(module: Any) -> list[str] | None:
    """Names of forward's parameters, or None where they cannot be read (TorchScript, *args)."""
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError, AttributeError):
        return None
    kinds = {p.kind for p in sig.parameters.values()}
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
    ]


def plan_call(module: Any, sig: Signature, positional: bool = False) -> CallPlan:
    names = [s.name for s in sig.inputs]
    params = None if positional else forward_params(module)
    if params is None:
        return CallPlan(False, tuple(names))
    matched = [n for n in names if n in params]
    if len(matched) == len(names):
        return CallPlan(True, tuple(names))
    if matched:
        stray = next(n for n in names if n not in params)
        raise UsageError(
            f"input {stray!r} is not a parameter of forward({', '.join(params)})",
            "name every --input after a forward parameter (bound by name) or none of them (bound by position)",
        )
    if len(names) > len(params):
        raise UsageError(
            f"{len(names)} inputs declared but forward({', '.join(params)}) takes {len(params)}",
            "declare one --input per forward parameter",
        )
    return CallPlan(False, tuple(params[: len(names)]))


def flatten_outputs(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Tensors of a (nested) output in the order the exporters emit them, with readable names."""
    if isinstance(value, torch.Tensor):
        return [(prefix or "output", value)]
    items: list[tuple[str, Any]]
    if isinstance(value, dict):  # includes transformers' ModelOutput, which skips None fields
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (tuple, list)):
        items = [(f"output_{i}" if not prefix else str(i), v) for i, v in enumerate(value)]
    elif value is None:
        return []
    else:
        raise SourceError(
            f"the model returned a {type(value).__name__}, which ONNX cannot carry",
            "return tensors, or tuples/lists/dicts of tensors",
        )
    out: list[tuple[str, torch.Tensor]] = []
    for key, item in items:
        out += flatten_outputs(item, f"{prefix}.{key}" if prefix else key)
    return out


def run_eager(
    module: Any,
    plan: CallPlan,
    arrays: dict[str, np.ndarray],
    sig: Signature,
    *,
    timeout: float | None = None,
    label: str = "",
) -> list[tuple[str, np.ndarray]]:
    """Run PyTorch on one feed; returns named numpy outputs. With ``timeout`` (seconds), a call that has not
    finished by then is stopped and refused (``verify.deadline.VerifyTimeoutError``, naming feed ``label``)."""
    if timeout is not None:
        from modelport.deadline import within

        return within(lambda: run_eager(module, plan, arrays, sig), timeout, "PyTorch", label or "example")
    values = [torch.from_numpy(np.ascontiguousarray(arrays[s.name])) for s in sig.inputs]
    args, kwargs = plan.split(values)
    try:
        with torch.inference_mode():
            result = module(*args, **kwargs)
    except Exception as exc:  # the user's forward failed on inputs built from their spec
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items())
        raise SourceError(
            f"the model raised {type(exc).__name__} on inputs {shapes}: {first_line(exc)}",
            "check that --input shapes, dtypes and value ranges match what forward expects",
        ) from exc
    return [(name, t.detach().cpu().numpy()) for name, t in flatten_outputs(result)]
