"""Two `faceverify serve` replicas on one PostgreSQL database: an enrollment through one is identified
through the other (at once when it passes the enrollment's seq, within moments otherwise), and a
deletion through the other reaches the first."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import photo
from tests.server import running_server


def _identify(url: str, image: Path, **fields: object) -> dict:  # type: ignore[type-arg]
    files = {"image": (image.name, image.read_bytes(), "image/jpeg")}
    return httpx.post(f"{url}/identify", data=fields, files=files, timeout=30).json()


def test_replicas_see_each_others_writes(
    models_dir: Path, photos: list[Path], postgres_url: str, tmp_path: Path
) -> None:
    shared = {"FV_DATABASE_URL": postgres_url}
    obama, obama2 = photo(photos, "obama.jpg"), photo(photos, "obama2.jpg")
    with (
        running_server(models_dir, tmp_path / "one", env=shared) as first,
        running_server(models_dir, tmp_path / "two", env=shared) as second,
    ):
        enrolled = httpx.post(
            f"{first}/enroll",
            data={"subject_id": "obama"},
            files={"images": (obama.name, obama.read_bytes(), "image/jpeg")},
            timeout=30,
        )
        assert enrolled.status_code == 201, enrolled.text
        seq = enrolled.json()["seq"]
        assert seq > 0
        # Asked to read the write: answered from a gallery that holds it, however far behind it was.
        found = _identify(second, obama2, after_seq=seq)
        assert found["match"] and found["candidates"][0]["subject_id"] == "obama"
        beyond = httpx.post(
            f"{second}/identify", data={"after_seq": seq + 1000},
            files={"image": (obama2.name, obama2.read_bytes(), "image/jpeg")}, timeout=30,
        )  # fmt: skip
        assert beyond.status_code == 422 and beyond.json()["error"]["field"] == "after_seq"
        metrics = httpx.get(f"{second}/metrics", timeout=30).text
        applied = next(
            line for line in metrics.splitlines() if line.startswith("faceverify_changes_applied ")
        )
        assert float(applied.split()[1]) >= seq
        assert "faceverify_changes_behind 0.0" in metrics

        # A deletion through the second replica reaches the first by itself, within a poll or so.
        assert httpx.delete(f"{second}/subjects/obama", timeout=30).status_code == 200
        deadline, started = time.monotonic() + 5, time.monotonic()
        while _identify(first, obama2)["candidates"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _identify(first, obama2)["candidates"] == [], "the deletion did not reach the other replica"
        assert time.monotonic() - started < 5
