"""The walk from the issue, in Chromium against the real server on the tiny model.

One conversation goes: the welcome page, generate, a portrait sent with words (the
portrait is edited), a hat photo whose words make it a reference (the current image is
edited) and the button that flips that reading, undo, redo, go back, branch,
variations, the history tree, the before/after slider, and both exports. Then two fresh conversations: stopping a running job, and a bad
upload. Each step checks what the page shows, not what the server thinks. The walk
also takes the README's screenshots (docs/screenshots/).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from chatpage import (
    ASSISTANT,
    RESULT,
    USER,
    ask,
    assistant_count,
    assistant_texts,
    image_loaded,
    message,
    scroll_to_top,
    progress_seen,
    send,
    wait_reply,
    watch_progress,
)
ROOT = Path(__file__).resolve().parents[2]

FIXTURES = ROOT / "tests" / "fixtures"
SHOTS = ROOT / "docs" / "screenshots"

pytestmark = pytest.mark.e2e


def _shot(page, name: str, top, bottom=None) -> None:
    """A screenshot of the page with ``top`` scrolled to the top of the message list.

    With ``bottom``, the viewport is made just tall enough (for this one shot) to show
    everything from ``top`` down to ``bottom``: Chainlit scrolls its message list in a
    panel, so Playwright's full_page would not show more than the viewport.
    """
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    if bottom is not None:
        height = bottom.bounding_box()["y"] + bottom.bounding_box()["height"] - top.bounding_box()["y"]
        page.set_viewport_size({"width": size["width"], "height": min(2400, int(height) + 240)})
    try:
        scroll_to_top(top)
        page.wait_for_timeout(400)  # let the scroll settle and images paint
        page.screenshot(path=str(SHOTS / name), animations="disabled")
    finally:
        page.set_viewport_size(size)


def _result_image(msg) -> int:
    """The result image of a job message has loaded; returns its natural width."""
    return image_loaded(msg.locator("img.inline-image").first)


def test_the_walk(page):
    watch_progress(page)

    # -- the welcome page: ours, with starters (nothing replaces it before the first message)
    page.locator("#starters").wait_for(timeout=20_000)
    page.get_by_text("Edit a sample photo").wait_for(timeout=20_000)
    page.wait_for_timeout(500)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "welcome.png"), animations="disabled")

    # -- a prompt becomes image #1, with live progress on the way (and the notice, here)
    text = ask(page, "generate a red fox sitting in fresh snow")
    assert re.search(r"#1 · generated · seed \d+", text), text
    assert "tiny test model" in text, text
    assert any(re.search(r"step \d+/\d+", line) for line in progress_seen(page)), \
        f"no progress line was ever shown; saw {progress_seen(page)}"
    assert _result_image(message(page, assistant_count(page))) > 0

    # -- a portrait sent with words, while the fox is current: the portrait is edited
    text = ask(page, "make the background darker and add rain", files=[FIXTURES / "astronaut.png"])
    assert re.search(r"#3 · edit of #2 · .*seed \d+", text), text
    assert "with #" not in text and "Edited your new photo (#2)." in text, text
    upload = page.locator(USER).nth(page.locator(USER).count() - 1)  # pinned, not lazy
    edit3 = message(page, assistant_count(page))
    assert _result_image(edit3) > 0
    _shot(page, "conversation.png", upload, edit3.locator('[data-testid="before-after"]'))

    # -- a hat photo whose words point at it: a reference for an edit of the current #3
    text = ask(page, "put the hat from this picture on the person", files=[FIXTURES / "hat.png"])
    assert re.search(r"#5 · edit of #3 · with #4 · .*seed \d+", text), text
    assert "Edited #3 using your photo #4 as a reference." in text, text
    hat_msg = message(page, assistant_count(page))
    assert _result_image(hat_msg) > 0
    _shot(page, "reference.png", page.locator(USER).nth(page.locator(USER).count() - 1), hat_msg)

    # -- the switch button reads it the other way and runs again: the hat photo is edited
    n = assistant_count(page) + 1
    hat_msg.get_by_role("button", name="Edit the new photo instead").click()
    text = wait_reply(page, n)
    assert re.search(r"#6 · edit of #4 · .*seed \d+", text) and "with #" not in text, text
    assert "Edited your new photo (#4)." in text, text
    assert hat_msg.get_by_role("button", name="Edit the new photo instead").count() == 1  # #5 stays

    # -- undo, redo, go back
    assert "Back to #4" in ask(page, "undo", expect=r"Back to #\d+")
    assert "Forward to #6" in ask(page, "redo", expect=r"Forward to #\d+")
    assert "Now at #2" in ask(page, "go back to #2", expect=r"Now at #\d+")

    # -- a branch from #3
    text = ask(page, "branch from #3 and make it night")
    assert re.search(r"#7 · edit of #3 · .*seed \d+", text), text

    # -- two variations: two more results, each "variation of" the branch's source
    before = assistant_count(page)
    send(page, "give me 2 variations")
    wait_reply(page, before + 1)
    wait_reply(page, before + 2)
    variations = assistant_texts(page)[before:before + 2]
    got = sorted(int(re.search(r"#(\d+) · variation of #3", t).group(1)) for t in variations)
    assert got == [8, 9], variations

    # -- the history tree; clicking a node makes it current
    n = assistant_count(page) + 1
    send(page, "/history")
    wait_reply(page, n, r"The history: 9 images")
    tree = message(page, n).locator('[data-testid="history-tree"]')
    tree.wait_for(timeout=20_000)
    nodes = tree.locator("button[data-node]")
    assert sorted(int(b) for b in nodes.evaluate_all("bs => bs.map(b => b.dataset.node)")) \
        == list(range(1, 10))
    for thumb in tree.locator("img").all():
        image_loaded(thumb)
    _shot(page, "history.png", message(page, n))
    n = assistant_count(page) + 1
    tree.locator('button[data-node="3"]').click()
    assert "Now at #3" in wait_reply(page, n, r"Now at #\d+")

    # -- before/after on the edit #3: moving the handle moves the clip
    scroll_to_top(edit3)
    ba = edit3.locator('[data-testid="before-after"]')
    ba.wait_for(timeout=20_000)
    for img in ba.locator("img").all():
        image_loaded(img)
    after = ba.locator("img").nth(1)
    clip = lambda: after.evaluate("img => img.style.clipPath")  # noqa: E731
    assert "50%" in clip()
    slider = ba.locator('input[type="range"]')
    slider.fill("20")
    page.wait_for_function("img => img.style.clipPath.includes('20%')", arg=after.element_handle(),
                           timeout=5_000)
    slider.focus()
    page.keyboard.press("End")
    page.wait_for_function("img => img.style.clipPath.includes('100%')", arg=after.element_handle(),
                           timeout=5_000)
    slider.fill("35")
    page.wait_for_function("img => img.style.clipPath.includes('35%')", arg=after.element_handle(),
                           timeout=5_000)
    _shot(page, "before-after.png", edit3, ba)

    # -- export the current image (#3) as PNG: its recipe rides in a text chunk
    n = assistant_count(page) + 1
    send(page, "export as png")
    wait_reply(page, n, r"Here is .*\.png")
    link = message(page, n).locator("a.inline-file[download]").first
    with page.expect_download(timeout=20_000) as dl:
        link.click()
    png = Path(dl.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(png))
    recipe = img.text.get("qwen-edit-chat:recipe")
    assert recipe, f"no recipe chunk; text chunks: {list(img.text)}"
    assert "make the background darker" in recipe

    # -- the whole history as a zip with recipe.json
    n = assistant_count(page) + 1
    send(page, "save the whole history")
    wait_reply(page, n, r"Here is .*\.zip")
    link = message(page, n).locator("a.inline-file[download]").first
    with page.expect_download(timeout=20_000) as dl:
        link.click()
    with zipfile.ZipFile(dl.value.path()) as zf:
        names = zf.namelist()
        assert "recipe.json" in names, names
        data = json.loads(zf.read("recipe.json"))
        pngs = [x for x in names if x.startswith("images/") and x.endswith(".png")]
    assert sorted(nd["number"] for nd in data["nodes"]) == list(range(1, 10)), data["nodes"]
    assert len(pngs) == 9, names
    assert data["conversation"]["head"] == 3


def _set_steps(page, steps: int) -> None:
    """Settings panel: the steps slider to ``steps`` (keyboard on the slider thumb)."""
    page.click("#chat-settings-open-modal")
    thumb = page.locator('#steps [role="slider"]')
    thumb.wait_for(timeout=10_000)
    thumb.focus()
    page.keyboard.press("Home")
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
    assert thumb.get_attribute("aria-valuenow") == str(steps)
    page.get_by_role("button", name=re.compile("confirm|save", re.I)).click()
    page.locator('#steps [role="slider"]').wait_for(state="detached", timeout=10_000)


def test_stop_a_running_job(page):
    text = ask(page, "generate a small house")
    assert re.search(r"#1 · generated", text), text

    _set_steps(page, 60)  # slow enough to catch while it runs
    before = assistant_count(page)
    send(page, "generate a big castle")
    # Stop it while it runs (not merely queued): once a step of 60 has been shown.
    wait_reply(page, before + 1, r"step \d+/60", timeout_ms=60_000)
    # A DOM click at once: Playwright's click waits for the button to hold still, and
    # it re-renders with every progress update, which can outlast the whole run.
    # The button is re-rendered with every progress update, so under load a click can land
    # on one being replaced: click again, as a user would, up to three times.
    stopped = ("([sel, n]) => [...document.querySelectorAll(sel)].slice(n)"
               ".some(m => /big castle|Generating/.test(m.innerText) && /stopp(ed|ing)\\. Nothing/.test(m.innerText))")
    for attempt in range(3):
        if page.locator("#stop-button").count():
            page.locator("#stop-button").dispatch_event("click", timeout=10_000)
        try:
            page.wait_for_function(stopped, arg=[ASSISTANT, before], timeout=15_000)
            break
        except Exception:
            if attempt == 2:
                raise AssertionError(f"no stopped message after three clicks; the page shows "
                                     f"{assistant_texts(page)[before:]}") from None
    page.locator("#stop-button").wait_for(state="detached", timeout=30_000)
    page.wait_for_timeout(1_000)  # a result that was going to show would show by now
    later = assistant_texts(page)[before:]
    assert not any(re.search(RESULT, t) for t in later), \
        f"the run finished before the stop reached it (too fast for 60 steps?): {later}"

    # The stopped job took no number: the next image is #2.
    _set_steps(page, 2)
    text = ask(page, "generate a small boat")
    assert re.search(r"#2 · generated", text), assistant_texts(page)


def test_bad_upload_is_refused_and_the_chat_goes_on(page, tmp_path, server_data):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n")
    text = ask(page, files=[fake], expect=r"not a PNG, JPEG or WebP")
    assert "fake.png" in text

    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((FIXTURES / "astronaut.png").read_bytes()[:100])
    text = ask(page, files=[truncated], expect=r"could not be read|truncated|damaged")
    # Chainlit's copies of refused files are gone at once, not left until the session ends.
    left = [p for p in (server_data / "chainlit-files").rglob("*") if p.is_file()]
    assert not any(p.read_bytes().startswith(b"%PDF") for p in left), left
    assert not any(p.read_bytes() == truncated.read_bytes() for p in left), left

    # Nothing was kept, and the next message works as usual.
    assert "No images yet" in ask(page, "/history", expect=r"No images yet")
    text = ask(page, files=[FIXTURES / "astronaut.png"], expect=r"Uploaded as #1")
    assert "#1" in text


def test_an_empty_file_is_refused_with_a_message_and_send_still_works(page, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    page.set_input_files("#upload-button-input", str(empty))
    page.get_by_text("empty.png is empty").first.wait_for(timeout=15_000)
    assert page.locator("#attachments").get_by_text("empty.png").count() == 0
    assert "/undo" in ask(page, "/help", expect=r"/undo")
