"""Reader for dlib's serialised DNN files (the face-recognition ResNet's `.dat`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Layer-record markers in the run of integers that walks down the network.
_ORDINARY_LAYER = 2
_TAG_OR_SKIP_LAYER = 1
_BOTTOM_LAYER = 3


class DatFormatError(ValueError):
    """The file is not a dlib DNN of the expected shape."""


@dataclass
class DlibLayer:
    """One layer record: its dlib type name, integer/float details and named parameter arrays."""

    kind: str
    details: dict[str, object] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed network: loss and input settings plus the layers from the input up."""

    loss: str
    loss_margin: float
    loss_distance_threshold: float
    input_kind: str
    input_mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layer_markers: list[int]
    layers: list[DlibLayer]

    def kinds(self) -> list[str]:
        """The layer type names, bottom to top."""
        return [layer.kind for layer in self.layers]


class _Stream:
    """Cursor over the file's bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DatFormatError(f"unexpected end of file at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def peek_byte(self, offset: int = 0) -> int:
        if self.pos + offset >= len(self.data):
            raise DatFormatError("unexpected end of file")
        return self.data[self.pos + offset]

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise DatFormatError(f"bad integer control byte {control:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return math.ldexp(mantissa, exponent)

    def string(self) -> str:
        length = self.integer()
        return self._take(length).decode("ascii")

    def boolean(self) -> bool:
        value = self._take(1)
        if value not in (b"0", b"1", b"\x00", b"\x01"):
            raise DatFormatError(f"bad bool byte {value!r} at byte {self.pos - 1}")
        return value in (b"1", b"\x01")

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise DatFormatError(f"unsupported tensor version {version} at byte {self.pos}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_shape(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise DatFormatError(f"unsupported alias tensor version {version} at byte {self.pos}")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return (n, k, nr, nc)


def _split_flat(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into the arrays its alias shapes describe."""
    values = flat.reshape(-1)
    parts, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        parts.append(values[start : start + size].reshape(shape).copy())
        start += size
    if start != values.size:
        raise DatFormatError(f"flat params hold {values.size} values, aliases use {start}")
    return parts


def _read_con(s: _Stream) -> DlibLayer:
    flat = s.tensor()
    names = ("num_filters", "kernel_rows", "kernel_cols", "stride_y", "stride_x", "pad_y", "pad_x")
    details: dict[str, object] = {name: s.integer() for name in names}
    filters_shape = s.alias_shape()
    bias_shape = s.alias_shape()
    details["multipliers"] = [s.real() for _ in range(4)]
    weight, bias = _split_flat(flat, [filters_shape, bias_shape])
    return DlibLayer("con", details, {"weight": weight, "bias": bias.reshape(-1)})


def _read_affine(s: _Stream) -> DlibLayer:
    flat = s.tensor()
    gamma_shape = s.alias_shape()
    beta_shape = s.alias_shape()
    mode = s.integer()
    gamma, beta = _split_flat(flat, [gamma_shape, beta_shape])
    return DlibLayer("affine", {"mode": mode}, {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)})


def _read_pool(kind: str, s: _Stream) -> DlibLayer:
    names = ("kernel_rows", "kernel_cols", "stride_y", "stride_x", "pad_y", "pad_x")
    return DlibLayer(kind, {name: s.integer() for name in names})


def _read_fc(s: _Stream) -> DlibLayer:
    num_outputs = s.integer()
    num_inputs = s.integer()
    flat = s.tensor()
    weight_shape = s.alias_shape()
    bias_shape = s.alias_shape()
    bias_mode = s.integer()
    multipliers = [s.real() for _ in range(4)]
    # Without a bias the second alias is empty; the weights are stored inputs x outputs.
    weight = flat.reshape(-1)[: num_inputs * num_outputs].reshape(num_inputs, num_outputs).copy()
    details: dict[str, object] = {
        "num_outputs": num_outputs,
        "num_inputs": num_inputs,
        "bias_mode": bias_mode,
        "weight_shape": weight_shape,
        "bias_shape": bias_shape,
        "multipliers": multipliers,
    }
    return DlibLayer("fc", details, {"weight": weight})


_DETAIL_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda s: DlibLayer("relu"),
    "add_prev_": lambda s: DlibLayer("add_prev"),
    "max_pool_2": lambda s: _read_pool("max_pool", s),
    "avg_pool_2": lambda s: _read_pool("avg_pool", s),
    "fc_2": _read_fc,
}


def _read_layer(s: _Stream) -> DlibLayer:
    name = s.string()
    reader = _DETAIL_READERS.get(name)
    if reader is None:
        raise DatFormatError(f"unsupported layer type {name!r} at byte {s.pos}")
    layer = reader(s)
    # Training-state flags and three empty tensors (gradients and cached output) follow.
    for _ in range(3):
        s.boolean()
    for _ in range(3):
        s.tensor()
    return layer


def parse_dlib_dnn(data: bytes) -> DlibNet:
    """Parse the bytes of a dlib `loss_metric` network file."""
    s = _Stream(data)
    if s.integer() != 1:
        raise DatFormatError("not a dlib loss-layer file (first integer is not 1)")
    loss = s.string()
    if not loss.startswith("loss_metric"):
        raise DatFormatError(f"unexpected loss layer {loss!r}")
    margin = s.real()
    threshold = s.real()

    # Integers walk down the network; the input layer's string begins after the bottom marker.
    markers: list[int] = []
    while True:
        marker = s.integer()
        markers.append(marker)
        if marker == _BOTTOM_LAYER:
            break
        if marker not in (_ORDINARY_LAYER, _TAG_OR_SKIP_LAYER):
            raise DatFormatError(f"unexpected layer marker {marker} at byte {s.pos}")

    input_kind = s.string()
    mean = (s.real(), s.real(), s.real())
    size = (s.integer(), s.integer())

    layers = [_read_layer(s)]
    s.integer()  # the bottom layer's sample-expansion factor follows its data
    layers += [_read_layer(s) for _ in range(markers.count(_ORDINARY_LAYER))]
    if s.pos != len(data):
        raise DatFormatError(f"{len(data) - s.pos} trailing bytes after the network")
    return DlibNet(loss, margin, threshold, input_kind, mean, size, markers, layers)


def read_dlib_dnn(path: str | Path) -> DlibNet:
    """Read and parse a dlib network file from disk."""
    return parse_dlib_dnn(Path(path).read_bytes())
