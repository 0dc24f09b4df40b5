"""The face embedder: aligned uint8 chips in, one unit vector per chip out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.face.align import BoxCut, ChipCut, FivePointCut
from app.face.errors import ModelMismatch
from app.face.manifest import Artifact
from app.face.runtime import open_session


def chip_cut(artifact: Artifact) -> ChipCut:
    """How the artifact's chips are cut, from its input contract (ModelMismatch when it says neither)."""
    contract = artifact.input_contract
    if contract.size is None or contract.size[0] != contract.size[1]:
        raise ModelMismatch(f"embedder {artifact.id} does not take square chips of a fixed size")
    if contract.alignment_points is not None:
        return FivePointCut(contract.alignment_points, contract.size[0])
    if contract.alignment_box_margin is not None:
        return BoxCut(contract.alignment_box_margin, contract.size[0])
    raise ModelMismatch(f"embedder {artifact.id} has no alignment template in the manifest")


class Embedder:
    """ONNX Runtime session over one embedder of the models folder, checked against its contract."""

    def __init__(self, models_dir: Path, artifact: Artifact) -> None:
        if artifact.role != "embedder":
            raise ModelMismatch(f"{artifact.id} is a {artifact.role} model, not an embedder")
        self.artifact = artifact
        contract = artifact.input_contract
        if contract.size is None or contract.dtype != "uint8" or artifact.embedding_size is None:
            raise ModelMismatch(f"embedder {artifact.id} does not take fixed-size uint8 chips")
        self.cut = chip_cut(artifact)
        self.chip_size: tuple[int, int] = contract.size
        self.embedding_size: int = artifact.embedding_size
        self.session = open_session(models_dir, artifact)
        self._input = artifact.inputs[0].name
        self.providers: list[str] = self.session.get_providers()

    @property
    def model_id(self) -> str:
        """The id stored beside every embedding this model makes."""
        return self.artifact.id

    @property
    def template(self) -> tuple[tuple[float, float], ...]:
        """The chip points of a five-point alignment (ModelMismatch for a model that crops boxes)."""
        if not isinstance(self.cut, FivePointCut):
            raise ModelMismatch(f"embedder {self.model_id} crops the detector's box: it has no five points")
        return self.cut.points

    def _run(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        fixed = self.artifact.batch_size
        if fixed is None:
            (output,) = self.session.run(None, {self._input: np.ascontiguousarray(batch)})
            return np.asarray(output, dtype=np.float32)
        # A graph made for one batch size (as many exported with batch 1 are) takes the chips in steps.
        parts = []
        for start in range(0, len(batch), fixed):
            step = batch[start : start + fixed]
            padded = np.concatenate([step, np.zeros((fixed - len(step), *step.shape[1:]), np.uint8)])
            (output,) = self.session.run(None, {self._input: np.ascontiguousarray(padded)})
            parts.append(np.asarray(output, dtype=np.float32)[: len(step)])
        return np.concatenate(parts)

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
        vectors = self._run(batch)
        if flip_average:
            summed = vectors[: len(chips)] + vectors[len(chips) :]
            vectors = (summed / np.linalg.norm(summed, axis=1, keepdims=True)).astype(np.float32)
        return vectors
