"""BackendPool: one loaded backend at a time, and the old one's memory given back on a switch."""

from __future__ import annotations

from assistant.service import BackendPool


def test_a_model_switch_closes_the_old_backend():
    from assistant.service import BackendPool

    closed = []

    class Fake:
        def __init__(self, name, model):
            self.key = (name, model)

        def close(self):
            closed.append(self.key)

    pool = BackendPool("qwen", Fake)
    first = pool.get()
    assert pool.get() is first and closed == []
    pool.get(model="other")
    assert closed == [("qwen", None)]
