"""The job queue: one running job per conversation, a global limit, round-robin."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.queue import JobQueue


def _recorder():
    order, lock = [], threading.Lock()
    gate = threading.Event()

    def make(name, hold=False):
        def fn(cancel):
            with lock:
                order.append(name)
            if hold:
                assert gate.wait(10)
            return name
        return fn

    return order, gate, make


def test_runs_and_returns_results():
    q = JobQueue(workers=1)
    try:
        t = q.submit("a", lambda cancel: 42)
        assert t.future.result(5) == 42
    finally:
        q.shutdown()


def test_exceptions_reach_the_waiter():
    q = JobQueue(workers=1)
    try:
        def boom(cancel):
            raise RuntimeError("backend exploded")
        t = q.submit("a", boom)
        with pytest.raises(RuntimeError, match="exploded"):
            t.future.result(5)
        assert q.submit("a", lambda c: "still works").future.result(5) == "still works"
    finally:
        q.shutdown()


def test_one_busy_conversation_does_not_starve_another():
    q = JobQueue(workers=1)
    order, gate, make = _recorder()
    try:
        first = q.submit("A", make("A1", hold=True))
        while not order:
            time.sleep(0.005)
        a2 = q.submit("A", make("A2"))
        a3 = q.submit("A", make("A3"))
        b1 = q.submit("B", make("B1"))
        assert (q.position(b1), q.position(a2), q.position(a3)) == (1, 2, 3)
        gate.set()
        for t in (first, a2, a3, b1):
            t.future.result(5)
        assert order == ["A1", "B1", "A2", "A3"]
    finally:
        q.shutdown()


def test_at_most_one_running_per_conversation_and_global_limit():
    q = JobQueue(workers=2)
    running, peak, per_conv_peak = {}, [0], {}
    lock = threading.Lock()

    def make(conv):
        def fn(cancel):
            with lock:
                running[conv] = running.get(conv, 0) + 1
                peak[0] = max(peak[0], sum(running.values()))
                per_conv_peak[conv] = max(per_conv_peak.get(conv, 0), running[conv])
            time.sleep(0.02)
            with lock:
                running[conv] -= 1
        return fn

    try:
        tickets = [q.submit(c, make(c)) for c in "AAABBBCCC"]
        for t in tickets:
            t.future.result(10)
        assert peak[0] == 2
        assert max(per_conv_peak.values()) == 1
    finally:
        q.shutdown()


def test_cancel_queued_removes_it_and_flags_running():
    q = JobQueue(workers=1)
    order, gate, make = _recorder()
    try:
        running = q.submit("A", make("A1", hold=True))
        while not order:
            time.sleep(0.005)
        queued = q.submit("B", make("B1"))
        assert q.cancel(queued) is True
        assert queued.future.cancelled()
        assert q.cancel(running) is False  # already running: only flagged
        assert running.cancel.is_set()
        gate.set()
        running.future.result(5)
        time.sleep(0.05)
        assert order == ["A1"]
    finally:
        q.shutdown()


def test_fair_between_owners_not_just_conversations():
    q = JobQueue(workers=1)
    order, gate, make = _recorder()
    try:
        first = q.submit("ann-1", make("ann-1a", hold=True), owner="ann")
        while not order:
            time.sleep(0.005)
        # Ann has three conversations busy, Bob one: Bob is not starved behind all of Ann's.
        rest = [q.submit(c, make(name), owner=o) for c, name, o in (
            ("ann-2", "ann-2a", "ann"), ("ann-3", "ann-3a", "ann"), ("bob-1", "bob-1a", "bob"))]
        gate.set()
        for t in [first, *rest]:
            t.future.result(5)
        assert order.index("bob-1a") == 1
    finally:
        q.shutdown()


def test_one_owner_cannot_fill_the_queue():
    from assistant.queue import QueueFull

    q = JobQueue(workers=1, max_waiting_per_owner=2)
    gate = threading.Event()
    try:
        q.submit("a", lambda c: gate.wait(5), owner="ann")
        time.sleep(0.05)
        q.submit("a", lambda c: None, owner="ann")
        q.submit("b", lambda c: None, owner="ann")
        with pytest.raises(QueueFull, match="already waiting"):
            q.submit("c", lambda c: None, owner="ann")
        q.submit("d", lambda c: None, owner="bob")  # others still get in
    finally:
        gate.set()
        q.shutdown()
