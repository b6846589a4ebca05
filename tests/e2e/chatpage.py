"""Driving the Chainlit 2.12 chat page: send a message, wait for the reply, read it.

Selectors are the ones DESIGN.md lists. An exception in a handler shows nothing in
the page, so every helper here waits for something to appear, with a bound, and a
timeout fails with every assistant message's text to show what the page said.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

ASSISTANT = '.step[data-step-type="assistant_message"]'
USER = '.step[data-step-type="user_message"]'
# What a finished job message says: "#4 · edit of #3 · seed 1234 · 0.3 s".
RESULT = r"#\d+ · .*seed \d+"
JOB_TIMEOUT_MS = 90_000

# Remembers every progress line any assistant message showed, however briefly: tiny
# runs are fast, and the progress line is replaced in place by the result.
_WATCH_PROGRESS = """
() => {
  if (window.__qecProgress) return;
  window.__qecProgress = [];
  const seen = new Set();
  const look = () => {
    for (const el of document.querySelectorAll('.step[data-step-type="assistant_message"]')) {
      const t = el.innerText || "";
      const m = t.match(/[^\\n]*step \\d+\\/\\d+[^\\n]*/);
      if (m && !seen.has(m[0])) { seen.add(m[0]); window.__qecProgress.push(m[0]); }
    }
  };
  new MutationObserver(look).observe(document.body,
    {subtree: true, childList: true, characterData: true});
}
"""


def watch_progress(page) -> None:
    page.evaluate(_WATCH_PROGRESS)


def progress_seen(page) -> list[str]:
    return page.evaluate("() => window.__qecProgress || []")


def assistant_texts(page) -> list[str]:
    return page.locator(ASSISTANT).all_inner_texts()


def assistant_count(page) -> int:
    return page.locator(ASSISTANT).count()


def send(page, text: str = "", files: Sequence[Path | str] = (), *, timeout_ms: int = 30_000) -> None:
    """Type ``text``, attach ``files``, and press send once the composer allows it."""
    users = page.locator(USER).count()
    if files:
        page.set_input_files("#upload-button-input", [str(f) for f in files])
        for f in files:  # each pending file shows as a thumbnail named after it
            page.locator(f'#attachments img[alt="{Path(f).name}"]').wait_for(
                state="attached", timeout=timeout_ms)
    if text:
        page.fill("#chat-input", text)
    # Disabled until the socket is up, while a run goes on and while files upload.
    page.wait_for_selector("#chat-submit:enabled", timeout=timeout_ms)
    page.click("#chat-submit")
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length > n", arg=[USER, users],
        timeout=timeout_ms)


def wait_reply(page, n: int, expect: str = RESULT, *, timeout_ms: int = JOB_TIMEOUT_MS,
               polling="raf") -> str:
    """Wait until there are ``n`` assistant messages and the n-th matches ``expect``.

    ``expect`` is a regular expression (searched, case-sensitive); the default is the
    line of a finished image job. Returns the n-th message's text.
    """
    try:
        page.wait_for_function(
            """([sel, n, pattern]) => {
                 const all = document.querySelectorAll(sel);
                 return all.length >= n && new RegExp(pattern).test(all[n - 1].innerText || "");
               }""",
            arg=[ASSISTANT, n, expect], timeout=timeout_ms, polling=polling)
    except Exception as e:  # a timeout: say what the page showed instead
        texts = assistant_texts(page)
        shown = "\n".join(f"  [{i + 1}] {t!r}" for i, t in enumerate(texts))
        raise AssertionError(f"no assistant message #{n} matching {expect!r} within "
                             f"{timeout_ms / 1000:.0f} s ({type(e).__name__}); the page shows:\n"
                             f"{shown}") from None
    return page.locator(ASSISTANT).nth(n - 1).inner_text()


def ask(page, text: str = "", files: Sequence[Path | str] = (), expect: str = RESULT,
        replies: int = 1, **kw) -> str:
    """Send, then wait for ``replies`` new assistant messages, the last matching ``expect``."""
    n = assistant_count(page) + replies
    send(page, text, files)
    return wait_reply(page, n, expect, **kw)


def message(page, n: int):
    """The n-th assistant message (1-based) as a locator."""
    return page.locator(ASSISTANT).nth(n - 1)


def image_loaded(locator, *, timeout_ms: int = 20_000) -> int:
    """Wait until an <img> has decoded; returns its natural width."""
    locator.wait_for(state="attached", timeout=timeout_ms)
    locator.scroll_into_view_if_needed(timeout=timeout_ms)  # inline images load lazily
    locator.page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                   arg=locator.element_handle(), timeout=timeout_ms)
    return locator.evaluate("img => img.naturalWidth")


def scroll_to_top(locator) -> None:
    """Scroll the message list so ``locator`` starts at the top of it."""
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")
