"""The web console in a real Chromium against a real server: verify, identify, the models page, a 403 for a
key scoped to another collection, keyboard use and a phone-sized layout."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import photo
from tests.ui.conftest import SCOPED_KEY, ConsolePage, enroll


def _verify(console: ConsolePage, first: Path, second: Path) -> str:
    page = console.page
    page.get_by_label("First photo").set_input_files(str(first))
    page.get_by_label("Second photo").set_input_files(str(second))
    page.get_by_role("button", name="Compare").click()
    verdict = page.locator("#verify-verdict")
    verdict.wait_for(state="visible", timeout=60_000)
    return verdict.inner_text()


def test_verify_shows_the_decision_against_the_threshold(console: ConsolePage, photos: list[Path]) -> None:
    console.open("verify")
    assert _verify(console, photo(photos, "obama.jpg"), photo(photos, "obama2.jpg")).startswith("Match")
    detail = console.page.locator("#verify-detail").inner_text()
    assert "against the threshold" in detail and "false-accept rate" in detail
    canvas = console.page.locator("#verify-canvas-a")
    assert int(canvas.evaluate("c => c.width")) > 0
    assert "faces found" in (canvas.get_attribute("aria-label") or "")
    console.shot("match")
    assert _verify(console, photo(photos, "obama.jpg"), photo(photos, "biden.jpg")) == "No match"
    console.shot("no-match")


def test_identify_labels_each_face_with_its_candidate_or_unknown(
    console: ConsolePage, console_server: str, photos: list[Path]
) -> None:
    enroll(console_server, "obama", photo(photos, "obama.jpg"))
    console.open("identify")
    page = console.page
    page.get_by_label("Photo", exact=True).set_input_files(str(photo(photos, "obama2.jpg")))
    page.get_by_role("button", name="Identify").click()
    faces = page.locator("#identify-faces > li")
    page.locator("#identify-result").wait_for(state="visible", timeout=60_000)
    assert faces.first.locator("strong").inner_text() == "obama"
    console.shot("known")

    page.get_by_label("Photo", exact=True).set_input_files(str(photo(photos, "biden.jpg")))
    page.get_by_label("Show the nearest misses").check()
    page.get_by_role("button", name="Identify").click()
    page.wait_for_function(
        "() => document.querySelector('#identify-faces > li strong')?.textContent === 'unknown'",
        timeout=60_000,
    )
    assert "below the threshold" in faces.first.inner_text()  # the nearest miss, asked for
    console.shot("unknown")


def test_a_key_for_another_collection_gets_a_plain_403(console: ConsolePage, photos: list[Path]) -> None:
    console.open("identify", key=SCOPED_KEY)
    page = console.page
    page.get_by_label("Photo", exact=True).set_input_files(str(photo(photos, "obama2.jpg")))
    page.get_by_role("button", name="Identify").click()
    status = page.locator("#status.error")
    status.wait_for(timeout=60_000)
    assert status.inner_text().startswith("403 forbidden")
    assert page.locator("#identify-result").is_hidden()
    console.shot("forbidden")


def test_the_models_page_states_the_operating_points(console: ConsolePage) -> None:
    console.open("model", key=None)
    card = console.page.locator(".model").first
    card.wait_for(timeout=30_000)
    text = card.inner_text()
    assert "(default)" in text and "verify decides at" in text and "FAR" in text
    assert console.page.locator(".model tbody tr").count() >= 1
    console.shot("models")


def test_keyboard_and_a_phone_sized_screen(console: ConsolePage) -> None:
    console.open("verify", key=None)
    page = console.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Verify"
    for _ in range(2):
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the Model link
    page.locator(".model").first.wait_for(timeout=30_000)
    assert page.evaluate("location.hash") == "#model"
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{console.url}/ui#verify")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone's screen"
    for name in ("First photo", "Second photo", "API key"):
        assert page.get_by_label(name).is_visible()
    console.shot("phone")
