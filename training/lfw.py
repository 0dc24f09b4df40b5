"""LFW's pairs files: `name n1 n2` (same person) and `name1 n1 name2 n2` (different people)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FOLDS = 10


def default_lfw_dir() -> Path:
    """Where LFW's development view is looked for: FV_LFW_DIR, else ../shared/data/lfw-dev."""
    return Path(os.environ.get("FV_LFW_DIR", "../shared/data/lfw-dev"))


def default_devtest() -> Path:
    """LFW's DevTest pairs where the development view is found."""
    return default_lfw_dir() / "pairsDevTest.txt"


class PairsFormatError(ValueError):
    """The pairs file does not follow LFW's format."""


@dataclass(frozen=True)
class Pair:
    """Two images, whether they show the same person, and the fold the pair belongs to."""

    left: Path
    right: Path
    same: bool
    fold: int


def image_path(images: Path, name: str, number: str) -> Path:
    """LFW's file naming: images/<Name>/<Name>_<NNNN>.jpg."""
    return images / name / f"{name}_{int(number):04d}.jpg"


def _parse_line(images: Path, fields: list[str], line_no: int) -> tuple[Path, Path, bool]:
    if len(fields) == 3:
        return image_path(images, fields[0], fields[1]), image_path(images, fields[0], fields[2]), True
    if len(fields) == 4:
        return image_path(images, fields[0], fields[1]), image_path(images, fields[2], fields[3]), False
    raise PairsFormatError(f"line {line_no}: expected 3 or 4 fields, found {len(fields)}")


def read_pairs(pairs_file: Path, images: Path) -> list[Pair]:
    """Every pair with its fold. A `folds n` header gives folds of n same + n different pairs; a single
    count n (the development views), or one fold (`1 n`), gives n same then n different pairs, cut into
    ten folds so that the 10-fold protocol still has nine folds to fit on."""
    lines = [line.split() for line in pairs_file.read_text().splitlines() if line.strip()]
    if not lines:
        raise PairsFormatError(f"{pairs_file} is empty")
    header = [int(x) for x in lines[0]]
    body = lines[1:]
    if len(header) == 2:
        folds, per_fold = header
        expected = folds * per_fold * 2
    elif len(header) == 1:
        folds, per_fold = 1, header[0]
        expected = per_fold * 2
    else:
        raise PairsFormatError(f"{pairs_file}: header must be 'n' or 'folds n'")
    if len(body) != expected:
        raise PairsFormatError(f"{pairs_file}: header promises {expected} pairs, found {len(body)}")
    pairs = []
    for index, fields in enumerate(body):
        left, right, same = _parse_line(images, fields, index + 2)
        if folds > 1:
            fold = index // (2 * per_fold)
        else:
            # Same pairs come first, then different ones: spread each run evenly over the folds.
            position = index % per_fold
            fold = position * DEFAULT_FOLDS // per_fold
        pairs.append(Pair(left, right, same, fold))
    return pairs


def pair_people(pairs_file: Path) -> list[str]:
    """The people named in a pairs file, in order of first appearance."""
    seen: dict[str, None] = {}
    for line in pairs_file.read_text().splitlines()[1:]:
        fields = line.split()
        names = [fields[0]] if len(fields) == 3 else [fields[0], fields[2]] if len(fields) == 4 else []
        for name in names:
            seen.setdefault(name, None)
    return list(seen)
