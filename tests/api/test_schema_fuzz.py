"""Schemathesis against a real server's /openapi.json: hundreds of generated requests, no 5xx, and
every response conforms to the schema."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import running_server

MINIMUM_CASES = 500


def test_generated_requests_never_get_a_server_error(models_dir: Path, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("schemathesis (the `dev` extra) is not installed")
    with running_server(models_dir, tmp_path / "data") as url:
        command = [
            cli, "run", f"{url}/openapi.json", "--max-examples", "40", "--seed", "7",
            "--checks", "not_a_server_error,response_schema_conformance",
        ]  # fmt: skip
        # Run from the temporary directory: schemathesis keeps a cache where it runs.
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-4000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated is not None, report[-2000:]
    assert int(generated.group(1)) >= MINIMUM_CASES, generated.group(0)
    assert generated.group(1) == generated.group(2), generated.group(0)
