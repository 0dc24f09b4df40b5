"""Embedder ONNX files shaped like those users import: made here with torch, so tests need no download."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.export import export_onnx
from training.weights.dlib_resnet import DLIB_CHIP_SIZE, DlibResNet

ARCFACE_SIDE = 112
FACENET_SIDE = 160
FEATURES = 512


class SmallEmbedder(nn.Module):
    """Random weights in the shape of a face embedder: float (N, 3, side, side) in, 512 floats out."""

    def __init__(self, side: int, pooled: bool, unit_length: bool) -> None:
        super().__init__()
        self.pooled, self.unit_length = pooled, unit_length
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.PReLU(16),
            nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.PReLU(32),
            nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64),
        )  # fmt: skip
        out_side = -(-side // 8)  # each stride-2 convolution halves the side, rounding up
        self.fc = nn.Linear(64 if pooled else 64 * out_side * out_side, FEATURES)
        self.features = nn.BatchNorm1d(FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        # Flattening exports as a reshape to the traced batch of 1: such a graph runs one image at a time.
        x = self.features(self.fc(x.mean(dim=(2, 3)) if self.pooled else x.flatten(1)))
        return F.normalize(x, dim=1) if self.unit_length else x


def _export(model: SmallEmbedder, side: int, path: Path, names: tuple[str, str], seed: int) -> Path:
    """Export with a fixed batch of 1, batch norm's running statistics moved off 0 and 1 so that it acts."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)):
            norm.running_mean.copy_(torch.rand(norm.num_features, generator=generator) * 0.2 - 0.1)
            norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
    example = torch.rand(1, 3, side, side, generator=generator) * 2 - 1
    return export_onnx(model.eval(), example, path, names[0], (names[1],), {})


def arcface_shaped_onnx(path: Path, pooled: bool = False, seed: int = 0) -> Path:
    """w600k_r50.onnx's signature (`input.1` 1x3x112x112 float, 512 floats); `pooled` runs any batch."""
    torch.manual_seed(seed)
    return _export(
        SmallEmbedder(ARCFACE_SIDE, pooled, unit_length=False), ARCFACE_SIDE, path, ("input.1", "683"), seed
    )


def facenet_shaped_onnx(path: Path, seed: int = 0) -> Path:
    """facenet-pytorch's InceptionResnetV1 exported at batch 1: 1x3x160x160 float in, 512 unit floats out."""
    torch.manual_seed(seed)
    return _export(
        SmallEmbedder(FACENET_SIDE, True, unit_length=True), FACENET_SIDE, path, ("input", "output"), seed
    )


class PlainDlib(nn.Module):
    """The stock dlib ResNet minus preprocessing and L2: (x - mean) / 256 NCHW in, raw descriptor out."""

    def __init__(self, stock: DlibResNet) -> None:
        super().__init__()
        self.stock = stock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # DlibResNet.descriptor after its permute and (x - mean) / 256.
        net = self.stock
        x = F.max_pool2d(F.relu(net.stem_affine(net.stem_conv(x))), 3, 2)
        return net.fc(net.blocks(x).mean(dim=(2, 3)))


def dlib_plain_onnx(path: Path) -> Path:
    """The stock dlib network exported in a plain convention, as the `dlib` preset describes it."""
    from training.build import build_embedder_module

    example = torch.rand(2, 3, DLIB_CHIP_SIZE, DLIB_CHIP_SIZE) - 0.5
    return export_onnx(
        PlainDlib(build_embedder_module()), example, path, "input", ("descriptor",), {0: "batch"}
    )
