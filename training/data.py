"""Prepared chips in memory, and the P x K batch sampler that triplet mining needs."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.prepare import INDEX_FILE, REPORT_FILE, chips_file


@dataclass(frozen=True)
class ChipAlignment:
    """How chips were cut: the template's name and where the five landmarks sit, in chip pixels."""

    size: int
    template: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ChipSet:
    """The chips of one size, their person labels and source image names (row i of each belongs together)."""

    chips: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64
    sources: list[str]  # "<person>/<file>"
    alignment: ChipAlignment

    @classmethod
    def load(cls, folder: Path, size: int) -> ChipSet:
        """Read what `faceverify train prepare` wrote for chips of `size`."""
        path = folder / chips_file(size)
        if not path.exists():
            made = sorted(p.name for p in folder.glob("chips_*.npy"))
            raise FileNotFoundError(
                f"{path} is missing (this folder has {made or 'no chips'}); run "
                f"`faceverify train prepare --size {size}`"
            )
        chips = np.load(path)
        with (folder / INDEX_FILE).open() as f:
            rows = list(csv.DictReader(f))
        if len(rows) != len(chips):
            raise ValueError(f"{folder}: {len(rows)} index rows but {len(chips)} chips")
        labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
        cut = json.loads((folder / REPORT_FILE).read_text()).get("alignment", {}).get(str(size))
        if cut is None:
            raise ValueError(f"{folder / REPORT_FILE} does not say how the chips were aligned; prepare again")
        points = tuple((float(x), float(y)) for x, y in cut["points"])
        return cls(chips, labels, [r["source"] for r in rows], ChipAlignment(size, cut["template"], points))


class PKSampler:
    """Batches of P people with K images each (fewer if a person has fewer), plus people with a single
    image as extra negatives: they can never be anchors, only the faces others are told apart from."""

    def __init__(
        self, labels: np.ndarray, people: int, per_person: int, extra_negatives: int = 0, seed: int = 0
    ) -> None:
        if people < 2 or per_person < 2:
            raise ValueError("a batch needs at least 2 people with at least 2 images each")
        rows_of: dict[int, list[int]] = {}
        for row, label in enumerate(labels.tolist()):
            rows_of.setdefault(label, []).append(row)
        self.rows_of = {label: np.array(rows) for label, rows in rows_of.items()}
        self.anchors = sorted(label for label, rows in self.rows_of.items() if len(rows) >= 2)
        self.singles = np.array(sorted(rows[0] for rows in self.rows_of.values() if len(rows) == 1))
        if len(self.anchors) < people:
            raise ValueError(
                f"only {len(self.anchors)} people have 2 or more images; {people} per batch asked"
            )
        self.people = people
        self.per_person = per_person
        self.extra_negatives = min(extra_negatives, len(self.singles))
        self.seed = seed

    def __len__(self) -> int:
        """Batches per epoch: every person with 2 or more images once."""
        return len(self.anchors) // self.people

    def epoch(self, number: int) -> list[np.ndarray]:
        """The batches of one epoch, the same for the same seed and epoch number (exact resumes)."""
        rng = np.random.default_rng([self.seed, number])
        order = rng.permutation(self.anchors)
        batches = []
        for start in range(0, len(self) * self.people, self.people):
            rows = [
                rng.choice(self.rows_of[label], min(self.per_person, len(self.rows_of[label])), replace=False)
                for label in order[start : start + self.people]
            ]
            if self.extra_negatives:
                rows.append(rng.choice(self.singles, self.extra_negatives, replace=False))
            batches.append(np.concatenate(rows))
        return batches
