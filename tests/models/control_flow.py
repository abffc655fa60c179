"""The control-flow scenarios that plain torch.onnx.export gets silently wrong, each with its specs."""

from __future__ import annotations

import torch
from torch import nn


class AttributeBranch(nn.Module):
    """Branch on an instance attribute: fixed at construction, so no If is needed."""

    def __init__(self, double: bool = True) -> None:
        super().__init__()
        self.double = double

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.double:
            return x * 2
        return x - 1


class BoolArgBranch(nn.Module):
    def forward(self, x: torch.Tensor, flag: bool) -> torch.Tensor:
        if flag:
            return x * 2
        return x - 1


class DataBranchSameShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


class DataBranchOtherShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x[:, :1] * 2
        return x - 1


class RangeLoop(nn.Module):
    def forward(self, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        for _ in range(int(n)):
            x = x * 2 + 1
        return x


class WhileLoop(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = 100.0
        while x.abs().sum() < c:
            x = x * 2 + 0.5
        return x


@torch.jit.script
def _repeat_double(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    for _ in range(int(n)):
        x = x * 2
    return x


class CallsScripted(nn.Module):
    """Traced as a whole; the scripted helper keeps its loop."""

    def forward(self, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return _repeat_double(x, n) + 1


class DimBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 32:
            return x[:, :32] * 2
        return x + 1


class CondModel(nn.Module):
    """Written with torch.cond: the If survives export."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: t * 2, lambda t: t - 1, (x,))


class WhileLoopOp(nn.Module):
    """Written with while_loop: the Loop survives export."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch._higher_order_ops.while_loop import while_loop

        def cond(i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return i < 3

        def body(i: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return i + 1, t * 2 + 1

        return while_loop(cond, body, (torch.zeros((), dtype=torch.int64), x))[1]


SCENARIOS: dict[str, tuple[type[nn.Module], list[str], list[str]]] = {
    "attribute_branch": (AttributeBranch, ["x:batch,4"], []),
    "bool_arg_branch": (BoolArgBranch, ["x:batch,4", "flag::bool"], []),
    "data_branch_same_shape": (DataBranchSameShape, ["x:batch,4"], []),
    "data_branch_other_shape": (DataBranchOtherShape, ["x:batch,4"], []),
    "range_loop": (RangeLoop, ["x:batch,4", "n::int64:0..5"], []),
    "while_loop": (WhileLoop, ["x:batch,4"], []),
    "calls_scripted": (CallsScripted, ["x:batch,4", "n::int64:0..5"], []),
    "dim_branch": (DimBranch, ["x:batch,len"], ["len=8..64"]),
    "cond_model": (CondModel, ["x:batch,4"], []),
    "while_loop_op": (WhileLoopOp, ["x:batch,4"], []),
}


def build(name: str) -> nn.Module:
    return SCENARIOS[name][0]().eval()


# factories for MODEL strings: tests.models.control_flow:<name>
for _name in SCENARIOS:
    globals()[_name] = (lambda n: lambda: build(n))(_name)
