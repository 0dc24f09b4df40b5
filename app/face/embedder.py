"""The face embedder: aligned uint8 chips in, one unit vector per chip out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.face.errors import ModelMismatch
from app.face.manifest import Artifact, Manifest
from app.face.runtime import open_session


class Embedder:
    """ONNX Runtime session over the manifest's embedder, checked against its contract."""

    def __init__(self, models_dir: Path, manifest: Manifest) -> None:
        self.artifact: Artifact = manifest.artifact("embedder")
        contract = self.artifact.input_contract
        if contract.size is None or contract.dtype != "uint8" or self.artifact.embedding_size is None:
            raise ModelMismatch(f"embedder {self.artifact.id} does not take fixed-size uint8 chips")
        if contract.alignment_points is None:
            raise ModelMismatch(f"embedder {self.artifact.id} has no alignment template in the manifest")
        self.chip_size: tuple[int, int] = contract.size
        self.template: tuple[tuple[float, float], ...] = contract.alignment_points
        self.embedding_size: int = self.artifact.embedding_size
        self.session = open_session(models_dir, self.artifact)
        self._input = self.artifact.inputs[0].name
        self.providers: list[str] = self.session.get_providers()

    @property
    def model_id(self) -> str:
        """The id stored beside every embedding this model makes."""
        return self.artifact.id

    def embed(self, chips: npt.NDArray[np.uint8], *, flip_average: bool) -> npt.NDArray[np.float32]:
        """(N, H, W, 3) uint8 RGB chips -> (N, D) float32 rows of unit length.

        With flip_average, each chip and its mirror image are embedded in one batch, averaged and
        renormalised: a face and its mirror are the same person, and the average is steadier.
        """
        expected = (*self.chip_size, 3)
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != expected:
            raise ValueError(
                f"chips must be uint8 (N, {expected[0]}, {expected[1]}, 3), got {chips.dtype} {chips.shape}"
            )
        if len(chips) == 0:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        batch = np.concatenate([chips, chips[:, :, ::-1]]) if flip_average else chips
        (output,) = self.session.run(None, {self._input: np.ascontiguousarray(batch)})
        vectors: npt.NDArray[np.float32] = np.asarray(output, dtype=np.float32)
        if flip_average:
            summed = vectors[: len(chips)] + vectors[len(chips) :]
            vectors = (summed / np.linalg.norm(summed, axis=1, keepdims=True)).astype(np.float32)
        return vectors
