"""The chat's own cost per turn, and its memory over many turns, on a fixed-latency backend.

Owns two figures of issue 9, printed (and quoted in the README):
- the work outside the backend call for a whole turn: routing the words, the job rows,
  decoding Picture 1 from the blob store, the backend call itself (a fake that sleeps
  a fixed time and returns a 1 MP picture), PNG encoding, the blob write, the node
  and head commit; in ms and as a share of the turn. Goal: at most 30 ms.
- resident memory over 200 turns, as a slope (MB per 100 turns) after a warm-up.
  Goal: flat, at most +50 MB over the 200.
Chainlit's rendering is not in it (it needs a browser session); the e2e tests cover it.

Run: .venv/bin/python bench/turns.py [--turns 200] [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from PIL import Image  # noqa: E402

from assistant.queue import JobQueue  # noqa: E402
from assistant.router import route  # noqa: E402
from assistant.service import BackendPool, ChatService  # noqa: E402
from pipelines import Capabilities, Result  # noqa: E402
from sessions import Store  # noqa: E402

MB = 1_000_000


class FixedLatencyBackend:
    """Sleeps ``latency`` seconds, then returns a photo (shifted per seed) at Picture 1's size."""

    name = "fixed"
    capabilities = Capabilities()

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls: list[float] = []
        # A real photo, not noise: PNG encoding costs depend on the content.
        photo = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "chelsea.png"
        self.noise = np.asarray(Image.open(photo).convert("RGB").resize((1024, 1024), Image.LANCZOS))

    def _result(self, size, seed):
        started = time.perf_counter()
        time.sleep(self.latency)
        image = Image.fromarray(np.roll(self.noise, (seed or 0) % 97, axis=1)).resize(size)
        self.calls.append(time.perf_counter() - started)
        return Result(image, seed or 1, 4, self.latency, {"backend": "fixed", "model": "fixed"})

    def edit(self, request, *, progress=None, cancel=None):
        return self._result(request.images[0].size, request.seed)

    def generate(self, request, *, progress=None, cancel=None):
        return self._result((request.width or 1024, request.height or 1024), request.seed)


def one_turn(service, conv, text: str) -> float:
    started = time.perf_counter()
    head = service.store.head(conv)
    intent = route(text, has_image=head is not None, attachments=0)
    out = service.apply(conv, intent)
    for run in out.runs:
        run.wait(60)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    backend = FixedLatencyBackend(args.latency_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(database_url=f"sqlite:///{tmp}/bench.db", blob_dir=Path(tmp) / "blobs")
        queue = JobQueue(workers=1)
        service = ChatService(store, BackendPool("fixed", lambda n, m: backend), queue)
        conv = store.create_conversation(owner="bench").id
        photo = Image.fromarray(backend.noise)
        store.add_node(conv, photo, kind="upload", instruction="photo.png")
        proc = psutil.Process()
        words = ["add a lamp", "add rain", "make the sky pink", "add a boat", "undo"]
        for i in range(10):  # warm-up: imports, caches, the first PNG encodes
            one_turn(service, conv, words[i % 4])
        backend.calls.clear()
        overheads, rss = [], []
        for i in range(args.turns):
            text = words[i % 4]
            total = one_turn(service, conv, text)
            overheads.append(total - backend.calls[-1])
            if i % 10 == 0:
                rss.append((i, proc.memory_info().rss))
        queue.shutdown()
        nodes = len(store.nodes(conv))
        store.close()
    median_ms = statistics.median(overheads) * 1000
    p95_ms = sorted(overheads)[int(0.95 * len(overheads))] * 1000
    turn_ms = median_ms + args.latency_ms
    xs = np.array([i for i, _ in rss], dtype=float)
    ys = np.array([r for _, r in rss], dtype=float) / MB
    slope = float(np.polyfit(xs, ys, 1)[0]) * 100
    growth = ys[-1] - ys[0]
    print(f"{args.turns} edit turns of a 1024x1024 picture on a backend of {args.latency_ms:.0f} ms "
          f"({nodes} nodes at the end)")
    print(f"work outside the backend call: median {median_ms:.1f} ms, p95 {p95_ms:.1f} ms, "
          f"{median_ms / turn_ms:.1%} of a {turn_ms:.0f} ms turn (goal: at most 30 ms)")
    print(f"resident memory: {ys[0]:.0f} MB -> {ys[-1]:.0f} MB over {args.turns} turns "
          f"({growth:+.1f} MB; slope {slope:+.1f} MB per 100 turns; goal: at most +50 MB)")
    print(f"goals: overhead {'PASS' if median_ms <= 30 else 'FAIL'}, memory {'PASS' if growth <= 50 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
