"""Enrolls (and now and then deletes) in a loop until killed, acknowledging each write after it returns.

Run by test_crash.py: python -m tests.gallery.crash_child DATA_DIR ACK_FILE START
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from app.gallery.gallery import Gallery
from app.gallery.index import IndexSettings
from app.gallery.store import Enrollment, NewFace

DIM = 128
MODEL = "crash-test-model"


def vector_for(subject: int) -> np.ndarray:
    """A distinct unit vector per subject number."""
    v = np.random.default_rng(subject).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def open_gallery(data_dir: Path) -> Gallery:
    """The gallery as the test opens it (a small exact limit, so IVF rebuilds happen too)."""
    return Gallery(data_dir, MODEL, DIM, IndexSettings(exact_limit=300))


def _acknowledge(ack: int, line: str) -> None:
    os.write(ack, line.encode())
    os.fsync(ack)


def main() -> None:
    data_dir, ack_path, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    gallery = open_gallery(data_dir)
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    print("ready", flush=True)
    subject = start
    while True:
        ((face_id,),) = gallery.enroll("crash", [Enrollment(f"s{subject}", [NewFace(vector_for(subject))])])
        _acknowledge(ack, f"E s{subject} {face_id}\n")
        if subject % 7 == 0 and subject - 5 >= start:
            # Announce the delete first: if the kill lands before its acknowledgement, it may or may
            # not have happened, and the test must accept either.
            _acknowledge(ack, f"d s{subject - 5}\n")
            gallery.delete_subject("crash", f"s{subject - 5}")
            _acknowledge(ack, f"D s{subject - 5}\n")
        if subject % 50 == 0:
            gallery.save_snapshots()
        subject += 1


if __name__ == "__main__":
    main()
