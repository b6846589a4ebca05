"""Memory under hostile images: six 36 MP PNGs of zeros (140 KB each) sent at once.

The goal (issue 9): the server's resident memory rises by at most 1.5 GB at the peak
and holds at most 500 MB once they are done. The figures are printed.
"""

from __future__ import annotations

import io
import threading
import time

import httpx
import psutil
import pytest
from PIL import Image

from api_support import API, cleanup, start_server

MB = 1_000_000
PEAK_GOAL = 1500 * MB
HELD_GOAL = 500 * MB
pytestmark = pytest.mark.timeout(300)


def zeros_png(side: int = 6000) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def rss(proc: psutil.Process) -> int:
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def test_six_pixel_bombs_at_once_stay_within_the_memory_goal(tmp_path):
    server = start_server("memory", tmp_path / "data")
    proc = psutil.Process(server.proc.pid)
    try:
        bomb = zeros_png()
        token = httpx.post(f"{server.url}{API}/token", timeout=30).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        convs = [httpx.post(f"{server.url}{API}/conversations", headers=headers, timeout=30).json()["id"]
                 for _ in range(6)]
        time.sleep(1.0)
        before = rss(proc)
        peak, stop, answers = [before], threading.Event(), []

        def sample():
            while not stop.is_set():
                peak.append(rss(proc))
                time.sleep(0.02)

        def upload(conv):
            r = httpx.post(f"{server.url}{API}/conversations/{conv}/messages", headers=headers,
                           files=[("images", ("bomb.png", bomb, "image/png"))], timeout=240)
            answers.append(r.status_code)

        sampler = threading.Thread(target=sample)
        sampler.start()
        senders = [threading.Thread(target=upload, args=(c,)) for c in convs]
        for t in senders:
            t.start()
        for t in senders:
            t.join(timeout=240)
        time.sleep(2.0)
        stop.set()
        sampler.join()
        held = rss(proc) - before
        rise = max(peak) - before
        print(f"\nsix 36 MP PNGs ({len(bomb) // 1000} KB each) at once: answers {sorted(answers)}; "
              f"RSS before {before / MB:.0f} MB, peak +{rise / MB:.0f} MB, held +{held / MB:.0f} MB")
        assert sorted(answers) == [200] * 6
        assert rise <= PEAK_GOAL, f"peak +{rise / MB:.0f} MB"
        assert held <= HELD_GOAL, f"held +{held / MB:.0f} MB"
    finally:
        cleanup(server)
