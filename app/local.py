"""The service's models and gallery in-process, for commands that work on a data directory directly
(bulk enrollment, moving a gallery to another model): its lock is held, so no server runs on it."""

from __future__ import annotations

from contextlib import ExitStack

from app.config import Settings
from app.decision.cohort import Cohort
from app.face.catalog import ModelCatalog
from app.face.detector import MtcnnDetector
from app.face.embedder import Embedder
from app.face.pipeline import FacePipeline
from app.gallery.gallery import EmbeddingSpace
from app.gallery.lock import DataDirLock
from app.main import check_calibration, open_gallery


class LocalService:
    """Every embedder of the models folder and the gallery, opened as the service opens them: the same
    refusals (a foreign cohort, a calibration made with other settings, a collection of a model absent)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self._stack.enter_context(DataDirLock(settings.data_dir))
        try:
            self.catalog = ModelCatalog.load(settings.models_dir)
            default = (
                self.catalog.find(settings.default_model) if settings.default_model else self.catalog.built
            )
            spaces = {}
            for artifact in self.catalog.embedders():
                check_calibration(artifact, settings)
                spaces[artifact.id] = EmbeddingSpace(
                    artifact.embedding_size or 0, Cohort.load(settings.models_dir, artifact)
                )
            self.detector = MtcnnDetector(
                settings.models_dir, self.catalog.manifest, settings.detector_settings()
            )
            self.gallery = open_gallery(settings, default.id, spaces)
        except BaseException:
            self._stack.close()
            raise
        self._stack.callback(self.gallery.close)
        self._stack.callback(self.gallery.save_snapshots)
        self._pipelines: dict[str, FacePipeline] = {}

    def pipeline(self, model: str) -> FacePipeline:
        """The face pipeline of a model of the folder (by id or name), loaded on first use."""
        artifact = self.catalog.find(model)
        if artifact.id not in self._pipelines:
            embedder = Embedder(self.settings.models_dir, artifact)
            self._pipelines[artifact.id] = FacePipeline(
                self.detector, embedder, self.settings.pipeline_settings()
            )
        return self._pipelines[artifact.id]

    def close(self) -> None:
        """Save the index snapshots and release the data directory."""
        self._stack.close()

    def __enter__(self) -> LocalService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
