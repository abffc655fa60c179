"""Models that test verification's bounds: loops that do not end, randomness, scalars, masks, extreme values.

Each factory returns an ``nn.Module`` (MODEL strings: ``tests.models.hostile:<factory>``); ``SPECS`` holds the
inputs each is exported with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _exporting() -> bool:
    """True while torch.export or torch.onnx.export captures the model: lets a test model export a graph
    that differs from its eager forward, the way a capture bug would."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


class Doubling(nn.Module):
    """Issue 11's example: ends for positive inputs, runs forever on a negated one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while x.sum() < 100:
            x = x * 2
        return x


class Endless(nn.Module):
    """Never ends, on any input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while x.sum() > -1:
            x = x + 1
        return x


class EndlessInOnnx(nn.Module):
    """Ends in PyTorch; the graph torch.export captures loops forever (a while_loop whose condition holds)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _exporting():
            from torch._higher_order_ops.while_loop import while_loop

            return while_loop(lambda t: t.sum() > -1e30, lambda t: (t + 1,), (x,))[0]
        return x + 1


class Temperature(nn.Module):
    """A float scalar input: softmax(x / t)."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x / t, dim=-1)


class ScalarOfEveryDtype(nn.Module):
    def forward(self, x: torch.Tensor, i: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return x * i.to(x.dtype) + h.to(x.dtype)


class ForcedDropout(nn.Module):
    """Random in eval mode: dropout forced on in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.5, training=True)


class ExportsWrong(nn.Module):
    """Deterministic, but the exported graph adds 1: what a wrong export looks like to verification."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if _exporting() else x


class RoundsAtExtremes(nn.Module):
    """The export differs by 1e-8 * max|x|^3: nothing at real magnitudes (below 1e-6 for |x| < 4.6), a
    small fraction of the output's scale at 100x (about 0.1 to 1 where the output reaches a few hundred),
    the way a kernel's rounding grows with the values it adds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _exporting():
            return x + 1e-8 * x.abs().max() ** 3
        return x


class ClampsExtremes(nn.Module):
    """Clamps to +-50 in PyTorch, not in the export: agrees on real data, differs grossly at 100x, the way a
    branch on a magnitude frozen at capture does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if _exporting() else x.clamp(-50, 50)


class PaddedAttention(nn.Module):
    """nn.MultiheadAttention with a bool key_padding_mask (True = padded): an all-True row is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)[0]


def doubling() -> nn.Module:
    return Doubling().eval()


def endless() -> nn.Module:
    return Endless().eval()


def endless_script() -> nn.Module:
    """TorchScript: the loop runs in the interpreter, without the GIL, where no Python signal reaches it."""
    return torch.jit.script(Endless().eval())


def endless_in_onnx() -> nn.Module:
    return EndlessInOnnx().eval()


def temperature() -> nn.Module:
    return Temperature().eval()


def scalar_of_every_dtype() -> nn.Module:
    return ScalarOfEveryDtype().eval()


def forced_dropout() -> nn.Module:
    return ForcedDropout().eval()


def exports_wrong() -> nn.Module:
    return ExportsWrong().eval()


def rounds_at_extremes() -> nn.Module:
    return RoundsAtExtremes().eval()


def clamps_extremes() -> nn.Module:
    return ClampsExtremes().eval()


def padded_attention() -> nn.Module:
    torch.manual_seed(0)
    return PaddedAttention().eval()


def resnet50_unscaled() -> nn.Module:
    """benchmarks/models.py's ResNet-50 without the 0.1 classifier scale: logits of +-100 and, on the x100
    feed, of +-1e5, where a per-element fp32 check at atol 1e-4 used to refuse it."""
    from benchmarks.models import ResNet50

    torch.manual_seed(0)
    return ResNet50().eval()


SPECS: dict[str, tuple[list[str], list[str]]] = {
    "doubling": (["x:4:float32:0.1..1.0"], []),
    "endless": (["x:4"], []),
    "endless_script": (["x:4"], []),
    "endless_in_onnx": (["x:batch,4"], []),
    "temperature": (["x:batch,5", "t::float32:0.1..10"], []),
    "scalar_of_every_dtype": (["x:batch,3", "i::int32:1..4", "h::float64:-1..1"], []),
    "forced_dropout": (["x:batch,8"], []),
    "exports_wrong": (["x:batch,3"], []),
    "rounds_at_extremes": (["x:batch,16"], ["batch=1..4"]),
    "clamps_extremes": (["x:batch,16"], ["batch=1..4"]),
    "padded_attention": (["x:batch,seq,8", "key_padding_mask:batch,seq:bool"], ["batch=1..3", "seq=1..6"]),
    "resnet50_unscaled": (["x:batch,3,s,s"], ["batch=1..2", "s=64..224"]),
}
