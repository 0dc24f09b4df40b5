"""The `faceverify` command: `serve` needs only the service; the rest needs the `train` extra."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys


def _serve(args: argparse.Namespace) -> int:
    # faiss's OpenMP threads otherwise spin for work after every search, taking the cores from the
    # models: on 2 cores that made each /identify 3 ms slower. Set before faiss is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from app.server import serve

    serve(host=args.host, port=args.port)
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
    # Probe without importing: torch must never load into the serving process.
    if importlib.util.find_spec("torch") is not None:
        from training.cli import add_commands

        add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
