"""Cohort score normalisation (adaptive S-norm) against faces of people not expected in galleries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.decision.errors import CohortMismatch
from app.face.manifest import Artifact, sha256_file

FloatArray = npt.NDArray[np.float32]
_CHUNK = 4096  # rows per matrix product: bounds the (rows, cohort) similarity block in memory
_MIN_SD = 1e-4  # a face whose cohort scores are all alike must not divide by zero


def cohort_identity(sha256: str, top_k: int, cosine_weight: float) -> str:
    """What a normalised score depends on, as one string."""
    return f"{sha256}:top{top_k}:cos{cosine_weight:g}"


def top_k_stats(similarities: FloatArray, k: int) -> tuple[FloatArray, FloatArray]:
    """Mean and standard deviation of each row's k highest values: (N, C) -> (N,), (N,)."""
    k = min(k, similarities.shape[1])
    top = np.partition(similarities, similarities.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1).astype(np.float32), np.maximum(top.std(axis=1), _MIN_SD).astype(np.float32)


def snorm(
    similarities: FloatArray,
    probe_mean: FloatArray,
    probe_sd: FloatArray,
    face_mean: FloatArray,
    face_sd: FloatArray,
    cosine_weight: float = 0.0,
) -> FloatArray:
    """Symmetric normalisation: the mean of the score's z-values against both sides' cohort scores,
    plus `cosine_weight` times the similarity itself.

    Shapes broadcast: (N,) pairs with (N,) statistics, or (P, 1) probes against (1, G) faces.
    """
    probe_side = (similarities - probe_mean) / probe_sd
    face_side = (similarities - face_mean) / face_sd
    return ((probe_side + face_side) / 2.0 + cosine_weight * similarities).astype(np.float32)


class Cohort:
    """The cohort's unit vectors, how many of their best matches describe a face, and how much of the
    raw similarity a normalised score keeps."""

    def __init__(self, vectors: FloatArray, top_k: int, sha256: str, cosine_weight: float = 0.0) -> None:
        if top_k < 2:
            raise ValueError(f"a cohort's top k must be at least 2 (a standard deviation), not {top_k}")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.top_k = top_k
        self.sha256 = sha256
        self.cosine_weight = cosine_weight

    @property
    def identity(self) -> str:
        """The file, the top k and the cosine weight: normalised scores depend on all three."""
        return cohort_identity(self.sha256, self.top_k, self.cosine_weight)

    def normalise(
        self,
        similarities: FloatArray,
        probe_mean: FloatArray,
        probe_sd: FloatArray,
        face_mean: FloatArray,
        face_sd: FloatArray,
    ) -> FloatArray:
        """S-norm with this cohort's cosine weight (shapes as for snorm)."""
        return snorm(similarities, probe_mean, probe_sd, face_mean, face_sd, self.cosine_weight)

    @classmethod
    def load(cls, models_dir: Path, artifact: Artifact) -> Cohort | None:
        """The embedder's cohort from its manifest entry (None without one); CohortMismatch if it is
        another model's or its file does not match."""
        entry = artifact.cohort
        if entry is None:
            return None
        if entry.model_id != artifact.id:
            raise CohortMismatch(
                f"the cohort {entry.file} was embedded by {entry.model_id}, not by the served {artifact.id}; "
                "build one for this model with `faceverify cohort build`"
            )
        path = models_dir / entry.file
        if not path.is_file() or sha256_file(path) != entry.sha256:
            raise CohortMismatch(f"the cohort file {path} is missing or does not match its manifest entry")
        vectors = np.load(path, allow_pickle=False).astype(np.float32)
        if vectors.ndim != 2 or vectors.shape != (entry.faces, artifact.embedding_size):
            raise CohortMismatch(
                f"the cohort file {path} holds {vectors.shape}, "
                f"not ({entry.faces}, {artifact.embedding_size})"
            )
        return cls(vectors, entry.top_k, entry.sha256, entry.cosine_weight)

    def stats(self, embeddings: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Each face's cohort mean and standard deviation (one matrix product per chunk of faces)."""
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        means, sds = [], []
        for start in range(0, len(embeddings), _CHUNK):
            # (C, D) @ (D, n), not (n, D) @ (D, C): for one probe the latter ran ten times slower here.
            sims = (self.vectors @ embeddings[start : start + _CHUNK].T).T
            mean, sd = top_k_stats(np.ascontiguousarray(sims), self.top_k)
            means.append(mean)
            sds.append(sd)
        if not means:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(means), np.concatenate(sds)
