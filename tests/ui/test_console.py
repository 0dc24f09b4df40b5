"""The web console in a real Chromium against a real server: verify, identify, the models page, a 403 for a
key scoped to another collection, keyboard use and a phone-sized layout."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

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
    label = canvas.get_attribute("aria-label") or ""
    assert "faces found" in label
    # Every other face the photo holds is outlined beside the compared one.
    assert int(canvas.get_attribute("data-outlined") or -1) == int(label.split()[0]) - 1
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
    page.goto(f"{console.url}/ui#gallery")  # the key stays for the session
    page.locator("#collections").wait_for()
    page.wait_for_timeout(500)
    assert page.get_by_role("button", name="Open default").count() == 0  # not this key's to see


def test_the_models_page_states_the_operating_points(console: ConsolePage) -> None:
    console.open("model", key=None)
    card = console.page.locator(".model").first
    card.wait_for(timeout=30_000)
    text = card.inner_text()
    assert "(default)" in text and "verify decides at" in text and "FAR" in text
    assert console.page.locator(".model tbody tr").count() >= 1
    curve = card.locator("svg.det path[data-score=cosine]")
    assert len(curve.get_attribute("d") or "") > 100  # drawn from the measured points
    assert "DET curve" in (card.locator("svg.det").get_attribute("aria-label") or "")
    console.shot("models")


def test_keyboard_and_a_phone_sized_screen(console: ConsolePage) -> None:
    console.open("verify", key=None)
    page = console.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Verify"
    for _ in range(4):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Model"
    page.keyboard.press("Enter")
    page.locator(".model").first.wait_for(timeout=30_000)
    assert page.evaluate("location.hash") == "#model"
    # Focus lands on the page's heading, and the title says where one is.
    assert page.evaluate("document.activeElement.tagName") == "H2"
    assert page.title().startswith("Models and their operating points")
    page.set_viewport_size({"width": 390, "height": 844})
    for part in ("verify", "identify", "enroll", "gallery", "model"):
        page.goto(f"{console.url}/ui#{part}")
        page.wait_for_timeout(300)  # the gallery and model pages load their lists
        overflow = page.evaluate("(d => d.scrollWidth - d.clientWidth)(document.documentElement)")
        assert overflow <= 0, f"the {part} page is {overflow} px wider than a phone's screen"
    page.goto(f"{console.url}/ui#verify")
    for name in ("First photo", "Second photo", "API key"):
        assert page.get_by_label(name).is_visible()
    console.shot("phone")


def test_enroll_shows_the_face_taken_from_each_photo_and_a_refusal_with_its_reason(
    console: ConsolePage, photos: list[Path], tmp_path: Path
) -> None:
    console.open("enroll")
    page = console.page
    form = page.locator("#page-enroll")
    form.get_by_label("Subject id", exact=True).fill("ann")
    form.get_by_label("Name", exact=True).fill("Ann Example")
    form.get_by_label("Collection", exact=True).fill("enrolled")
    form.get_by_label("Create the collection if it is new").check()
    form.get_by_label("Metadata (a JSON object)").fill('{"team": "blue"}')
    form.get_by_label("Photos (one to ten)").set_input_files(
        [str(photo(photos, "obama.jpg")), str(photo(photos, "obama2.jpg"))]
    )
    form.get_by_role("button", name="Enroll").click()
    page.locator("#enroll-result").wait_for(state="visible", timeout=60_000)
    captions = page.locator("#enroll-faces figcaption").all_inner_texts()
    assert len(captions) == 2 and captions[0].startswith("obama.jpg: face ")
    assert "ann in enrolled: 2 faces" in page.locator("#enroll-detail").inner_text()
    console.shot("enrolled")

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (200, 200, 200)).save(blank)
    form.get_by_label("Subject id", exact=True).fill("bo")
    form.get_by_label("Photos (one to ten)").set_input_files([str(photo(photos, "biden.jpg")), str(blank)])
    form.get_by_role("button", name="Enroll").click()
    status = page.locator("#status.error")
    status.wait_for(timeout=60_000)
    assert status.inner_text().startswith("422 no_face") and "blank.png" in status.inner_text()
    console.shot("refused")


def test_the_gallery_pages_subjects_shows_their_faces_renames_and_deletes(
    console: ConsolePage, console_server: str, photos: list[Path]
) -> None:
    for number in range(21):  # two pages of 20
        enroll(console_server, f"s{number:02d}", photo(photos, "obama.jpg"), collection="people")
    enroll(console_server, "s00", photo(photos, "obama2.jpg"), collection="people")
    console.open("gallery")
    page = console.page
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Open people").click()
    rows = page.locator("#subjects tbody tr")
    page.wait_for_function("() => document.querySelectorAll('#subjects tbody tr').length === 20")
    assert page.locator("#subjects-range").inner_text() == "1-20 of 21"
    page.get_by_role("button", name="Next page").click()
    page.wait_for_function("() => document.querySelector('#subjects-range').textContent === '21-21 of 21'")
    assert rows.count() == 1
    console.shot("subjects")

    page.get_by_label("Search by id or name").fill("S00")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function("() => document.querySelector('#subjects-range').textContent === '1-1 of 1'")
    page.get_by_role("button", name="s00", exact=True).click()
    faces = page.locator("#subject-faces img")
    faces.first.wait_for(timeout=30_000)
    assert faces.count() == 2 and faces.first.evaluate("i => i.naturalWidth") > 0  # the kept thumbnails
    console.shot("subject")
    page.get_by_label("Subject's name").fill("First Subject")
    page.get_by_role("button", name="Save the name").click()
    page.locator("#subject-facts").get_by_text("First Subject").wait_for(timeout=30_000)

    page.locator("#subject-faces").get_by_role("button").first.click()  # delete a face, confirmed
    page.wait_for_function("() => document.querySelectorAll('#subject-faces img').length === 1")
    page.get_by_role("button", name="Delete this subject").click()
    page.locator("#subject-panel").wait_for(state="hidden", timeout=30_000)
    assert page.locator("#status").inner_text().startswith("s00 deleted, with 1 faces")
    page.get_by_label("Search by id or name").fill("")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_function("() => document.querySelector('#subjects-range').textContent === '1-20 of 20'")
