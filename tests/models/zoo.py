"""Small models written as code, each with the specs it is exported with (``SPECS``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicCNN(nn.Module):
    """Conv net that works at any height and width."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn(self.conv1(x))))


class TwoInputs(nn.Module):
    """Two inputs whose dynamic dims are independent; forward's order differs from the declared order."""

    def __init__(self) -> None:
        super().__init__()
        self.image_proj = nn.Linear(6, 5)
        self.token_emb = nn.Embedding(50, 5)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        img = self.image_proj(image).mean(dim=1)  # (n, 5)
        tok = self.token_emb(tokens).mean(dim=1)  # (m, 5)
        return img @ tok.T  # (n, m)


class MultiOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.lin(x)
        return {"logits": y, "probs": y.softmax(-1), "top": y.argmax(-1)}


class Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class LeftInTraining(nn.Module):
    """Has Dropout and BatchNorm, and its factory forgets model.eval()."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.bn(self.lin(x)))


class BoolFlag(nn.Module):
    """Branches on a forward bool argument."""

    def forward(self, x: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
        if flag:
            return x * 2
        return x - 1


class Noisy(nn.Module):
    """Exports fine and answers differently every call: verification must refuse it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x)


class IgnoresInput(nn.Module):
    def forward(self, x: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
        return x * 3


class Classifier(nn.Module):
    """An MLP with GELU and LayerNorm, 10 classes: small enough to optimize in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(32, 128), nn.GELU(), nn.LayerNorm(128), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return Classifier().eval()


def dynamic_cnn() -> nn.Module:
    torch.manual_seed(0)
    return DynamicCNN().eval()


def two_inputs() -> nn.Module:
    torch.manual_seed(0)
    return TwoInputs().eval()


def multi_output() -> nn.Module:
    torch.manual_seed(0)
    return MultiOutput().eval()


def upsample() -> nn.Module:
    return Upsample().eval()


def left_in_training() -> nn.Module:
    torch.manual_seed(0)
    model = LeftInTraining()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    return model  # no .eval(): the mistake under test


def bool_flag() -> nn.Module:
    return BoolFlag()


def exports_wrong() -> nn.Module:
    from tests.models.hostile import ExportsWrong

    return ExportsWrong()


def noisy() -> nn.Module:
    return Noisy()


def ignores_input() -> nn.Module:
    return IgnoresInput()


def not_a_module() -> str:
    return "a string"


def broken_factory() -> nn.Module:
    raise RuntimeError("checkpoint weights.bin not found")


SPECS: dict[str, tuple[list[str], list[str]]] = {
    "dynamic_cnn": (["x:batch,3,h,w"], ["batch=1..4", "h=8..40", "w=8..40"]),
    "two_inputs": (
        ["tokens:m,seq:int64:0..50", "image:n,patches,6"],
        ["m=1..6", "n=1..9", "seq=1..12", "patches=1..5"],
    ),
    "multi_output": (["x:batch,4"], ["batch=1..16"]),
    "classifier": (["x:batch,32"], ["batch=1..8"]),
    "upsample": (["x:batch,2,h,w"], ["batch=1..3", "h=2..17", "w=2..17"]),
    "left_in_training": (["x:batch,8"], ["batch=2..16"]),
    "bool_flag": (["x:batch,3", "flag::bool"], []),
    "noisy": (["x:batch,3"], []),
    "exports_wrong": (["x:batch,3"], []),
    "ignores_input": (["x:batch,3", "unused:batch,3"], []),
}
