"""`faceverify models build`: every served ONNX artifact and the manifest, from registry packages."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from app.face.errors import ModelError
from app.face.manifest import (
    MANIFEST_SCHEMA,
    Artifact,
    Manifest,
    Source,
    TensorSpec,
    load_manifest,
    sha256_file,
    verified_path,
    write_manifest,
)
from training.calibrate import CALIBRATIONS_DIR, provisional_threshold, recorded_calibration
from training.cohort import COHORTS_DIR, cohort_files, recorded_cohort
from training.export import check_parity, embedder_artifact, export_onnx, rgb_input
from training.quantise import RANGES_DIR, int8_model_id, quantise_with_ranges, ranges_file
from training.weights.dlib_dat import read_dlib_dnn
from training.weights.dlib_resnet import (
    DLIB_CHIP_SIZE,
    EMBEDDING_SIZE,
    DlibResNet,
    ServedDlibResNet,
    load_dlib_weights,
)
from training.weights.mtcnn import FACENET_PACKAGE, facenet_weights_dir, load_mtcnn_net, serving_form

DLIB_MODELS_PACKAGE = "face_recognition_models"
DLIB_MODELS_VERSION = "0.3.0"
DLIB_EMBEDDER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
FACENET_VERSION = "2.6.0"
TEMPLATE_FILE = Path(__file__).resolve().parent / "templates" / "mtcnn_dlib_chip_150.json"

# Files whose bytes decide what the build produces; a change to any of them makes models stale.
_RECIPE_FILES = (
    "build.py",
    "export.py",
    "weights/dlib_dat.py",
    "weights/dlib_resnet.py",
    "weights/mtcnn.py",
    "templates/mtcnn_dlib_chip_150.json",
    "quantise.py",
)
# Folders of committed records a build ships: calibrations, cohorts and int8 activation ranges.
_RECIPE_DIRS = (CALIBRATIONS_DIR, COHORTS_DIR, RANGES_DIR)
INT8_KEY = "embedder-int8"  # the manifest's key for the int8 embedder, beside "embedder"


@dataclass(frozen=True)
class BuildResult:
    """What a build did: the manifest in force, whether it rebuilt, and how long it took."""

    manifest: Manifest
    rebuilt: bool
    seconds: float


def package_dir(package: str) -> Path:
    """An installed package's folder, found without importing it (imports may need absent deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package} is not installed; install the `train` extra")
    return Path(next(iter(spec.submodule_search_locations)))


def _installed_version(distribution: str, pinned: str) -> str:
    version = importlib.metadata.version(distribution)
    if version != pinned:
        raise ModelError(f"{distribution} {version} is installed; the build needs {pinned}")
    return version


def _sources() -> dict[str, Source]:
    dlib_dat = package_dir(DLIB_MODELS_PACKAGE) / "models" / DLIB_EMBEDDER_FILE
    dlib_version = _installed_version("face_recognition_models", DLIB_MODELS_VERSION)
    facenet_version = _installed_version("facenet-pytorch", FACENET_VERSION)
    sources = {
        "embedder": Source(
            package=DLIB_MODELS_PACKAGE,
            version=dlib_version,
            file=f"models/{DLIB_EMBEDDER_FILE}",
            sha256=sha256_file(dlib_dat),
            licence="CC0-1.0",
        )
    }
    weights = facenet_weights_dir()
    for net in ("pnet", "rnet", "onet"):
        sources[net] = Source(
            package=FACENET_PACKAGE,
            version=facenet_version,
            file=f"data/{net}.pt",
            sha256=sha256_file(weights / f"{net}.pt"),
            licence="MIT",
        )
    return sources


