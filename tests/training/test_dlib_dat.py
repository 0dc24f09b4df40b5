"""The dlib .dat reader: primitives, the real file's structure, and refusal of damaged files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the `train` extra is needed for the training package")

from training.build import DLIB_EMBEDDER_FILE, DLIB_MODELS_PACKAGE, package_dir
from training.weights.dlib_dat import DatFormatError, _Stream, parse_dlib_dnn, read_dlib_dnn
from training.weights.dlib_resnet import DlibResNet, load_dlib_weights


@pytest.fixture(scope="module")
def dat_bytes() -> bytes:
    return (package_dir(DLIB_MODELS_PACKAGE) / "models" / DLIB_EMBEDDER_FILE).read_bytes()


def test_integers_floats_and_strings_decode() -> None:
    # 300 = 0x012C in two magnitude bytes; 0x81 0x05 is -5; 3 * 2**-1 = 1.5; then "con_4".
    data = bytes([0x02, 0x2C, 0x01, 0x81, 0x05, 0x01, 0x03, 0x81, 0x01, 0x01, 0x05]) + b"con_4"
    stream = _Stream(data)
    assert stream.integer() == 300
    assert stream.integer() == -5
    assert stream.real() == 1.5
    assert stream.string() == "con_4"


def test_the_real_file_has_dlibs_architecture(dat_bytes: bytes) -> None:
    net = parse_dlib_dnn(dat_bytes)
    assert net.loss == "loss_metric_2"
    assert net.loss_distance_threshold == pytest.approx(0.6)
    assert net.input_size == (150, 150)
    assert net.input_mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    counts = Counter(net.kinds())
    assert len(net.layers) == 108
    assert counts == {
        "con": 29,
        "affine": 29,
        "relu": 29,
        "add_prev": 14,
        "avg_pool": 5,
        "max_pool": 1,
        "fc": 1,
    }
    assert net.layers[-1].params["weight"].shape == (256, 128)
    assert all(np.isfinite(p).all() for layer in net.layers for p in layer.params.values())


def test_a_truncated_file_is_refused(dat_bytes: bytes) -> None:
    with pytest.raises(DatFormatError, match="unexpected end of file"):
        parse_dlib_dnn(dat_bytes[: len(dat_bytes) // 2])


def test_trailing_bytes_are_refused(dat_bytes: bytes) -> None:
    with pytest.raises(DatFormatError, match="trailing bytes"):
        parse_dlib_dnn(dat_bytes + b"\x01\x00")


def test_another_network_is_refused(dat_bytes: bytes, tmp_path: Path) -> None:
    net = read_dlib_dnn(_write(tmp_path, dat_bytes))
    del net.layers[10]  # a block without its add layer
    with pytest.raises(DatFormatError, match="expected"):
        load_dlib_weights(DlibResNet(), net)


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatFormatError):
        read_dlib_dnn(_write(tmp_path, b"\x01\x01\x01\x05hello"))


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "net.dat"
    path.write_bytes(data)
    return path
