"""The exported MTCNN nets equal the torch modules under ONNX Runtime, at several sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the `train` extra (torch) is needed to compare with torch")

from app.face.manifest import Manifest  # noqa: E402
from app.face.runtime import open_session  # noqa: E402
from training.weights.mtcnn import load_mtcnn_net  # noqa: E402

TOLERANCE = 1e-4


def _pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.float32)


def _compare(models_dir: Path, manifest: Manifest, stage: str, images: np.ndarray) -> None:
    session = open_session(models_dir, manifest.artifact(stage))
    ours = session.run(None, {session.get_inputs()[0].name: images})
    with torch.no_grad():
        reference = load_mtcnn_net(stage)(torch.from_numpy(images))
    for got, want in zip(ours, reference, strict=True):
        assert got.shape == tuple(want.shape)
        if got.size:
            assert np.abs(got - want.numpy()).max() <= TOLERANCE


@pytest.mark.parametrize("shape", [(1, 12, 12, 3), (1, 47, 63, 3), (2, 120, 90, 3), (1, 250, 250, 3)])
def test_pnet_matches_torch(models_dir: Path, manifest: Manifest, shape: tuple[int, ...]) -> None:
    _compare(models_dir, manifest, "pnet", _pixels(shape, sum(shape)))


@pytest.mark.parametrize("stage,side", [("rnet", 24), ("onet", 48)])
@pytest.mark.parametrize("batch", [1, 9])
def test_refinement_nets_match_torch(
    models_dir: Path, manifest: Manifest, stage: str, side: int, batch: int
) -> None:
    _compare(models_dir, manifest, stage, _pixels((batch, side, side, 3), batch))


@pytest.mark.parametrize("stage,side,outputs", [("rnet", 24, 2), ("onet", 48, 3)])
def test_refinement_nets_take_an_empty_batch(
    models_dir: Path, manifest: Manifest, stage: str, side: int, outputs: int
) -> None:
    session = open_session(models_dir, manifest.artifact(stage))
    results = session.run(None, {"crops": np.zeros((0, side, side, 3), np.float32)})
    assert len(results) == outputs
    assert all(r.shape[0] == 0 for r in results)


def test_pnet_finds_a_face_where_there_is_one(
    models_dir: Path, manifest: Manifest, photos: list[Path]
) -> None:
    from PIL import Image

    # Tom Hanks' 112x112 photo is a tight face crop: scaled to 12x12 it is one P-Net window.
    tom = next(p for p in photos if p.name.startswith("Tom_Hanks"))
    with Image.open(tom) as image:
        window = np.asarray(image.convert("RGB").resize((12, 12), Image.BILINEAR), np.float32)[None]
    noise = _pixels((1, 12, 12, 3), 3)
    session = open_session(models_dir, manifest.artifact("pnet"))
    face_p = session.run(None, {"images": window})[1].item()
    noise_p = session.run(None, {"images": noise})[1].item()
    assert face_p > 0.6 > noise_p


@pytest.mark.parametrize("stage", ["pnet", "rnet", "onet"])
def test_the_serving_form_gives_each_convolution_a_prelu_that_stays_in_the_blocked_layout(stage: str) -> None:
    from training.weights.mtcnn import DepthwisePReLU, serving_form

    net = load_mtcnn_net(stage)
    served = serving_form(net)
    assert all(isinstance(conv[1], DepthwisePReLU) for conv in served.convs)
    side = {"pnet": 31, "rnet": 24, "onet": 48}[stage]
    images = torch.from_numpy(_pixels((3, side, side, 3), 7))
    with torch.no_grad():
        for got, want in zip(served(images), net(images), strict=True):
            assert float((got - want).abs().max()) <= 1e-5


def test_the_depthwise_form_equals_prelu_for_any_slope() -> None:
    from training.weights.mtcnn import DepthwisePReLU

    prelu = torch.nn.PReLU(4)
    with torch.no_grad():  # a concave slope (above 1), a negative one, zero and an ordinary one
        prelu.weight.copy_(torch.tensor([1.3, -0.6, 0.0, 0.25]))
    values = torch.linspace(-5, 5, 4 * 9 * 9).reshape(1, 4, 9, 9)
    with torch.no_grad():
        assert float((DepthwisePReLU(prelu)(values) - prelu(values)).abs().max()) <= 1e-6


@pytest.mark.parametrize("stage,prelus", [("pnet", 0), ("rnet", 1), ("onet", 1)])
def test_the_built_nets_keep_prelu_only_on_dense_layers_and_transpose_only_their_input(
    models_dir: Path, manifest: Manifest, stage: str, prelus: int
) -> None:
    import onnx

    graph = onnx.load(str(models_dir / manifest.artifact(stage).file)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("PRelu") == prelus
    assert ops.count("Transpose") == 1  # NHWC pixels to NCHW; the dense layers take the flat NCHW order
    assert "Sub" not in ops  # the pixel scaling lives in the first convolution's weights
    assert "Clip" not in ops and "Mul" not in ops  # no PReLU arithmetic outside the convolutions
