"""The `faceverify` command: `serve` needs only the service; the rest needs the `train` extra."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    # faiss's OpenMP threads otherwise spin for work after every search, taking the cores from the
    # models: on 2 cores that made each /identify 3 ms slower. Set before faiss is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from app.server import serve

    serve(host=args.host, port=args.port)
    return 0


def _models_verify(args: argparse.Namespace) -> int:
    from app.config import Settings
    from app.face.errors import ModelError
    from app.face.manifest import load_manifest, verified_path

    folder = args.models or Settings().models_dir
    try:
        manifest = load_manifest(folder)
        for role, artifact in sorted(manifest.artifacts.items()):
            verified_path(folder, artifact)
            print(f"{role:9} {artifact.id:32} {artifact.file}: sha256 ok")
    except ModelError as error:
        print(f"models in {folder} failed verification: {error}", file=sys.stderr)
        return 1
    print(
        f"{len(manifest.artifacts)} models in {folder} match their manifest (recipe {manifest.recipe[:12]})"
    )
    return 0


def _gallery_backup(args: argparse.Namespace) -> int:
    import sqlite3

    from app.config import Settings
    from app.gallery.backup import backup_gallery

    try:
        report = backup_gallery(args.data or Settings().data_dir, args.out)
    except (OSError, sqlite3.Error) as error:
        print(f"backup failed: {error}", file=sys.stderr)
        return 1
    print(f"{report.path}: {report.collections} collections, {report.faces} faces, {report.bytes:,} bytes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full command tree; torch-side commands appear only where the `train` extra is installed."""
    parser = argparse.ArgumentParser(prog="faceverify", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"faceverify {importlib.metadata.version('faceverify')}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=None, help="bind address (default: FV_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: FV_PORT or 8000)")
    serve.set_defaults(handler=_serve)
    models = sub.add_parser("models", help="build and check the served model artifacts")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    verify = models_sub.add_parser("verify", help="check every model file against the manifest")
    verify.add_argument("--models", type=Path, default=None, help="models folder (default: FV_MODELS_DIR)")
    verify.set_defaults(handler=_models_verify)
    gallery = sub.add_parser("gallery", help="back up the identity gallery")
    gallery_sub = gallery.add_subparsers(dest="gallery_command", required=True)
    backup = gallery_sub.add_parser("backup", help="a consistent copy of the gallery, safe while serving")
    backup.add_argument("--out", type=Path, required=True, help="the backup file to write (must not exist)")
    backup.add_argument("--data", type=Path, default=None, help="data folder (default: FV_DATA_DIR)")
    backup.set_defaults(handler=_gallery_backup)
    # Probe without importing: torch must never load into the serving process.
    if importlib.util.find_spec("torch") is not None:
        from training.cli import add_commands

        add_commands(sub, models_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
