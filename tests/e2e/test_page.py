"""The page is ours, not Chainlit's sample: logo, accent, favicon, avatar, footer, readme, head.

The images are drawn by tools/make_brand.py into public/; Chainlit serves them at
/logo?theme=light|dark, /favicon and /avatars/<author>; public/theme.json sets the
accent colour. The footer line is the `chat.watermark` key of
.chainlit/translations/*.json; the readme panel is chainlit.md.

Each test opens its own page (no assistant message is awaited: only the composer)
and waits for elements, never for the network to go idle. Only the footer test
sends a message ("/help"): Chainlit shows the footer once a thread has one.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

import pytest
from e2e_server import ROOT, VIEWPORT
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

PUBLIC = ROOT / "public"
FOOTER = "Every image is kept: undo, go back to any #, or branch. Nothing is lost."
CHAINLIT_FOOTER = "LLMs can make mistakes"
WAIT_MS = 20_000


def _get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(), r.headers.get("content-type", "")


def _open(browser, server: str, theme: str = "dark"):
    """A fresh, signed-in page in ``theme``, its socket connected.

    Chainlit 2.12 starts in the config's default_theme (dark unless set), or in the
    one the user picked, which it keeps in localStorage under "vite-ui-theme".
    Signing in locally goes /, /login, /, and sometimes round once more (Chainlit's
    sign-in races its first /user answer), and the composer can show in between; the
    attach button is "#upload-button" only once the socket is up, which happens
    after the last round.
    """
    ctx = browser.new_context(viewport=VIEWPORT, locale="en-US")
    ctx.add_init_script(f"localStorage.setItem('vite-ui-theme', '{theme}')")
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    page.goto(server + "/", timeout=30_000)
    page.wait_for_selector("#chat-input", timeout=30_000)
    page.wait_for_selector("#upload-button", timeout=30_000)
    return page


def _plain(markdown_line: str) -> str:
    """A chainlit.md line as the page shows it: no heading mark, list number or bold."""
    text = re.sub(r"^(#+\s+|\d+\.\s+|[-*]\s+)", "", markdown_line.strip())
    return " ".join(text.replace("**", "").split())


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_logo_is_ours_in_both_themes(browser, server, theme):
    ours = (PUBLIC / f"logo_{theme}.png").read_bytes()
    body, ctype = _get(f"{server}/logo?theme={theme}")
    assert body == ours and ctype == "image/png"

    # The welcome screen (shown until the thread's first message) has this theme's logo.
    page = _open(browser, server, theme)
    try:
        assert page.get_attribute("html", "class") == theme
        # public/theme.json sets the accent (send button, focus ring) to the logo's violet.
        accent = json.loads((PUBLIC / "theme.json").read_text())["variables"][theme]["--primary"]
        assert page.evaluate(
            "() => getComputedStyle(document.documentElement).getPropertyValue('--primary').trim()"
        ) == accent
        logo = page.locator("#welcome-screen img.logo")
        logo.wait_for(timeout=WAIT_MS)
        src = logo.get_attribute("src")
        assert urllib.parse.urlparse(src).path == "/logo", src
        assert urllib.parse.parse_qs(urllib.parse.urlparse(src).query)["theme"] == [theme], src
        page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=logo.element_handle(),
                               timeout=WAIT_MS)
        assert page.request.get(urllib.parse.urljoin(server + "/", src)).body() == ours
    finally:
        page.context.close()


def test_favicon_and_avatar_are_ours(browser, server):
    favicon, ctype = _get(server + "/favicon")
    assert favicon == (PUBLIC / "favicon.png").read_bytes() and ctype == "image/png"
    # The assistant's messages are by the config's name; "default" means that name too.
    avatar = (PUBLIC / "avatars" / "qwen_edit_chat.png").read_bytes()
    for author in ("Qwen Edit Chat", "default"):
        body, ctype = _get(f"{server}/avatars/{urllib.parse.quote(author)}")
        assert body == avatar and ctype == "image/png", author
    # Any other author falls back to the favicon.
    assert _get(server + "/avatars/someone")[0] == favicon

    page = _open(browser, server)
    try:
        assert page.get_attribute('link[rel="icon"]', "href") == "/favicon"
    finally:
        page.context.close()


def test_head_has_no_chainlit_sample_branding(browser, server):
    page = _open(browser, server)
    try:
        expect(page).to_have_title("Qwen Edit Chat", timeout=WAIT_MS)
        description = page.get_attribute('meta[name="description"]', "content")
        assert description and "image" in description
        for prop in ("og:url", "og:image", "og:description"):
            content = page.get_attribute(f'meta[property="{prop}"]', "content") or ""
            assert "chainlit" not in content.lower(), (prop, content)
        assert page.get_attribute('meta[property="og:image"]', "content") == "/public/logo_light.png"
        assert _get(server + "/public/logo_light.png")[0] == (PUBLIC / "logo_light.png").read_bytes()
    finally:
        page.context.close()


def test_footer_line_is_ours(browser, server):
    page = _open(browser, server)
    try:
        # Chainlit shows the footer under the composer once the thread has a message.
        page.fill("#chat-input", "/help")
        page.wait_for_selector("#chat-submit:enabled", timeout=WAIT_MS)
        page.click("#chat-submit")
        footer = page.locator(".watermark")
        footer.wait_for(timeout=WAIT_MS)
        assert " ".join(footer.inner_text().split()) == FOOTER
        assert CHAINLIT_FOOTER not in page.locator("body").inner_text()
    finally:
        page.context.close()


def test_readme_panel_shows_chainlit_md(browser, server):
    lines = [_plain(line) for line in (ROOT / "chainlit.md").read_text().splitlines() if line.strip()]
    assert lines[0] == "Qwen Edit Chat" and len(lines) == 6
    page = _open(browser, server)
    try:
        page.click("#readme-button")
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("/help lists everything").wait_for(timeout=WAIT_MS)
        shown = " ".join(dialog.inner_text().split())
        for line in lines:
            assert line in shown, f"{line!r} is not in the readme panel: {shown!r}"
    finally:
        page.context.close()
