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


class SplitPReLUConv(nn.Module):
    """A convolution and the PReLU after it as a * conv(x) + relu((1 - a) * conv(x)), two convolutions
    whose weights carry the slopes; exact wherever every slope a is at most 1.

    ONNX Runtime's CPU kernels have no PReLU in the blocked layout they convolve in: each PReLU costs a
    layout change both ways and a slow broadcast. The two convolutions fuse the ReLU and the sum
    instead (O-Net 1.4x faster on 2 cores).
    """

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU) -> None:
        super().__init__()
        slopes = prelu.weight.detach()
        self.linear = self._scaled(conv, slopes)
        self.rectified = self._scaled(conv, 1 - slopes)

    @staticmethod
    def _scaled(conv: nn.Conv2d, factors: torch.Tensor) -> nn.Conv2d:
        scaled = copy.deepcopy(conv)
        with torch.no_grad():
            scaled.weight.mul_(factors[:, None, None, None])
            if scaled.bias is not None:
                scaled.bias.mul_(factors)
        return scaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + torch.relu(self.rectified(x))


def serving_form(net: nn.Module) -> nn.Module:
    """A copy of an MTCNN net with each convN + preluN pair whose slopes are all at most 1 made a
    SplitPReLUConv: the same outputs (to float rounding), faster on ONNX Runtime."""
    served = copy.deepcopy(net)
    index = 1
    while isinstance(conv := getattr(served, f"conv{index}", None), nn.Conv2d):
        prelu = getattr(served, f"prelu{index}")
        if bool((prelu.weight <= 1).all()):
            setattr(served, f"conv{index}", SplitPReLUConv(conv, prelu))
            setattr(served, f"prelu{index}", nn.Identity())
        index += 1
    return served.eval()


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
