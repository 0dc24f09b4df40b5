"""Synthetic unit embeddings with identity structure: each subject a centre, each face near it."""

from __future__ import annotations

import numpy as np

DIM = 128


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def identities(count: int, seed: int = 0) -> np.ndarray:
    """One random unit centre per subject."""
    return unit(np.random.default_rng(seed).standard_normal((count, DIM)))


def faces_of(centres: np.ndarray, spread: float = 0.25, seed: int = 1) -> np.ndarray:
    """One face per centre: the centre plus noise, renormalised (cosine to its centre about 0.97)."""
    noise = np.random.default_rng(seed).standard_normal(centres.shape) * spread / np.sqrt(DIM)
    return unit(centres + noise)
