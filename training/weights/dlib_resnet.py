"""PyTorch port of dlib's face-recognition ResNet (`dnn_face_recognition_ex.cpp`'s anet_type)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from training.weights.dlib_dat import DatFormatError, DlibLayer, DlibNet

# dlib's training-set mean, RGB, and its input scale: x = (pixel - mean) / 256.
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DLIB_INPUT_SCALE = 1.0 / 256.0
DLIB_CHIP_SIZE = 150
EMBEDDING_SIZE = 128

# (filters, downsample first?) for every residual block, from the input up.
_BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),)
    + ((64, False),) * 3
    + ((128, True),)
    + ((128, False),) * 2
    + ((256, True),)
    + ((256, False),) * 2
    + ((256, True),)
)


class Affine(nn.Module):
    """Per-channel y = gamma * x + beta: dlib's frozen batch normalisation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the smaller tensor is zero-padded at the end of each axis, then added."""
    if a.shape[1:] == b.shape[1:]:
        return a + b
    target = [max(sa, sb) for sa, sb in zip(a.shape[1:], b.shape[1:], strict=True)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        # F.pad takes (left, right) pairs from the last axis back: pad right, bottom, extra channels.
        return F.pad(t, (0, target[2] - w, 0, target[1] - h, 0, target[0] - c))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """conv3x3 -> affine -> relu -> conv3x3 -> affine, added to the (pooled) input, then relu."""

    def __init__(self, in_channels: int, channels: int, downsample: bool) -> None:
        super().__init__()
        stride, pad = (2, 0) if downsample else (1, 1)
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=pad)
        self.affine1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.affine2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(_add_zero_padded(y, skip))


