"""A real Chromium (Debian's headless shell, tests/engines/chromium.py) driven by Playwright against a real
`faceverify serve` with API keys. Each test's page fails the test on a console error; screenshots go to
.cache/ui-screenshots, or to FV_UI_SCREENSHOTS (`FV_UI_SCREENSHOTS=docs/console` makes the README's)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engines.availability import unavailable
from tests.engines.chromium import REPO, ensure_chromium
from tests.engines.postgres import EngineUnavailable
from tests.server import running_server

SCREENSHOTS = Path(os.environ.get("FV_UI_SCREENSHOTS", REPO / ".cache" / "ui-screenshots"))
ADMIN_KEY = "admin-key-for-the-console-tests"
SCOPED_KEY = "staff-only-key-for-the-console-tests"
KEYS = {ADMIN_KEY: ["*"], SCOPED_KEY: ["staff"]}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Chromium, launched once for the session."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) drives it")
    try:
        executable = ensure_chromium()
    except EngineUnavailable as error:
        unavailable("Chromium", "FV_REQUIRE_CHROMIUM", str(error))
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def console_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server with an admin key and a key for the `staff` collection only."""
    data = tmp_path_factory.mktemp("console") / "data"
    env = {"FV_API_KEYS": json.dumps(KEYS), "FV_STORE_FACE_THUMBNAILS": "true"}
    with running_server(models_dir, data, env=env) as url:
        yield url


def enroll(url: str, subject_id: str, photo: Path, collection: str = "default") -> None:
    """Enroll through the API, with the admin key."""
    answer = httpx.post(
        f"{url}/enroll",
        data={"subject_id": subject_id, "collection": collection, "create_collection": "true"},
        files={"images": (photo.name, photo.read_bytes(), "image/jpeg")},
        headers={"X-API-Key": ADMIN_KEY},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text


class ConsolePage:
    """A browser page on the console, with the console errors it logged."""

    def __init__(self, page: Any, url: str, name: str) -> None:
        self.page, self.url, self.name = page, url, name
        self.errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, part: str, key: str | None = ADMIN_KEY) -> None:
        self.page.goto(f"{self.url}/ui#{part}")
        if key is not None:
            self.page.get_by_label("API key").fill(key)
            self.page.get_by_role("button", name="Use key").click()

    def shot(self, label: str) -> Path:
        """A full-page screenshot (JPEG: the README shows some of them)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{label}.jpg"
        self.page.screenshot(path=str(path), full_page=True, type="jpeg", quality=70)
        return path


@pytest.fixture
def console(browser: Any, console_server: str, request: pytest.FixtureRequest) -> Iterator[ConsolePage]:
    """A fresh page (its own session storage) at 1280 px; no console error may be logged."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ConsolePage(context.new_page(), console_server, request.node.name.removeprefix("test_"))
    try:
        yield page
    finally:
        context.close()
    # The browser logs each 4xx answer as a failed resource (the page shows it); nothing else may be logged.
    unexpected = [e for e in page.errors if "the server responded with a status of 4" not in e]
    assert not unexpected, f"console errors: {unexpected}"
