"""Embedders to train: a small CNN from scratch, and the pretrained dlib ResNet port.

Both take aligned uint8 RGB chips in NHWC, the serving contract, and do their own input
normalisation, so training and serving cannot feed them different scales. Both end in L2
normalisation over dim 1 inside forward, so the exported graph carries it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.weights.dlib_resnet import DlibResNet

EMBEDDING_SIZE = 128


class L2Normalize(nn.Module):
    """Each row to unit length over `dim` (the feature axis, 1; the batch axis, 0, is the classic bug)."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=self.dim)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SmallFaceNet(nn.Module):
    """uint8 chips (N, 64, 64, 3) -> unit 128-d embeddings; four conv stages, about 0.7 M weights."""

    chip_size = 64

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(3, w), nn.MaxPool2d(2),  # 32x32
            _conv(w, 2 * w), nn.MaxPool2d(2),  # 16x16
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w), nn.MaxPool2d(2),  # 8x8
            _conv(4 * w, 8 * w), _conv(8 * w, 8 * w),
        )  # fmt: skip
        self.embed = nn.Linear(8 * w, EMBEDDING_SIZE)
        self.normalize = L2Normalize(dim=1)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        # Pixels 0..255 to -1..1 here, so the exported model takes exactly what the service sends.
        x = chips.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0
        x = self.features(x).mean(dim=(2, 3))
        return self.normalize(self.embed(x))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class BackboneInfo:
    """What the data and the export need to know about a backbone."""

    name: str
    chip_size: int
    pretrained: bool


BACKBONES = {
    "small": BackboneInfo("small", SmallFaceNet.chip_size, pretrained=False),
    "dlib": BackboneInfo("dlib", 150, pretrained=True),
}


def build_backbone(name: str) -> nn.Module:
    """A fresh small CNN, or the dlib ResNet with face_recognition_models' weights loaded."""
    if name == "small":
        return SmallFaceNet()
    if name == "dlib":
        from training.build import build_embedder_module

        module: DlibResNet = build_embedder_module()
        return module
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
