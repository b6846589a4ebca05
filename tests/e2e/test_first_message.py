"""The first moments of a new chat: what is typed at once is kept and answered.

Chainlit swaps the welcome screen for the chat layout when the first message arrives,
and a message sent at start would clear the composer and hide the starters; the app
sends nothing at start. A message sent before on_chat_start has finished waits for it
instead of being dropped.
"""

from __future__ import annotations

import re

import pytest

from chatpage import ASSISTANT, RESULT, USER, wait_reply
from e2e_server import VIEWPORT

pytestmark = pytest.mark.e2e


def _fresh_page(browser, server):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(server + "/", timeout=30_000)
    return page


def test_text_typed_as_soon_as_the_composer_appears_is_kept_and_answered(browser, server):
    page = _fresh_page(browser, server)
    try:
        page.wait_for_selector("#chat-input", timeout=30_000)
        page.fill("#chat-input", "a lighthouse at dusk")  # at once, while the chat opens
        page.wait_for_timeout(3_000)
        assert page.input_value("#chat-input") == "a lighthouse at dusk"
        assert page.locator(ASSISTANT).count() == 0  # nothing replaced the welcome screen
        assert page.locator("#starters").is_visible()
        page.wait_for_selector("#chat-submit:enabled", timeout=20_000)
        page.click("#chat-submit")
        text = wait_reply(page, 1)
        assert re.search(r"#1 · generated", text), text
        assert "a lighthouse at dusk" in page.locator(USER).first.inner_text()
    finally:
        page.context.close()


def test_a_message_sent_the_moment_the_socket_is_up_is_answered(browser, server):
    page = _fresh_page(browser, server)
    try:
        page.wait_for_selector("#chat-input", timeout=30_000)
        page.fill("#chat-input", "a red kite over a field")
        # Send the instant the button allows it: possibly before on_chat_start is done.
        page.wait_for_selector("#chat-submit:enabled", timeout=20_000, state="attached")
        page.click("#chat-submit", timeout=20_000)
        text = wait_reply(page, 1, RESULT)
        assert re.search(r"#1 · generated", text), text
    finally:
        page.context.close()


def test_a_starter_runs_an_edit_of_the_sample_photo(browser, server):
    page = _fresh_page(browser, server)
    try:
        page.get_by_text("Edit a sample photo").click(timeout=30_000)
        text = wait_reply(page, 1)
        assert re.search(r"#2 · edit of #1 · .*seed \d+", text), text
        assert "Edited your new photo (#1)." in text, text
    finally:
        page.context.close()
