"""Conversations that survive a server restart, and users who see only their own."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from chatpage import ASSISTANT, ask, assistant_texts, image_loaded
from e2e_server import ROOT, VIEWPORT, open_chat, running_server

FIXTURES = ROOT / "tests" / "fixtures"

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-" + "x" * 40


def _thread_id(page) -> str:
    """The conversation's id, read from the URL of an image it shows."""
    src = page.locator("img.inline-image[src*='/qec/images/']").first.get_attribute("src")
    return re.search(r"/qec/images/([^/]+)/", src).group(1)


def test_conversation_survives_a_restart(browser, tmp_path):
    data = tmp_path / "data"
    with running_server(data) as url:
        page = open_chat(browser, url)
        ask(page, files=[FIXTURES / "astronaut.png"], expect=r"Uploaded as #1")
        ask(page, "make it look like night", expect=r"#2 · edit of #1")
        ask(page, "add rain", expect=r"#3 · edit of #2")
        ask(page, "undo", expect=r"Back to #2")
        ask(page, "branch from #1 and make it autumn", expect=r"#4 · edit of #1")
        thread = _thread_id(page)
        page.context.close()
    # The server process is gone; a new one starts on the same data folder.
    with running_server(data) as url:
        page = open_chat(browser, url)
        entry = page.locator(f"#thread-{thread}")
        entry.wait_for(timeout=30_000)
        entry.click()
        page.wait_for_function(
            "(sel) => [...document.querySelectorAll(sel)].some(m => /#4 · edit of #1/.test(m.innerText))",
            arg=ASSISTANT, timeout=30_000)
        for n in (1, 2, 3, 4):
            img = page.locator(f"img.inline-image[src$='/qec/images/{thread}/{n}.png']").first
            assert image_loaded(img) > 0, f"image #{n} did not load after the restart"
        # The user's own upload shows in their message too, from the blob store.
        sent = page.locator(f'.step[data-step-type="user_message"] img[src$="/qec/images/{thread}/1.png"]')
        assert image_loaded(sent.first) > 0
        texts = "\n".join(assistant_texts(page))
        for expected in ("Uploaded as #1", "#2 · edit of #1", "#3 · edit of #2", "Back to #2"):
            assert expected in texts, texts
        # The head survived too: the next edit continues from #4, the branch.
        before = page.locator(ASSISTANT).count()
        ask(page, "add snow", expect=r"#5 · edit of #4")
        assert page.locator(ASSISTANT).count() > before
        page.context.close()


def _add_user(data, name, password):
    out = subprocess.run([sys.executable, "-m", "assistant", "users", "add", name, "--password-stdin"],
                         input=password + "\n", capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={"QEC_DATA_DIR": str(data), "PATH": "/usr/bin:/bin", "HOME": str(data)})
    assert out.returncode == 0, out.stderr


def _sign_in_with_form(browser, url, name, password):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url + "/login", timeout=30_000)
    page.fill("#email", name)
    page.fill("#password", password)
    page.locator("button[type=submit]").click()
    page.wait_for_selector("#chat-input", timeout=30_000)
    page.wait_for_selector("#chat-settings-open-modal", timeout=30_000)  # the chat has opened
    return page


def test_two_users_each_see_only_their_own(browser, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _add_user(data, "ann", "ann's long password")
    _add_user(data, "bob", "bob's long password")
    with running_server(data, QEC_MODE="multi", CHAINLIT_AUTH_SECRET=SECRET) as url:
        # A wrong password is refused, by the form and by the endpoint behind it.
        probe = browser.new_context()
        assert probe.request.post(url + "/login", form={"username": "ann", "password": "nope"}).status == 401
        page = probe.new_page()
        page.goto(url + "/login", timeout=30_000)
        page.fill("#email", "ann")
        page.fill("#password", "wrong password")
        page.locator("button[type=submit]").click()
        page.wait_for_timeout(1_500)
        assert page.locator("#chat-input").count() == 0
        probe.close()

        ann = _sign_in_with_form(browser, url, "ann", "ann's long password")
        ask(ann, "a red fox in snow", expect=r"#1 · generated")
        ann_thread = _thread_id(ann)
        ann.reload()
        ann.locator(f"#thread-{ann_thread}").wait_for(timeout=30_000)

        bob = _sign_in_with_form(browser, url, "bob", "bob's long password")
        ask(bob, "a blue boat", expect=r"#1 · generated")
        bob_thread = _thread_id(bob)
        bob.reload()
        bob.locator(f"#thread-{bob_thread}").wait_for(timeout=30_000)
        assert bob.locator(f"#thread-{ann_thread}").count() == 0  # not in Bob's sidebar
        assert ann.locator(f"#thread-{bob_thread}").count() == 0

        # Bob asking for Ann's things by id, over HTTP: the answer of "no such thing".
        req = bob.context.request
        assert req.get(f"{url}/qec/images/{ann_thread}/1.png").status == 404
        assert req.get(f"{url}/api/v1/conversations/{ann_thread}").status == 404
        assert req.get(f"{url}/api/v1/conversations/{ann_thread}/nodes/1/image").status == 404
        assert req.get(f"{url}/api/v1/conversations/{ann_thread}/export?format=history").status == 404
        assert req.get(f"{url}/project/thread/{ann_thread}").status != 200
        # ... and over the socket: opening Ann's thread does not resume it for Bob.
        bob.goto(f"{url}/thread/{ann_thread}", timeout=30_000)
        bob.wait_for_timeout(3_000)
        assert not any("red fox" in t or "#1 · generated" in t for t in assistant_texts(bob))
        assert "a red fox in snow" not in bob.locator("body").inner_text()
        # Ann still has hers, with its image.
        ann.locator(f"#thread-{ann_thread}").click()
        ann.wait_for_function(
            "(sel) => [...document.querySelectorAll(sel)].some(m => /#1 · generated/.test(m.innerText))",
            arg=ASSISTANT, timeout=30_000)
        ann.context.close()
        bob.context.close()
