"""The buttons under a result do what the typed commands do."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from chatpage import ASSISTANT, ask, assistant_count, wait_reply

pytestmark = pytest.mark.e2e


def _result_message(page, number: int):
    """The assistant message that shows result #number."""
    return page.locator(ASSISTANT).filter(has_text=re.compile(rf"#{number} · "))


def _click(page, number: int, label: str) -> int:
    before = assistant_count(page)
    _result_message(page, number).first.get_by_role("button", name=label).click()
    return before


def test_buttons_under_a_result(page, tmp_path):
    ask(page, "generate a lighthouse", expect=r"#1 · generated")
    ask(page, "add fog", expect=r"#2 · edit of #1")
    ask(page, "add a boat", expect=r"#3 · edit of #2")

    # Branch from here, under #2: the head moves there and the next edit branches.
    before = _click(page, 2, "Branch from here")
    wait_reply(page, before + 1, r"Now at #2")
    ask(page, "make it night", expect=r"#4 · edit of #2")

    # Undo under #3 (not the head): back to #3's parent.
    before = _click(page, 3, "Undo")
    wait_reply(page, before + 1, r"Back to #2")

    # Variations under #4: the conversation's number of variations (3), siblings of #4.
    before = _click(page, 4, "Variations")
    text = wait_reply(page, before + 3, r"#7 · variation of #2")
    assert re.search(r"variation of #2", text)

    # Export under #3: a PNG of #3 comes down.
    before = _click(page, 3, "Export")
    wait_reply(page, before + 1, r"Here is .*-3\.png")
    link = page.locator(ASSISTANT).nth(before).locator("a.inline-file[download]").first
    with page.expect_download(timeout=30_000) as dl:
        link.click()
    path = tmp_path / "three.png"
    dl.value.save_as(path)
    assert Image.open(path).format == "PNG"


def test_an_ambiguous_message_asks_and_the_buttons_answer(page):
    ask(page, "generate a lighthouse", expect=r"#1 · generated")
    ask(page, "add rain", expect=r"#2 · edit of #1")
    text = ask(page, "undo the rain", expect=r"Do you mean")
    assert "back to #1" in text
    question = page.locator(ASSISTANT).nth(assistant_count(page) - 1)
    # The edit reading: the same words go to the model.
    n = assistant_count(page) + 1
    question.get_by_role("button", name=re.compile("^Edit:")).click()
    assert re.search(r"#3 · edit of #2", wait_reply(page, n))
    # The move reading, from the same question: a step back from the current image.
    n = assistant_count(page) + 1
    question.get_by_role("button", name=re.compile("^Step back")).click()
    assert "Back to #2" in wait_reply(page, n, r"Back to #\d+")


def test_two_requests_in_one_message_both_happen(page):
    ask(page, "generate a lighthouse", expect=r"#1 · generated")
    ask(page, "add rain", expect=r"#2 · edit of #1")
    n = assistant_count(page)
    page_text = ask(page, "undo that and make it blue instead", expect=r"#3 · edit of #1", replies=2)
    first = page.locator(ASSISTANT).nth(n).inner_text()
    assert first.startswith("1 of 2 · Back to #1"), first
    assert re.search(r"#3 · edit of #1", page_text)


def test_draft_mode_then_render_in_full_quality(page):
    page.click("#chat-settings-open-modal")
    switch = page.locator("#draft")
    switch.wait_for(timeout=10_000)
    switch.click()
    page.get_by_role("button", name=re.compile("confirm|save", re.I)).click()
    switch.wait_for(state="detached", timeout=10_000)
    text = ask(page, "generate a lighthouse", expect=r"#1 · generated")
    assert "draft" in text, text
    before = _click(page, 1, "Render in full quality")
    text = wait_reply(page, before + 1)
    assert re.search(r"#2 · generated · final of #1", text), text
