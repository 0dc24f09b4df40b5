"""MTCNN's P-, R- and O-Net as torch modules, loaded from facenet-pytorch's bundled state dicts."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
from torch import nn

FACENET_PACKAGE = "facenet_pytorch"

# The nets were trained on (pixel - 127.5) / 128; the modules take raw 0..255 pixels and do it here.
_PIXEL_CENTER = 127.5
_PIXEL_SCALE = 0.0078125


def _normalise_nhwc(images: torch.Tensor) -> torch.Tensor:
    """float32 NHWC pixels in 0..255 -> the nets' NCHW input scale."""
    return (images.permute(0, 3, 1, 2) - _PIXEL_CENTER) * _PIXEL_SCALE


class PNet(nn.Module):
    """Proposal net: image (N, H, W, 3) -> box regression (N, 4, h, w), face probability (N, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(_normalise_nhwc(images))))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        probability = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return self.conv4_2(x), probability


class RNet(nn.Module):
    """Refinement net: 24x24 crops (N, 24, 24, 3) -> box regression (N, 4), face probability (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(_normalise_nhwc(crops))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights came from a Caffe model that saw images transposed: flatten as (w, h, c).
        x = self.prelu4(self.dense4(torch.flatten(x.permute(0, 3, 2, 1), 1)))
        probability = torch.softmax(self.dense5_1(x), dim=1)[:, 1]
        return self.dense5_2(x), probability


class ONet(nn.Module):
    """Output net: crops (N, 48, 48, 3) -> box regression (N, 4), landmarks (N, 10), probability (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(_normalise_nhwc(crops))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(torch.flatten(x.permute(0, 3, 2, 1), 1)))
        probability = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return self.dense6_2(x), self.dense6_3(x), probability


MTCNN_NETS: dict[str, type[nn.Module]] = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def on_raw_pixels(conv: nn.Conv2d) -> nn.Conv2d:
    """A copy of the first convolution that takes raw 0..255 pixels: the nets' input scaling folded
    into its weights and bias. Exact to float rounding, because the nets' convolutions do not pad."""
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        weight = conv.weight * _PIXEL_SCALE
        folded.weight.copy_(weight)
        if folded.bias is not None:
            folded.bias.copy_(conv.bias - _PIXEL_CENTER * weight.sum(dim=(1, 2, 3)))
    return folded


class DepthwisePReLU(nn.Module):
    """A convolution's PReLU as y + (1 - a) * relu(-y), with any slopes a: two 1x1 depthwise
    convolutions, the first with its ReLU fused, the second with the sum. Exact to float rounding:
    for y < 0 it is y - (1 - a) * y = a * y, for y >= 0 it is y.

    ONNX Runtime's CPU kernels have no PReLU in the blocked layout they convolve in: a PReLU there
    costs a layout change both ways and a slow broadcast. Depthwise convolutions stay in that layout.
    """

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        slopes = prelu.weight.detach()
        channels = slopes.numel()
        self.negate = nn.Conv2d(channels, channels, 1, groups=channels, bias=False)
        self.bend = nn.Conv2d(channels, channels, 1, groups=channels, bias=False)
        with torch.no_grad():
            self.negate.weight.fill_(-1.0)
            self.bend.weight.copy_((1 - slopes)[:, None, None, None])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.bend(torch.relu(self.negate(y))) + y


def unpermuted_linear(linear: nn.Linear, channels: int, height: int, width: int) -> nn.Linear:
    """A copy of a dense layer fed flatten(x.permute(0, 3, 2, 1)) that takes flatten(x) instead: its
    columns reordered, so that no transpose runs before it."""
    reordered = copy.deepcopy(linear)
    caffe_position = torch.arange(channels * height * width).reshape(width, height, channels)
    with torch.no_grad():
        reordered.weight.copy_(linear.weight[:, caffe_position.permute(2, 1, 0).reshape(-1)])
    return reordered


def _served_convs(net: nn.Module) -> nn.ModuleList:
    """convN + preluN of a net, each as (convolution, DepthwisePReLU), the first on raw pixels."""
    stages = []
    index = 1
    while isinstance(conv := getattr(net, f"conv{index}", None), nn.Conv2d):
        first = on_raw_pixels(conv) if index == 1 else copy.deepcopy(conv)
        stages.append(nn.Sequential(first, DepthwisePReLU(getattr(net, f"prelu{index}"))))
        index += 1
    return nn.ModuleList(stages)


class ServedPNet(nn.Module):
    """P-Net in its serving form: the same inputs and outputs as PNet, equal to float rounding."""

    def __init__(self, net: PNet) -> None:
        super().__init__()
        self.convs = _served_convs(net)
        self.pool1 = copy.deepcopy(net.pool1)
        self.conv4_1, self.conv4_2 = copy.deepcopy(net.conv4_1), copy.deepcopy(net.conv4_2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.convs[0](images.permute(0, 3, 1, 2)))
        x = self.convs[2](self.convs[1](x))
        # Softmax as trained, not a sigmoid of the logits' difference: their roundings differ where the
        # probability saturates, and ties there decide which of two boxes survives suppression.
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class ServedRNet(nn.Module):
    """R-Net in its serving form: the same inputs and outputs as RNet, equal to float rounding."""

    def __init__(self, net: RNet) -> None:
        super().__init__()
        self.convs = _served_convs(net)
        self.pool1, self.pool2 = copy.deepcopy(net.pool1), copy.deepcopy(net.pool2)
        self.dense4 = unpermuted_linear(net.dense4, 64, 3, 3)
        self.prelu4 = copy.deepcopy(net.prelu4)
        self.dense5_1, self.dense5_2 = copy.deepcopy(net.dense5_1), copy.deepcopy(net.dense5_2)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.convs[0](crops.permute(0, 3, 1, 2)))
        x = self.convs[2](self.pool2(self.convs[1](x)))
        x = self.prelu4(self.dense4(torch.flatten(x, 1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ServedONet(nn.Module):
    """O-Net in its serving form: the same inputs and outputs as ONet, equal to float rounding."""

    def __init__(self, net: ONet) -> None:
        super().__init__()
        self.convs = _served_convs(net)
        self.pools = nn.ModuleList(copy.deepcopy(p) for p in (net.pool1, net.pool2, net.pool3))
        self.dense5 = unpermuted_linear(net.dense5, 128, 3, 3)
        self.prelu5 = copy.deepcopy(net.prelu5)
        self.heads = nn.ModuleList(copy.deepcopy(h) for h in (net.dense6_1, net.dense6_2, net.dense6_3))

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = crops.permute(0, 3, 1, 2)
        for conv, pool in zip(self.convs[:3], self.pools, strict=True):
            x = pool(conv(x))
        x = self.prelu5(self.dense5(torch.flatten(self.convs[3](x), 1)))
        logits, regression, landmarks = (head(x) for head in self.heads)
        return regression, landmarks, torch.softmax(logits, dim=1)[:, 1]


_SERVED: dict[type[nn.Module], type[nn.Module]] = {PNet: ServedPNet, RNet: ServedRNet, ONet: ServedONet}


def serving_form(net: nn.Module) -> nn.Module:
    """An MTCNN net in the form the build exports: the same outputs (to float rounding), faster on
    ONNX Runtime's CPU kernels (input scaling folded into the first convolution, each convolution's
    PReLU as depthwise convolutions, which keep the blocked layout, no transpose before the dense
    layers)."""
    return _SERVED[type(net)](net).eval()


def facenet_weights_dir() -> Path:
    """The installed facenet-pytorch's `data/` folder, found without importing the package."""
    spec = importlib.util.find_spec(FACENET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{FACENET_PACKAGE} is not installed: pip install --no-deps facenet-pytorch==2.6.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_mtcnn_net(name: str, weights_dir: Path | None = None) -> nn.Module:
    """Build one of pnet/rnet/onet and load its bundled state dict strictly."""
    path = (weights_dir or facenet_weights_dir()) / f"{name}.pt"
    net = MTCNN_NETS[name]()
    state = torch.load(path, map_location="cpu", weights_only=True)
    # facenet-pytorch's nets hold softmax layers with no parameters; every tensor must match.
    net.load_state_dict(state, strict=True)
    return net.eval()
