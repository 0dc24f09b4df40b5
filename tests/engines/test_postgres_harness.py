"""The PostgreSQL harness on a real server: connections, crash recovery, restarts, a database per test.

The fixtures come from tests/conftest.py, which imports tests.engines.fixtures: importing them here as well
would make a second session server.
"""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

from tests.engines.postgres import EngineUnavailable, PostgresServer, find_postgres

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg (the `postgres` extra) is needed to talk to PostgreSQL"
)


def _count(url: str, table: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_psycopg_connects_to_the_bundled_server(postgres_server: PostgresServer, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, connect_timeout=10) as conn:
        assert conn.info.server_version // 10000 == postgres_server.install.major
        assert conn.info.host == "127.0.0.1"
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
    assert 0 < postgres_server.port < 32768


def test_committed_row_survives_a_kill(postgres_server: PostgresServer, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE faces (id int PRIMARY KEY, label text NOT NULL)")
        conn.execute("INSERT INTO faces VALUES (1, 'committed')")
    pending = psycopg.connect(postgres_url)
    pending.execute("INSERT INTO faces VALUES (2, 'never committed')")
    log_size = postgres_server.log_path.stat().st_size

    postgres_server.kill()
    assert not postgres_server.running
    pending.close()
    postgres_server.start()

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT id, label FROM faces ORDER BY id").fetchall() == [(1, "committed")]
    assert "automatic recovery in progress" in postgres_server.log_tail(lines=200, since=log_size)


def test_kill_and_start_again_at_once(postgres_server: PostgresServer, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (n int)")
    for n in range(3):
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("INSERT INTO events VALUES (%s)", (n,))
        postgres_server.kill()
        postgres_server.start()  # no pause: what a killed server leaves behind must not stop it
    assert _count(postgres_url, "events") == 3


def test_stop_start_and_restart_keep_the_data_and_the_url(
    postgres_server: PostgresServer,
    postgres_url: str,
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept AS SELECT generate_series(1, 10) AS n")
    port = postgres_server.port

    postgres_server.stop()
    assert not postgres_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_url, connect_timeout=2)
    postgres_server.start()
    assert _count(postgres_url, "kept") == 10

    postgres_server.restart()
    assert postgres_server.port == port
    assert _count(postgres_url, "kept") == 10


def test_stale_lock_files_naming_a_live_process_do_not_block_the_start(
    postgres_server: PostgresServer,
    postgres_url: str,
) -> None:
    postgres_server.kill()
    locks = [
        postgres_server.data_dir / "postmaster.pid",
        postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}.lock",
    ]
    # A pid reused by the server's own account: PostgreSQL alone takes it for another postmaster and refuses.
    account = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else None
    stranger = subprocess.Popen(["sleep", "60"], user=account)
    try:
        for lock in locks:
            lines = lock.read_text().splitlines()
            lock.write_text("\n".join([str(stranger.pid), *lines[1:]]) + "\n")
        postgres_server.start()
    finally:
        stranger.kill()
        stranger.wait()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_an_empty_database(
    postgres_server: PostgresServer,
    postgres_url: str,
    turn: str,
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert tables == []
        # Left behind on purpose: the other turn must not see it.
        conn.execute("CREATE TABLE leftover (turn text)")
        conn.execute("INSERT INTO leftover VALUES (%s)", (turn,))
    assert postgres_url != postgres_server.url


def test_sql_runs_without_a_driver(postgres_server: PostgresServer) -> None:
    assert postgres_server.sql("SELECT 40 + 2") == "42"


def test_a_missing_build_is_reported_as_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="PostgreSQL 99"):
        find_postgres(major=99)
