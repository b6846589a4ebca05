"""Prompt polish in the browser: the prompt sent shows under the result, folded, and
"Use my words" runs the same request again with the user's own words.

The server runs with the remote polish engine pointed at a fake OpenAI-compatible
chat server in this test process.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from chatpage import ASSISTANT, ask, assistant_count, wait_reply
from e2e_server import open_chat, running_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from fake_chat_server import FakeChatServer  # noqa: E402

pytestmark = pytest.mark.e2e
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
POLISHED = "A tall white lighthouse on a rocky coast at dusk, warm light in the lantern room, calm sea."


def test_the_sent_prompt_shows_and_use_my_words_reruns(browser, tmp_path):
    with FakeChatServer(answer={"prompt": POLISHED}) as chat:
        with running_server(tmp_path / "data", QEC_POLISH="remote", QEC_POLISH_URL=chat.url,
                            QEC_POLISH_MODEL="fake-vl") as url:
            page = open_chat(browser, url)
            try:
                text = ask(page, "a lighthouse at dusk")
                assert re.search(r"#1 · generated", text), text
                assert "went to the model polished (remote)" in text, text
                assert chat.requests and chat.requests[0]["body"]["model"] == "fake-vl"
                result = page.locator(ASSISTANT).nth(assistant_count(page) - 1)
                result.get_by_text("prompt sent").first.click()
                page.get_by_text(POLISHED).first.wait_for(timeout=20_000)
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SHOTS / "polish.png"), animations="disabled")
                n = assistant_count(page) + 1
                result.get_by_role("button", name="Use my words").click()
                again = wait_reply(page, n)
                assert re.search(r"#2 · generated", again) and "polished" not in again, again
                assert len(chat.requests) == 1  # the user's words went as they were
            finally:
                page.context.close()