def recipe_digest(sources: dict[str, Source]) -> str:
    """sha256 over the build code and the source weights: equal digests build equal models."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    records = sorted(str(p.relative_to(here)) for folder in _RECIPE_DIRS for p in folder.glob("*"))
    for name in (*_RECIPE_FILES, *records):
        path = here / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"absent"))
    for role in sorted(sources):
        digest.update(f"{role}:{sources[role].sha256}".encode())
    return digest.hexdigest()


def _is_current(out_dir: Path, recipe: str) -> Manifest | None:
    """The existing manifest if it came from this recipe and every file still matches it."""
    try:
        manifest = load_manifest(out_dir)
        if manifest.recipe != recipe:
            return None
        for artifact in manifest.artifacts.values():
            verified_path(out_dir, artifact)
            if artifact.cohort is not None and not (out_dir / artifact.cohort.file).is_file():
                return None
    except ModelError:
        return None
    return manifest


def _float_pixels(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 255.0


def _spec(name: str, *shape: int | None) -> TensorSpec:
    return TensorSpec(name=name, dtype="float32", shape=shape)


@dataclass(frozen=True)
class _NetPlan:
    """How one MTCNN stage is exported and checked."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_axes: dict[int, str]
    example_shape: tuple[int, ...]
    check_shapes: tuple[tuple[int, ...], ...]
    size: tuple[int, int] | None


_MTCNN_PLANS = {
    "pnet": _NetPlan(
        inputs=(_spec("images", None, None, None, 3),),
        outputs=(_spec("regression", None, 4, None, None), _spec("probability", None, None, None)),
        dynamic_axes={0: "batch", 1: "height", 2: "width"},
        example_shape=(2, 64, 80, 3),
        check_shapes=((1, 12, 12, 3), (1, 57, 91, 3), (3, 120, 96, 3)),
        size=None,
    ),
    "rnet": _NetPlan(
        inputs=(_spec("crops", None, 24, 24, 3),),
        outputs=(_spec("regression", None, 4), _spec("probability", None)),
        dynamic_axes={0: "batch"},
        example_shape=(2, 24, 24, 3),
        check_shapes=((1, 24, 24, 3), (7, 24, 24, 3)),
        size=(24, 24),
    ),
    "onet": _NetPlan(
        inputs=(_spec("crops", None, 48, 48, 3),),
        outputs=(_spec("regression", None, 4), _spec("landmarks", None, 10), _spec("probability", None)),
        dynamic_axes={0: "batch"},
        example_shape=(2, 48, 48, 3),
        check_shapes=((1, 48, 48, 3), (7, 48, 48, 3)),
        size=(48, 48),
    ),
}


def _build_mtcnn(stage: str, tmp: Path, sources: dict[str, Source]) -> Artifact:
    plan = _MTCNN_PLANS[stage]
    net = load_mtcnn_net(stage)
    path = tmp / f"mtcnn_{stage}.onnx"
    output_names = [o.name for o in plan.outputs]
    example = _float_pixels(plan.example_shape, 0)
    export_onnx(serving_form(net), example, path, plan.inputs[0].name, output_names, plan.dynamic_axes)
    checks = [_float_pixels(shape, seed) for seed, shape in enumerate(plan.check_shapes, start=1)]
    check_parity(net, path, checks, atol=1e-4)  # against the net as trained, not its serving form
    return Artifact(
        id=f"mtcnn-{stage}-{sources[stage].sha256[:8]}",
        role=stage,  # type: ignore[arg-type]
        file=path.name,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        input_contract=rgb_input("float32", plan.size, "(x - 127.5) / 128, inside the graph"),
        inputs=plan.inputs,
        outputs=plan.outputs,
        source=sources[stage],
    )


def build_embedder_module() -> DlibResNet:
    """The dlib ResNet port with the weights of face_recognition_models."""
    dat = package_dir(DLIB_MODELS_PACKAGE) / "models" / DLIB_EMBEDDER_FILE
    return load_dlib_weights(DlibResNet(), read_dlib_dnn(dat)).eval()


def _build_embedder(tmp: Path, sources: dict[str, Source]) -> Artifact:
    model = build_embedder_module()
    path = tmp / "dlib_resnet_v1.onnx"
    side = DLIB_CHIP_SIZE
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (2, side, side, 3), dtype=torch.uint8, generator=generator)
    export_onnx(ServedDlibResNet(model), example, path, "chips", ("embeddings",), {0: "batch"})
    checks = [
        torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=generator) for n in (1, 5)
    ]
    check_parity(model, path, checks, atol=1e-5)  # against the module as ported, not its serving form
    template = json.loads(TEMPLATE_FILE.read_text())
    if template["chip_size"] != side or len(template["points"]) != 5:
        raise ModelError(f"{TEMPLATE_FILE} is not a five-point template for {side} px chips")
    model_id = f"dlib-resnet-v1-{sources['embedder'].sha256[:8]}"
    artifact = embedder_artifact(
        path,
        model_id=model_id,
        side=side,
        template=template["template_id"],
        points=tuple((float(x), float(y)) for x, y in template["points"]),
        normalisation="(x - mean_rgb(122.782, 117.001, 104.298)) / 256, inside the graph",
        embedding_size=EMBEDDING_SIZE,
        threshold=provisional_threshold(),
        source=sources["embedder"],
    )
    return _with_records(artifact, tmp)


