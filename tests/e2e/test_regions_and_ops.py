"""Painted regions and exact operations, in Chromium against the real server.

The brush: paint over the current image, say what to change there, and everything
outside stays exactly as it was (checked on the stored images' pixels). Exact
operations: "rotate it 90 degrees" and "make it black and white" answer at once with
an "exact" result, and undo steps back over them like any other image.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chatpage import ASSISTANT, ask, assistant_count, wait_reply

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _image(page, src: str) -> np.ndarray:
    if src.startswith("/"):
        src = page.url.split("/", 3)[:3] and "/".join(page.url.split("/", 3)[:3]) + src
    r = page.context.request.get(src)
    assert r.status == 200, src
    return np.asarray(Image.open(io.BytesIO(r.body())).convert("RGB"))


def test_paint_a_region_then_only_it_changes(page, server):
    ask(page, files=[FIXTURES / "coffee.png"], expect=r"Uploaded as #1")
    n = assistant_count(page) + 1
    page.locator(ASSISTANT).nth(n - 2).get_by_role("button", name="Paint a region").click()
    wait_reply(page, n, r"Paint over")
    brush = page.locator('[data-testid="region-brush"]').last
    canvas = brush.locator('[data-testid="region-canvas"]')
    canvas.wait_for(timeout=20_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    # A stroke across the upper left: from 10% to 35% of the width, at 20% of the height.
    page.mouse.move(box["x"] + 0.10 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(box["x"] + (0.10 + 0.025 * i) * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.up()
    brush.get_by_label("Instruction for the painted region").fill("make it red")
    SHOTS.mkdir(parents=True, exist_ok=True)
    brush.screenshot(path=str(SHOTS / "brush.png"))
    n = assistant_count(page) + 1
    brush.get_by_role("button", name="Use this region").click()
    text = wait_reply(page, n)
    assert re.search(r"#2 · edit of #1 · painted region only", text), text
    src = page.locator(ASSISTANT).nth(n - 1).locator("img.inline-image").first.get_attribute("src")
    after = _image(page, src)
    before = _image(page, src.replace("/2.png", "/1.png"))
    assert after.shape == before.shape
    h, w = before.shape[:2]
    # Far from the stroke (the lower right half) every pixel is the input's, exactly.
    assert np.array_equal(after[h // 2:, w // 2:], before[h // 2:, w // 2:])
    # Under the stroke, the tiny model's noise: changed.
    y = int(0.2 * h)
    assert np.abs(after[y, int(0.2 * w):int(0.3 * w)].astype(int) - before[y, int(0.2 * w):int(0.3 * w)]).mean() > 10


def test_exact_operations_answer_at_once(page):
    ask(page, files=[FIXTURES / "chelsea.png"], expect=r"Uploaded as #1")  # 451x300
    text = ask(page, "rotate it 90 degrees", expect=r"#2 · ")
    assert re.search(r"#2 · rotated 90° clockwise of #1 · exact", text), text
    src = page.locator(ASSISTANT).last.locator("img.inline-image").first.get_attribute("src")
    assert _image(page, src).shape[:2] == (451, 300)
    text = ask(page, "make it black and white", expect=r"#3 · ")
    assert "exact" in text, text
    gray = _image(page, page.locator(ASSISTANT).last.locator("img.inline-image").first.get_attribute("src"))
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert "Back to #2" in ask(page, "undo", expect=r"Back to #\d+")
    text = ask(page, "rotate the cat's head a little", expect=r"#4 · edit of #2")  # a part: the model
    assert "exact" not in text
