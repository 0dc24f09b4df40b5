"""The `faceverify` command: `serve`, `enroll`, `verify` and `identify` need only the service; the
training commands need the `train` extra."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faceverify.client import Answer, ServiceClient


def _serve(args: argparse.Namespace) -> int:
    # faiss's OpenMP threads otherwise spin for work after every search, taking the cores from the
    # models: on 2 cores that made each /identify 3 ms slower. Set before faiss is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from app.server import serve

    serve(host=args.host, port=args.port)
    return 0


def _models_verify(args: argparse.Namespace) -> int:
    from app.config import Settings
    from app.face.catalog import ModelCatalog
    from app.face.errors import ModelError
    from app.face.manifest import verified_path

    folder = args.models or Settings().models_dir
    try:
        catalog = ModelCatalog.load(folder)
        artifacts = [
            *sorted(catalog.manifest.artifacts.items()),
            *(("imported", a) for a in catalog.imported),
        ]
        for role, artifact in artifacts:
            verified_path(folder, artifact)
            print(f"{role:9} {artifact.id:32} {artifact.file}: sha256 ok")
    except ModelError as error:
        print(f"models in {folder} failed verification: {error}", file=sys.stderr)
        return 1
    print(
        f"{len(artifacts)} models in {folder} match their manifest and cards "
        f"(recipe {catalog.manifest.recipe[:12]})"
    )
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from app.config import Settings
    from app.face.errors import ModelError
    from faceverify.model_list import describe_models, model_lines

    try:
        models = describe_models(Settings(), args.models)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
        return 0
    for model in models:
        print("\n".join(model_lines(model)))
    return 0


def _gallery_reembed(args: argparse.Namespace) -> int:
    from app.config import Settings
    from app.face.errors import FaceError
    from app.gallery.errors import GalleryError
    from app.local import LocalService
    from faceverify.reembed import ReembedRefused, reembed

    overrides = {k: v for k, v in (("data_dir", args.data_dir), ("models_dir", args.models)) if v is not None}
    settings = Settings(**overrides)

    def progress(done: int, total: int) -> None:
        print(f"\r{done:>7,}/{total:,} faces", end="", file=sys.stderr, flush=True)

    try:
        with LocalService(settings) as local:
            report = reembed(
                local, args.collection, args.model, args.into, args.skip_missing, args.swap, progress
            )
    except (ReembedRefused, FaceError, GalleryError) as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print(
        f"{report.target!r} ({report.model_id}): {report.embedded:,} faces embedded now, {report.already:,} "
        f"by an earlier run, {len(report.refused)} refused, {report.without_thumbnail} without a thumbnail, "
        f"of {report.faces:,}"
        + (f"; {report.dropped} dropped, deleted from {args.collection!r} since" if report.dropped else "")
    )
    for refusal in report.refused:
        print(
            f"  refused: subject {refusal.subject_id!r} face {refusal.face_id}: "
            f"{refusal.code}: {refusal.message}"
        )
    if report.swapped:
        print(
            f"swapped: {args.collection!r} is now the {report.model_id} collection; "
            f"the old one is {report.target!r}"
        )
    elif report.complete:
        print("to make it live: rerun with --swap (a rerun embeds nothing twice)")
    return 0 if report.complete or args.skip_missing else 1


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


def _gallery_rebuild_index(args: argparse.Namespace) -> int:
    from app.config import Settings
    from app.gallery.errors import GalleryError
    from app.gallery.milvus import MilvusEngine
    from app.gallery.reindex import rebuild
    from app.gallery.stores import open_store

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir is not None else {}))
    if settings.vector_index != "milvus":
        print("error: FV_VECTOR_INDEX is not milvus: FAISS indexes rebuild at each start", file=sys.stderr)
        return 1

    def progress(name: str, faces: int) -> None:
        print(f"{name!r}: {faces:,} faces written", file=sys.stderr, flush=True)

    try:
        store = open_store(settings.data_dir, settings.database_url, settings.database_pool_size)
        try:
            engine = MilvusEngine(settings.milvus_settings())
            try:
                report = rebuild(store, engine, args.collection, progress)
            finally:
                engine.close()
        finally:
            store.close()
    except GalleryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"rebuilt {len(report.faces)} collections, {sum(report.faces.values()):,} faces, "
        f"{report.replayed} changes applied after the switch"
        + (f"; dropped {', '.join(report.dropped)}" if report.dropped else "")
    )
    return 0


def _client(args: argparse.Namespace) -> ServiceClient:
    from faceverify.client import ServiceClient

    return ServiceClient(args.url, args.key)


def _print_answer(answer: Answer) -> int:
    print(json.dumps(answer.body, indent=2, ensure_ascii=False))
    return 0 if answer.ok else 1


def _verify(args: argparse.Namespace) -> int:
    from faceverify.client import b64

    body: dict[str, object] = {"image_a": b64(args.a.read_bytes()), "image_b": b64(args.b.read_bytes())}
    if args.far is not None:
        body["far"] = args.far
    if args.model is not None:
        body["model"] = args.model
    return _print_answer(_client(args).post("/verify", body))


def _identify(args: argparse.Namespace) -> int:
    from faceverify.client import b64

    body = {
        "image": b64(args.image.read_bytes()), "collection": args.collection, "top_k": args.top_k,
        "faces": "all" if args.all_faces else "one",
    }  # fmt: skip
    return _print_answer(_client(args).post("/identify", body))


def _enroll(args: argparse.Namespace) -> int:
    from collections import Counter

    from faceverify.bulk import LocalTarget, RemoteTarget, RunStopped, Target, enroll_folder

    if not args.images.is_dir():
        print(f"{args.images} is not a folder (one subfolder of photos per person)", file=sys.stderr)
        return 2
    journal = args.journal or Path(f"enroll-{args.collection}.jsonl")
    local = (
        LocalTarget(args.data_dir, args.models, args.collection, args.create_collection)
        if args.data_dir
        else None
    )
    target: Target = local or RemoteTarget(_client(args), args.collection, args.create_collection)

    def progress(done: int, total: int, counts: Counter[str]) -> None:
        shown = ", ".join(f"{counts[s]} {s}" for s in ("stored", "duplicate", "refused"))
        print(f"\r{done:>7,}/{total:,} photos: {shown}", end="", file=sys.stderr, flush=True)

    refused: Counter[str] = Counter()
    try:
        for outcome in enroll_folder(target, args.images, journal, progress):
            if outcome.status == "refused":
                refused[outcome.code or "error"] += 1
    except (RunStopped, OSError) as error:
        print(f"\nstopped: {error}; run the same command again to resume", file=sys.stderr)
        return 1
    finally:
        if local is not None:
            local.close()
    print(file=sys.stderr)
    reasons = ", ".join(f"{code}: {n}" for code, n in refused.most_common()) or "none"
    print(f"refused in this run: {reasons}; every photo's outcome is in {journal}")
    return 0


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("FV_URL", "http://127.0.0.1:8000"),
        help="the service (default: FV_URL or http://127.0.0.1:8000)",
    )  # fmt: skip
    parser.add_argument("--key", default=os.environ.get("FV_API_KEY"), help="API key (default: FV_API_KEY)")


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
    listing = models_sub.add_parser("list", help="every embedder, with its operating points")
    listing.add_argument("--models", type=Path, default=None, help="models folder (default: FV_MODELS_DIR)")
    listing.add_argument("--json", action="store_true", help="print them as JSON, as GET /ready does")
    listing.set_defaults(handler=_models_list)
    gallery = sub.add_parser(
        "gallery", help="back up the identity gallery, move it to another model, rebuild its Milvus index"
    )
    gallery_sub = gallery.add_subparsers(dest="gallery_command", required=True)
    backup = gallery_sub.add_parser("backup", help="a consistent copy of the gallery, safe while serving")
    backup.add_argument("--out", type=Path, required=True, help="the backup file to write (must not exist)")
    backup.add_argument("--data", type=Path, default=None, help="data folder (default: FV_DATA_DIR)")
    backup.set_defaults(handler=_gallery_backup)
    move = gallery_sub.add_parser(
        "reembed", help="embed a collection again with another model, from its kept thumbnails"
    )
    move.add_argument("--collection", required=True, help="the collection to move")
    move.add_argument("--model", required=True, help="the model to move it to (id or name)")
    move.add_argument("--into", default=None, help="the new collection (default: COLLECTION@MODEL)")
    move.add_argument(
        "--swap", action="store_true", help="then give it the collection's name (the old gets --into's)"
    )
    move.add_argument(
        "--skip-missing", action="store_true", help="move the faces that have thumbnails, leave the others"
    )
    move.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data folder (default: FV_DATA_DIR); no server may run on it",
    )
    move.add_argument("--models", type=Path, default=None, help="models folder (default: FV_MODELS_DIR)")
    move.set_defaults(handler=_gallery_reembed)
    reindex = gallery_sub.add_parser(
        "rebuild-index",
        help="write the Milvus index again from the store (FV_VECTOR_INDEX=milvus), while serving",
    )
    reindex.add_argument(
        "--collection", action="append", default=None, help="only this collection (repeatable; default: all)"
    )
    reindex.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: FV_DATA_DIR), for a SQLite store"
    )
    reindex.set_defaults(handler=_gallery_rebuild_index)
    enroll = sub.add_parser(
        "enroll", help="enroll a folder of people (one subfolder of photos each, named by subject id)"
    )
    enroll.add_argument("--images", type=Path, required=True, help="the folder of people")
    enroll.add_argument("--collection", default="default", help="the collection (default: default)")
    enroll.add_argument("--create-collection", action="store_true", help="create it if it does not exist")
    enroll.add_argument(
        "--journal", type=Path, default=None,
        help="each photo's outcome, one JSON line; a rerun skips what it holds (default: "
        "./enroll-COLLECTION.jsonl)",
    )  # fmt: skip
    _add_client_options(enroll)
    enroll.add_argument(
        "--data-dir", type=Path, default=None,
        help="enroll in-process into this data folder instead of through --url (no server may run on it)",
    )  # fmt: skip
    enroll.add_argument("--models", type=Path, default=Path("models"), help="models folder, with --data-dir")
    enroll.set_defaults(handler=_enroll)
    compare = sub.add_parser("verify", help="are the largest faces of two photos the same person?")
    compare.add_argument("a", type=Path)
    compare.add_argument("b", type=Path)
    compare.add_argument("--far", type=float, default=None, help="decide at this false-accept rate")
    compare.add_argument("--model", default=None, help="the embedder (id or name; default: the default one)")
    _add_client_options(compare)
    compare.set_defaults(handler=_verify)
    identify = sub.add_parser("identify", help="who, of a collection, is in this photo?")
    identify.add_argument("image", type=Path)
    identify.add_argument("--collection", default="default")
    identify.add_argument("--top-k", type=int, default=5)
    identify.add_argument("--all-faces", action="store_true", help="answer for every face of the photo")
    _add_client_options(identify)
    identify.set_defaults(handler=_identify)
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
