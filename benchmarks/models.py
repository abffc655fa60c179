"""Model factories for the benchmarks: random weights (seeded), eval mode, nothing downloaded.

Each is exported with ``modelport export benchmarks/models.py:FACTORY -o OUT`` and these specs:

    resnet50    --input x:batch,3,s,s --dim batch=1..2 --dim s=64..224
    bert_base   --input input_ids:batch,seq:int64:0..30522 --input attention_mask:batch,seq:int64:0..2
                --dim batch=1..8 --dim seq=1..128
    gpt2_small  --input input_ids:batch,seq:int64:0..50257 --input attention_mask:batch,seq:int64:0..2
                --dim batch=1..8 --dim seq=1..128
                (or without the attention_mask input: causal attention only, no padding)

All three capture with torch.export. For resnet50 keep s >= 33: at s <= 32 the last feature map is 1x1, torch.export
specializes that size, and modelport falls back to TorchScript (s=32..224 still verifies, through that fallback).
"""

from __future__ import annotations

import torch
from torch import nn

from modelport.sources.hf import require_transformers  # offline, quiet transformers


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet50(nn.Module):
    """torchvision's resnet50 layout: bottleneck blocks [3, 4, 6, 3], stride on the 3x3 conv (v1.5)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, inplanes = [], 64
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(inplanes, planes, stride if i == 0 else 1))
                inplanes = planes * Bottleneck.expansion
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50() -> nn.Module:
    # torchvision's resnet50(weights=None) init (kaiming convs, BatchNorm at its defaults), with the classifier scaled
    # by 0.1 so logits span about +-10 as a trained model's do rather than +-100. Smaller logits keep fp32 noise well
    # inside the parity tolerance on the x100 verification feed (BatchNorm statistics calibrated on random images
    # failed it: the x100 outputs reach 1e5 and the check is per element).
    torch.manual_seed(0)
    model = ResNet50().eval()
    with torch.no_grad():
        model.fc.weight.mul_(0.1)
        model.fc.bias.mul_(0.1)
    return model


class BertBase(nn.Module):
    """BertModel with BertConfig defaults; returns last_hidden_state and pooler_output (the ONNX output names)."""

    def __init__(self) -> None:
        super().__init__()
        t = require_transformers()
        self.model = t.BertModel(t.BertConfig(use_cache=False, attn_implementation="eager"))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output}


class GPT2Small(nn.Module):
    """GPT2Model with GPT2Config defaults, no KV cache; returns last_hidden_state (the ONNX output name)."""

    def __init__(self) -> None:
        super().__init__()
        t = require_transformers()
        self.model = t.GPT2Model(t.GPT2Config(use_cache=False, attn_implementation="eager"))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=True)
        return {"last_hidden_state": out.last_hidden_state}


def bert_base() -> nn.Module:
    torch.manual_seed(0)
    return BertBase().eval()


def gpt2_small() -> nn.Module:
    torch.manual_seed(0)
    return GPT2Small().eval()


class MLP(nn.Module):
    """The serving benchmark's small model: requests cost little compute, so the server's own cost shows."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp() -> nn.Module:
    """--input x:batch,256 --dim batch=1..32"""
    torch.manual_seed(0)
    return MLP().eval()