class DlibResNet(nn.Module):
    """Aligned RGB uint8 chips (N, 150, 150, 3) -> unit 128-d embeddings (L2 over dim 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1))
        self.stem_conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.stem_affine = Affine(32)
        blocks, channels = [], 32
        for filters, downsample in _BLOCKS:
            blocks.append(ResidualBlock(channels, filters, downsample))
            channels = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, EMBEDDING_SIZE, bias=False)

    def descriptor(self, chips: torch.Tensor) -> torch.Tensor:
        """dlib's raw descriptor (not unit length) for uint8 NHWC chips."""
        x = chips.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - self.input_mean) * DLIB_INPUT_SCALE
        x = F.relu(self.stem_affine(self.stem_conv(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        # One unit vector per row: normalising over dim 0 (the batch) is the classic bug.
        return F.normalize(self.descriptor(chips), p=2.0, dim=1)


class _LayerCursor:
    """Walks the parsed layers bottom-up, checking each kind as it is taken."""

    def __init__(self, layers: list[DlibLayer]) -> None:
        self.layers = layers
        self.index = 0

    def take(self, kind: str) -> DlibLayer:
        if self.index >= len(self.layers):
            raise DatFormatError(f"network ends early: expected a {kind} layer")
        layer = self.layers[self.index]
        if layer.kind != kind:
            raise DatFormatError(f"layer {self.index}: expected {kind}, found {layer.kind}")
        self.index += 1
        return layer


def _copy(target: torch.Tensor, value: object, what: str) -> None:
    source = torch.as_tensor(value)
    if tuple(source.shape) != tuple(target.shape):
        raise DatFormatError(f"{what}: shape {tuple(source.shape)} != {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(source)


def _load_conv(conv: nn.Conv2d, layer: DlibLayer, what: str) -> None:
    d = layer.details
    geometry = (d["kernel_rows"], d["kernel_cols"], d["stride_y"], d["stride_x"], d["pad_y"], d["pad_x"])
    expected = (*conv.kernel_size, *conv.stride, *conv.padding)  # type: ignore[misc]
    if geometry != expected:
        raise DatFormatError(f"{what}: geometry {geometry} != {expected}")
    _copy(conv.weight, layer.params["weight"], f"{what} weight")
    assert conv.bias is not None
    _copy(conv.bias, layer.params["bias"], f"{what} bias")


def _load_affine(affine: Affine, layer: DlibLayer, what: str) -> None:
    _copy(affine.gamma, layer.params["gamma"], f"{what} gamma")
    _copy(affine.beta, layer.params["beta"], f"{what} beta")


def load_dlib_weights(model: DlibResNet, net: DlibNet) -> DlibResNet:
    """Copy a parsed dlib network into the port, checking layer order, geometry and shapes."""
    if net.input_size != (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE):
        raise DatFormatError(f"input size {net.input_size}, expected {DLIB_CHIP_SIZE}")
    with torch.no_grad():
        model.input_mean.copy_(torch.tensor(net.input_mean_rgb).view(1, 3, 1, 1))
    cursor = _LayerCursor(net.layers)
    _load_conv(model.stem_conv, cursor.take("con"), "stem conv")
    _load_affine(model.stem_affine, cursor.take("affine"), "stem affine")
    cursor.take("relu")
    pool = cursor.take("max_pool").details
    if (pool["kernel_rows"], pool["stride_y"], pool["pad_y"]) != (3, 2, 0):
        raise DatFormatError(f"stem max pool {pool} is not 3x3 stride 2")
    for i, block in enumerate(model.blocks):
        assert isinstance(block, ResidualBlock)
        what = f"block {i}"
        _load_conv(block.conv1, cursor.take("con"), f"{what} conv1")
        _load_affine(block.affine1, cursor.take("affine"), f"{what} affine1")
        cursor.take("relu")
        _load_conv(block.conv2, cursor.take("con"), f"{what} conv2")
        _load_affine(block.affine2, cursor.take("affine"), f"{what} affine2")
        if block.downsample:
            skip_pool = cursor.take("avg_pool").details
            if (skip_pool["kernel_rows"], skip_pool["stride_y"]) != (2, 2):
                raise DatFormatError(f"{what}: skip pool {skip_pool} is not 2x2 stride 2")
        cursor.take("add_prev")
        cursor.take("relu")
    if cursor.take("avg_pool").details["kernel_rows"] != 0:
        raise DatFormatError("expected global average pooling before the fc layer")
    fc = cursor.take("fc")
    _copy(model.fc.weight, fc.params["weight"].T, "fc weight")
    if cursor.index != len(net.layers):
        raise DatFormatError(f"{len(net.layers) - cursor.index} layers left over")
    return model


class ServedDlibResNet(nn.Module):
    """The ResNet in the form the build exports: the input mean and scale folded into the stem
    convolution's weights and bias. The same embeddings to float rounding (the stem does not pad),
    and no per-pixel subtraction in the graph: ONNX Runtime ran that broadcast over the channels-last
    layout of its int8 kernels, 13% of the int8 model's time, and the int8 model's first input is
    then the pixels themselves, which 8 bits hold exactly."""

    def __init__(self, model: DlibResNet) -> None:
        super().__init__()
        self.stem_conv = copy.deepcopy(model.stem_conv)
        with torch.no_grad():
            weight = model.stem_conv.weight * DLIB_INPUT_SCALE
            self.stem_conv.weight.copy_(weight)
            mean = model.input_mean.view(1, 3, 1, 1)
            self.stem_conv.bias.copy_(model.stem_conv.bias - (weight * mean).sum(dim=(1, 2, 3)))
        self.stem_affine = copy.deepcopy(model.stem_affine)
        self.blocks = copy.deepcopy(model.blocks)
        self.fc = copy.deepcopy(model.fc)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = chips.permute(0, 3, 1, 2).to(torch.float32)
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)
        x = self.fc(self.blocks(x).mean(dim=(2, 3)))
        # One unit vector per row: normalising over dim 0 (the batch) is the classic bug.
        return F.normalize(x, p=2.0, dim=1)
