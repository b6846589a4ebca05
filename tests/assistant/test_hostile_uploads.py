"""The hostile-upload corpus (tests/support/hostile_corpus.py, 200+ files) through the
upload checker: no crash, every refusal with a message, every kept picture upright RGB
within the limits, truncated files refused. Prints the counts."""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from hostile_corpus import corpus  # noqa: E402

from assistant.uploads import MAX_PIXELS, UploadError, load_upload  # noqa: E402


def outcome(name: str, data: bytes):
    try:
        return "accepted", load_upload(data, name)
    except UploadError as e:
        assert name in str(e) and "PNG, JPEG or WebP" in str(e), str(e)  # says what to send
        return "refused", None


def test_the_hostile_corpus(capsys):
    items = corpus()
    assert len(items) >= 200
    counts, wrong = collections.Counter(), []
    for name, data, expect in items:
        try:
            got, img = outcome(name, data)
        except Exception as e:  # anything but UploadError is a crash
            wrong.append(f"{name}: crashed with {type(e).__name__}: {e}")
            counts["crashed"] += 1
            continue
        counts[f"{expect} -> {got}"] += 1
        if expect == "accept" and got != "accepted":
            wrong.append(f"{name}: refused, should be kept")
        if expect == "refuse" and got != "refused":
            wrong.append(f"{name}: kept, should be refused")
        if img is not None:
            if img.mode != "RGB" or img.width * img.height > MAX_PIXELS:
                wrong.append(f"{name}: kept as {img.mode} {img.size}")
            if name.startswith("orientation-"):
                n = int(name.split("-")[1].split(".")[0])
                upright = (30, 40) if n >= 5 else (40, 30)  # 5-8 turn the picture a quarter
                if img.size != upright:
                    wrong.append(f"{name}: {img.size}, upright is {upright}")
    with capsys.disabled():
        print(f"\nhostile corpus: {len(items)} files: " +
              ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    assert not wrong, "\n".join(wrong)
