"""Two galleries on one PostgreSQL database, as two replicas are: each follows the other's writes
through the changes feed, idempotently, and a late starter loads everything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.gallery.gallery import Gallery
from app.gallery.store import Enrollment, NewFace
from tests.gallery.vectors import DIM, faces_of, identities

MODEL = "model-a"


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Gallery, Gallery]]:
    from app.gallery.postgres import PostgresStore

    stores = [PostgresStore(postgres_url) for _ in range(2)]
    first, second = (Gallery(tmp_path / f"r{i}", MODEL, DIM, store=s) for i, s in enumerate(stores))
    yield first, second
    for store in stores:
        store.close()


def test_an_enrollment_through_one_is_found_by_the_other_once_it_catches_up(
    replicas: tuple[Gallery, Gallery],
) -> None:
    first, second = replicas
    people = identities(3)
    (ids,) = first.enroll("default", [Enrollment("ann", [NewFace(v) for v in faces_of(people[:1])])])
    first.enroll("default", [Enrollment(f"p{i}", [NewFace(v)]) for i, v in enumerate(faces_of(people[1:]))])
    assert second.index_size("default") == 0
    assert not second.applied_seq >= ids.seq
    assert second.seen(ids.seq)  # catches up on the way
    (ranking,) = second.rank("default", faces_of(people[:1], seed=7), top_k=1)
    assert ranking.candidates[0].subject_id == "ann" and ranking.faces_searched == 3
    first.catch_up()  # its own writes again: nothing is held twice
    assert first.index_size("default") == 3 and sorted(first.index_ids("default")) == sorted(
        second.index_ids("default")
    )


def test_deletions_collections_and_renames_follow(replicas: tuple[Gallery, Gallery]) -> None:
    first, second = replicas
    first.create_collection("staff")
    vectors = faces_of(identities(2))
    first.enroll("staff", [Enrollment("ann", [NewFace(vectors[0])]), Enrollment("bo", [NewFace(vectors[1])])])
    second.catch_up()
    assert second.index_size("staff") == 2
    second.delete_subject("staff", "bo")
    first.catch_up()
    assert first.index_size("staff") == 1
    second.rename_collections({"staff": "team"})
    first.delete_collection("default")  # emptied and made again
    second.catch_up()
    first.catch_up()
    for gallery in replicas:
        assert gallery.index_size("team") == 1 and gallery.index_size("default") == 0
    first.delete_collection("team")
    second.catch_up()
    assert "team" not in [c.name for c, _ in second.collections()]


def test_a_replica_started_later_or_far_behind_holds_everything(
    replicas: tuple[Gallery, Gallery], postgres_url: str, tmp_path: Path
) -> None:
    from app.gallery.postgres import PostgresStore

    first, second = replicas
    vectors = faces_of(identities(5))
    (ids,) = first.enroll("default", [Enrollment("ann", [NewFace(v) for v in vectors[:3]])])
    first.delete_face("default", "ann", ids[0])
    store = PostgresStore(postgres_url)
    late = Gallery(tmp_path / "late", MODEL, DIM, store=store)
    assert sorted(late.index_ids("default")) == ids[1:]
    # Behind what the feed keeps: the next catch-up reloads instead of missing changes.
    first.enroll("default", [Enrollment("bo", [NewFace(v) for v in vectors[3:]])])
    first.store.prune_changes(first.store.last_seq() + 1)
    second.catch_up()
    assert np.array_equal(np.sort(second.index_ids("default")), np.sort(first.index_ids("default")))
    assert second.index_size("default") == 4
    store.close()
