"""Crash safety: a writer killed with SIGKILL at random moments loses no acknowledged write."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.assets import REPO
from tests.gallery.crash_child import open_gallery, vector_for

ROUNDS = 20


def _acknowledged(ack_file: Path) -> tuple[dict[str, int], set[str], set[str]]:
    """Acknowledged enrollments (subject -> face id), acknowledged deletes, and deletes begun."""
    enrolled: dict[str, int] = {}
    deleted: set[str] = set()
    begun: set[str] = set()
    for line in ack_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "E":
            enrolled[parts[1]] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "D":
            deleted.add(parts[1])
        elif len(parts) == 2 and parts[0] == "d":
            begun.add(parts[1])
    return enrolled, deleted, begun


def _run_and_kill(data_dir: Path, ack_file: Path, start: int, rng: random.Random) -> None:
    command = [sys.executable, "-m", "tests.gallery.crash_child", str(data_dir), str(ack_file), str(start)]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        time.sleep(rng.uniform(0.05, 0.6))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)


def test_no_acknowledged_write_is_lost_across_sigkills(tmp_path: Path) -> None:
    rng = random.Random(1234)
    ack_file = tmp_path / "acknowledged.txt"
    ack_file.touch()
    total_checked = 0
    for round_number in range(ROUNDS):
        _run_and_kill(tmp_path, ack_file, start=round_number * 100_000, rng=rng)
        enrolled, deleted, begun = _acknowledged(ack_file)
        alive = sorted(set(enrolled) - begun)  # a delete begun but not acknowledged may have happened
        gallery = open_gallery(tmp_path)
        stored = set(gallery.store.face_ids(gallery.collection("crash")).tolist())
        indexed = gallery.index_ids("crash").tolist()
        assert len(indexed) == len(set(indexed)), "a face is indexed twice"
        assert set(indexed) == stored, f"round {round_number}: index and SQLite differ"
        assert {enrolled[s] for s in alive} <= stored, f"round {round_number}: an acknowledged face is lost"
        assert not {enrolled[s] for s in deleted} & stored, f"round {round_number}: a deleted face came back"
        probes = np.stack([vector_for(int(s[1:])) for s in alive])
        for subject, row in zip(alive, gallery.identify("crash", probes, top_k=1), strict=True):
            assert row and row[0].subject_id == subject and row[0].similarity > 0.999, subject
        total_checked = len(alive)
        gallery.store.close()
    assert total_checked > 100, f"too few writes were acknowledged to test anything ({total_checked})"
    print(
        f"{ROUNDS} SIGKILL rounds: {len(enrolled)} enrollments, {len(deleted)} deletes acknowledged, all held"
    )
