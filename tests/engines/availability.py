"""What the engine fixtures share: skip, or fail where this machine must run the engine, and the scratch
folder a session's server lives in."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(engine: str, variable: str, reason: str) -> NoReturn:
    """Skip the test with the reason the engine cannot run, or fail it where `variable` (FV_REQUIRE_...)
    says that this machine must run it."""
    if os.environ.get(variable, "") not in ("", "0"):
        pytest.fail(f"{engine} is required here ({variable}) but cannot run: {reason}", pytrace=False)
    pytest.skip(f"{engine} cannot run here: {reason}")


@contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A folder under the system's temporary one, removed afterwards. Not tmp_path_factory: its folders are
    private to the user running pytest, while a server started by root runs as `nobody`."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
