"""pytest fixtures for a real Milvus standalone server; import them into a conftest or a test module to use.

One server runs per test session; each test gets a database of its own, dropped with its collections
afterwards. Where the engine cannot run (no `milvus` package, not Linux, no private network namespace) the
tests are skipped with the reason, or fail when FV_REQUIRE_MILVUS=1 says that this machine must run them.
FV_MILVUS_NETWORK=host runs the server in this machine's network where no namespace can be made (see
tests/engines/milvus.py).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines.availability import scratch_folder, unavailable
from tests.engines.milvus import EngineUnavailable, MilvusServer

__all__ = ["milvus_server", "milvus_uri"]

_database_numbers = itertools.count(1)


def start_milvus(base: Path) -> MilvusServer:
    """A started server under `base`, or a skip (or failure) with the reason it cannot run."""
    try:
        return MilvusServer(base).start()
    except EngineUnavailable as exc:
        unavailable("Milvus", "FV_REQUIRE_MILVUS", str(exc))


@pytest.fixture(scope="session")
def milvus_server() -> Iterator[MilvusServer]:
    """The session's Milvus server; a test that stops or kills it gets it started again afterwards."""
    with scratch_folder("faceverify-milvus-") as base:
        server = start_milvus(base)
        try:
            yield server
        finally:
            server.kill()  # its data goes with it: no graceful stop to wait for


@pytest.fixture
def milvus_uri(milvus_server: MilvusServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URI of an empty database of the test's own (the path names it to pymilvus), dropped afterwards."""
    pymilvus = pytest.importorskip("pymilvus", reason="pymilvus (the `milvus` extra) talks to Milvus")
    if not milvus_server.running:
        milvus_server.start()
    # Named after the test, so that the server log says which test did what.
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40].strip("_")
    name = f"t{next(_database_numbers)}_{stem}"
    admin = pymilvus.MilvusClient(milvus_server.uri, timeout=60)
    try:
        admin.create_database(name)
        yield milvus_server.uri_for(name)
        if not milvus_server.running:
            milvus_server.start()
        # Milvus refuses to drop a database that still holds collections. A client of its own, not
        # use_database(): that asks DescribeDatabase first, which Milvus 2.3 does not have.
        inside = pymilvus.MilvusClient(milvus_server.uri_for(name), timeout=60)
        try:
            for collection in inside.list_collections():
                inside.drop_collection(collection)
        finally:
            inside.close()
        admin.drop_database(name)
    finally:
        admin.close()
