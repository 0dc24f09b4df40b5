"""Triplet mining and losses against brute-force oracles on random embeddings."""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch", reason="the training tests need the `train` extra (torch)")

from training.losses import contrastive_loss, triplet_loss  # noqa: E402
from training.mining import batch_all, batch_hard, mine, semi_hard, squared_distances  # noqa: E402

ALPHA = 0.2


def _batch(people: int, per_person: int, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = torch.nn.functional.normalize(torch.randn(people * per_person, dim, generator=g), dim=1)
    labels = torch.arange(people).repeat_interleave(per_person)
    return rows, labels


def _d(x: torch.Tensor, i: int, j: int) -> float:
    return float(((x[i] - x[j]) ** 2).sum())


def _oracle_choices(x: torch.Tensor, labels: torch.Tensor, alpha: float) -> dict[tuple[int, int], set[int]]:
    """For each anchor-positive pair, the negatives semi-hard mining may pick (empty: no triplet)."""
    n = len(labels)
    out = {}
    for a, p in itertools.permutations(range(n), 2):
        if labels[a] != labels[p]:
            continue
        dap = _d(x, a, p)
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        semi = {k for k in negatives if dap < _d(x, a, k) < dap + alpha}
        if semi:
            out[(a, p)] = semi
            continue
        inside = [k for k in negatives if _d(x, a, k) < dap + alpha]
        if inside:
            nearest = min(_d(x, a, k) for k in inside)
            out[(a, p)] = {k for k in inside if _d(x, a, k) == nearest}
        else:
            out[(a, p)] = set()
    return out


def test_squared_distances_match_the_definition() -> None:
    x, _ = _batch(4, 3, seed=1)
    d = squared_distances(x)
    for i, j in itertools.product(range(len(x)), repeat=2):
        assert float(d[i, j]) == pytest.approx(_d(x, i, j), abs=1e-5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.8])
def test_semi_hard_picks_only_what_the_rule_allows_and_covers_every_pair_that_has_one(
    seed: int, alpha: float
) -> None:
    x, labels = _batch(5, 4, seed=seed)
    allowed = _oracle_choices(x, labels, alpha)
    triplets = semi_hard(squared_distances(x), labels, alpha, torch.Generator().manual_seed(seed))
    picked = {
        (int(a), int(p)): int(n)
        for a, p, n in zip(triplets.anchors, triplets.positives, triplets.negatives, strict=True)
    }
    assert len(picked) == len(triplets)  # one triplet per anchor-positive pair at most
    assert set(picked) == {pair for pair, choices in allowed.items() if choices}
    for pair, negative in picked.items():
        assert negative in allowed[pair]


def test_semi_hard_draws_among_the_allowed_negatives_at_random() -> None:
    x, labels = _batch(6, 3, seed=3)
    distances = squared_distances(x)
    allowed = _oracle_choices(x, labels, 2.0)
    pair = next(pair for pair, choices in allowed.items() if len(choices) > 2)
    seen = set()
    for seed in range(40):
        t = semi_hard(distances, labels, 2.0, torch.Generator().manual_seed(seed))
        for a, p, n in zip(t.anchors.tolist(), t.positives.tolist(), t.negatives.tolist(), strict=True):
            if (a, p) == pair:
                seen.add(n)
    assert len(seen) > 1 and seen <= allowed[pair]


@pytest.mark.parametrize("seed", range(5))
def test_batch_hard_equals_the_oracle(seed: int) -> None:
    x, labels = _batch(4, 4, seed=seed)
    t = batch_hard(squared_distances(x), labels)
    assert t.anchors.tolist() == list(range(len(labels)))
    for a, p, n in zip(t.anchors.tolist(), t.positives.tolist(), t.negatives.tolist(), strict=True):
        positives = [k for k in range(len(labels)) if k != a and labels[k] == labels[a]]
        negatives = [k for k in range(len(labels)) if labels[k] != labels[a]]
        assert _d(x, a, p) == pytest.approx(max(_d(x, a, k) for k in positives), abs=1e-6)
        assert _d(x, a, n) == pytest.approx(min(_d(x, a, k) for k in negatives), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_batch_all_equals_the_oracle(seed: int) -> None:
    x, labels = _batch(4, 3, seed=seed)
    t = batch_all(squared_distances(x), labels, ALPHA)
    got = set(zip(t.anchors.tolist(), t.positives.tolist(), t.negatives.tolist(), strict=True))
    n = len(labels)
    want = {
        (a, p, k)
        for a, p, k in itertools.product(range(n), repeat=3)
        if a != p and labels[a] == labels[p] and labels[k] != labels[a]
        and _d(x, a, p) - _d(x, a, k) + ALPHA > 1e-7
    }  # fmt: skip
    assert got == want


@pytest.mark.parametrize("strategy", ["semi-hard", "batch-hard", "batch-all"])
def test_triplet_loss_averages_over_the_active_triplets_only(strategy: str) -> None:
    x, labels = _batch(5, 4, seed=7)
    x.requires_grad_(True)
    t = mine(strategy, x, labels, ALPHA, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    result = triplet_loss(x, t, ALPHA)
    terms = [
        max(0.0, _d(x.detach(), a, p) - _d(x.detach(), a, n) + ALPHA)
        for a, p, n in zip(t.anchors.tolist(), t.positives.tolist(), t.negatives.tolist(), strict=True)
    ]
    active = [v for v in terms if v > 0]
    assert result.total == len(terms) and result.active == len(active) and active
    assert float(result.loss.detach()) == pytest.approx(sum(active) / len(active), rel=1e-5)
    result.loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_no_active_triplet_gives_zero_with_a_gradient_path() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    result = triplet_loss(x, mine("batch-hard", x, labels, ALPHA), ALPHA)
    assert float(result.loss.detach()) == 0.0 and result.active == 0 and result.total == 4
    result.loss.backward()


def test_contrastive_loss_equals_the_oracle() -> None:
    x, labels = _batch(4, 3, seed=5)
    margin = 1.5
    result = contrastive_loss(x, labels, margin)
    n = len(labels)
    terms = [
        _d(x, i, j) if labels[i] == labels[j] else max(0.0, margin - _d(x, i, j))
        for i, j in itertools.combinations(range(n), 2)
    ]
    active = [v for v in terms if v > 0]
    assert result.total == len(terms) and result.active == len(active)
    assert float(result.loss.detach()) == pytest.approx(sum(active) / len(active), rel=1e-5)


def test_an_unknown_strategy_is_refused() -> None:
    x, labels = _batch(2, 2)
    with pytest.raises(ValueError, match="unknown mining strategy"):
        mine("hardest", x, labels, ALPHA)  # type: ignore[arg-type]
