"""A controllable backend for queue and service tests (the real ones use tiny).

Each call can be held at a gate and records the order calls started in, so tests
can assert scheduling without timing races.
"""

from __future__ import annotations

import threading
import time

from PIL import Image

from pipelines import BackendError, Cancelled, Capabilities, Result


class GateBackend:
    name = "gate"
    capabilities = Capabilities()

    def __init__(self, steps: int = 4, hold: bool = False, fail: Exception | None = None):
        self.steps = steps
        self.hold = hold
        self.fail = fail
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.entered = threading.Semaphore(0)
        self._lock = threading.Lock()

    def release(self, prompt: str) -> None:
        self._gate(prompt).set()

    def _gate(self, prompt: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(prompt, threading.Event())

    def _run(self, prompt, size, seed, progress, cancel):
        with self._lock:
            self.started.append(prompt)
        self.entered.release()
        if self.hold:
            deadline = time.monotonic() + 30
            while not self._gate(prompt).wait(0.01):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                if time.monotonic() > deadline:
                    raise BackendError("gate never opened")
        if self.fail:
            raise self.fail
        for step in range(1, self.steps + 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if progress:
                progress(step, self.steps, Image.new("RGB", (8, 8)) if step % 2 == 0 else None)
        color = (hash(prompt) % 255, (seed or 0) % 255, 9)
        return Result(Image.new("RGB", size, color), seed if seed is not None else 1234,
                      self.steps, 0.01, {"backend": "gate", "model": "gate-1"})

    def generate(self, request, *, progress=None, cancel=None):
        return self._run(request.prompt, (request.width or 32, request.height or 32),
                         request.seed, progress, cancel)

    def edit(self, request, *, progress=None, cancel=None):
        size = (request.width or request.images[0].width, request.height or request.images[0].height)
        return self._run(request.prompt, size, request.seed, progress, cancel)
