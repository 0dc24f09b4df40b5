"""Schemathesis against a real server's /openapi.json, with API keys: hundreds of generated requests, no
5xx, and every answer is documented (status, content type, headers, body schema), every undocumented
method gets 405 with a true Allow header, and no route answers without its key."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import running_server

MINIMUM_CASES = 500
KEY = "k-fuzz-0123456789"
CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "unsupported_method",
    "allow_header_conformance", "missing_required_header", "ignored_auth",
)  # fmt: skip


def test_generated_requests_get_documented_answers(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("schemathesis (the `dev` extra) is not installed")
    monkeypatch.setenv("FV_API_KEYS", json.dumps({KEY: ["*"]}))
    with running_server(models_dir, tmp_path / "data") as url:
        command = [
            cli, "run", f"{url}/openapi.json", "--max-examples", "40", "--seed", "7",
            "--checks", ",".join(CHECKS), "-H", f"X-API-Key: {KEY}",
        ]  # fmt: skip
        # Run from the temporary directory: schemathesis keeps a cache where it runs.
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-4000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated is not None, report[-2000:]
    assert int(generated.group(1)) >= MINIMUM_CASES, generated.group(0)
    assert generated.group(1) == generated.group(2), generated.group(0)
