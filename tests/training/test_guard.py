"""The collapse guard and the backbones' normalisation: the classic failures are caught, loudly."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the training tests need the `train` extra (torch)")

from training.backbones import L2Normalize, SmallFaceNet  # noqa: E402
from training.guard import EmbeddingCollapse, check, spread  # noqa: E402
from training.losses import triplet_loss  # noqa: E402
from training.mining import mine  # noqa: E402


def _chips(count: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 64, 64, 3), generator=g, dtype=torch.uint8)


def test_healthy_unit_rows_pass() -> None:
    rows = torch.nn.functional.normalize(torch.randn(32, 128), dim=1)
    stats = spread(rows)
    assert stats.mean_distance == pytest.approx(2.0, abs=0.2) and stats.max_norm_error < 1e-5
    check(stats, "batch 1")


def test_a_constant_embedding_is_called_a_collapse_with_its_causes() -> None:
    rows = torch.nn.functional.normalize(torch.ones(16, 128) + 1e-4 * torch.randn(16, 128), dim=1)
    with pytest.raises(EmbeddingCollapse, match="collapsed") as caught:
        check(spread(rows), "epoch 3")
    message = str(caught.value)
    assert "dim 1" in message and "learning rate" in message and "margin" in message


def test_small_net_gives_unit_rows_that_do_not_depend_on_the_batch() -> None:
    net = SmallFaceNet().eval()
    chips = _chips(6)
    with torch.no_grad():
        together = net(chips)
        alone = torch.cat([net(chips[i : i + 1]) for i in range(6)])
    assert torch.allclose(together.norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(together, alone, atol=1e-5)
    assert spread(together).max_norm_error < 1e-5


def test_the_batch_axis_normalisation_bug_is_stopped_by_the_guard() -> None:
    """The failure this project starts from: l2_normalize(x, 0) trains into nonsense; here it is refused
    at the first batch, before any training step."""
    net = SmallFaceNet().eval()
    net.normalize = L2Normalize(dim=0)
    with torch.no_grad():
        rows = net(_chips(16))
    with pytest.raises(EmbeddingCollapse, match="not unit vectors"):
        check(spread(rows), "batch 1")


def test_training_steps_of_the_small_net_reduce_the_triplet_loss() -> None:
    torch.manual_seed(0)
    net = SmallFaceNet(width=8)
    people = torch.randint(0, 256, (4, 1, 64, 64, 3), dtype=torch.uint8)
    noise = torch.randint(-20, 21, (4, 4, 64, 64, 3))
    chips = (people.to(torch.int64) + noise).clamp(0, 255).to(torch.uint8).reshape(16, 64, 64, 3)
    labels = torch.arange(4).repeat_interleave(4)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        rows = net(chips)
        result = triplet_loss(rows, mine("batch-all", rows, labels, 0.2), 0.2)
        optimiser.zero_grad()
        result.loss.backward()
        optimiser.step()
        losses.append(float(result.loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
