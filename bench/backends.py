"""Benchmark: seconds per backend call, and how much of it is outside the model.

Owns timing the tiny backend's generate, one-image edit and two-image edit (by
default at 1024x768), with one warm-up call and then the median of several runs. The
time inside the diffusers pipeline's `__call__` is measured by wrapping the pipeline
classes' `__call__`; everything else (request checks, resizing, preview and result
conversion) is "outside". Knows nothing of how the backend is built beyond its name.

The tiny backend caps its working size at about 256x256 and resizes the result, so
its figures measure the code path, not a real 1024x768 run.

Run: `.venv/bin/python bench/backends.py [--backend tiny] [--runs 5] [--size 1024x768]`
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines import EditRequest, GenerateRequest, get_backend  # noqa: E402


class PipelineClock:
    """Adds up wall time spent inside diffusers pipeline calls (outermost call only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._patched: list[tuple[type, object]] = []

    def install(self) -> None:
        import diffusers

        for name in ("QwenImageEditPlusPipeline", "QwenImagePipeline", "QwenImageEditPipeline"):
            cls = getattr(diffusers, name, None)
            if cls is not None and "__call__" in vars(cls):
                original = vars(cls)["__call__"]
                cls.__call__ = self._wrap(original)
                self._patched.append((cls, original))

    def uninstall(self) -> None:
        for cls, original in self._patched:
            cls.__call__ = original
        self._patched.clear()

    def _wrap(self, original):
        clock = self

        def timed_call(pipe, *args, **kwargs):
            clock._depth += 1
            started = time.perf_counter()
            try:
                return original(pipe, *args, **kwargs)
            finally:
                clock._depth -= 1
                if clock._depth == 0:
                    clock.seconds += time.perf_counter() - started

        return timed_call


def picture(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def measure(call, clock: PipelineClock, runs: int) -> tuple[float, float]:
    """Median seconds per call and the share of total time outside the pipeline."""
    call()  # warm-up: first-call allocations and lazy loading are not the steady state
    totals, insides = [], []
    for _ in range(runs):
        clock.seconds = 0.0
        started = time.perf_counter()
        call()
        totals.append(time.perf_counter() - started)
        insides.append(clock.seconds)
    outside = 1.0 - sum(insides) / sum(totals)
    return statistics.median(totals), outside


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tiny")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", default="1024x768")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()  # keep the table readable
    transformers.utils.logging.disable_progress_bar()
    backend = get_backend(args.backend)
    clock = PipelineClock()
    clock.install()
    first, second = picture(width, height, 1), picture(width, height, 2)
    common = dict(seed=1, steps=args.steps, width=width, height=height)
    cases = {
        f"generate {width}x{height}": lambda: backend.generate(
            GenerateRequest("a red fox in snow", **common)),
        "edit, 1 image": lambda: backend.edit(
            EditRequest("make the background darker", images=(first,), **common)),
        "edit, 2 images": lambda: backend.edit(
            EditRequest("put Picture 2 in the corner", images=(first, second), **common)),
    }
    print(f"backend {args.backend}, {args.steps} steps, output {width}x{height}, "
          f"median of {args.runs} runs after 1 warm-up")
    print(f"{'case':<22}{'median s':>10}{'outside pipeline':>18}")
    try:
        for label, call in cases.items():
            median, outside = measure(call, clock, args.runs)
            print(f"{label:<22}{median:>10.3f}{outside:>17.1%}")
    finally:
        clock.uninstall()


if __name__ == "__main__":
    main()