def _with_records(artifact: Artifact, tmp: Path) -> Artifact:
    """The artifact with its committed calibration and cohort (copied into tmp), where they exist."""
    template = artifact.input_contract.alignment_template or ""
    recorded = recorded_calibration(artifact.id, template)
    cohort = recorded_cohort(artifact.id)
    for path in cohort[1] if cohort else ():
        shutil.copyfile(path, tmp / path.name)
    return artifact.model_copy(
        update={
            "threshold": recorded.threshold if recorded else provisional_threshold(),
            "calibration": recorded.calibration if recorded else None,
            "cohort": cohort[0] if cohort else None,
        }
    )


def _build_int8_embedder(tmp: Path, float_artifact: Artifact) -> Artifact | None:
    """The float embedder quantised with its recorded activation ranges; None where none are recorded."""
    ranges = ranges_file(float_artifact.id)
    if not ranges.is_file():
        return None
    path = tmp / Path(float_artifact.file).with_suffix(".int8.onnx").name
    quantise_with_ranges(tmp / float_artifact.file, ranges, path)
    model_id = int8_model_id(float_artifact.id, ranges)
    artifact = float_artifact.model_copy(
        update={
            "id": model_id,
            "name": model_id.rsplit("-", 1)[0],
            "file": path.name,
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }
    )
    return _with_records(artifact, tmp)


def _toolchain() -> dict[str, str]:
    names = ("torch", "onnx", "onnxscript", "onnxruntime")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def build_models(out_dir: Path, force: bool = False, log: Callable[[str], None] = print) -> BuildResult:
    """Build every artifact into out_dir unless the manifest there is current; return the manifest."""
    started = time.perf_counter()
    sources = _sources()
    recipe = recipe_digest(sources)
    if not force and (current := _is_current(out_dir, recipe)) is not None:
        log(f"models in {out_dir} are up to date (recipe {recipe[:12]})")
        return BuildResult(current, rebuilt=False, seconds=time.perf_counter() - started)

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".build"
    tmp.mkdir(exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    artifacts: dict[str, Artifact] = {}
    for stage in ("pnet", "rnet", "onet"):
        log(f"building MTCNN {stage} from {FACENET_PACKAGE} {FACENET_VERSION}")
        artifacts[stage] = _build_mtcnn(stage, tmp, sources)
    log(f"building the dlib ResNet embedder from {DLIB_MODELS_PACKAGE} {DLIB_MODELS_VERSION}")
    artifacts["embedder"] = _build_embedder(tmp, sources)
    if ranges_file(artifacts["embedder"].id).is_file():
        log(f"quantising it to int8 with the ranges of {ranges_file(artifacts['embedder'].id).name}")
    int8 = _build_int8_embedder(tmp, artifacts["embedder"])
    if int8 is not None:
        artifacts[INT8_KEY] = int8

    manifest = Manifest(
        schema_version=MANIFEST_SCHEMA,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        recipe=recipe,
        toolchain=_toolchain(),
        artifacts=artifacts,
    )
    # Files first, manifest last, each by rename: a build cut short leaves a manifest that fails
    # its checksums (stale, rebuilt next time), never one that vouches for half-written files.
    for artifact in artifacts.values():
        os.replace(tmp / artifact.file, out_dir / artifact.file)
    for artifact in artifacts.values():
        for name in cohort_files(artifact.id) if artifact.cohort is not None else ():
            os.replace(tmp / name, out_dir / name)
    tmp.rmdir()
    write_manifest(out_dir, manifest)
    seconds = time.perf_counter() - started
    for artifact in artifacts.values():
        log(f"  {artifact.file}: {artifact.bytes / 1024:,.0f} KiB  sha256 {artifact.sha256[:16]}")
    log(f"built {len(artifacts)} models into {out_dir} in {seconds:.1f} s")
    return BuildResult(manifest, rebuilt=True, seconds=seconds)
