"""The job queue: worker threads that run image jobs fairly across users.

Owns scheduling only: at most one running job per conversation, at most
``workers`` running at once overall, round-robin between owners and then between
their conversations (whoever started a job least recently goes next; ties go to
whoever asked first), and a cap on how many jobs one owner may have waiting, so
one busy user cannot starve the others. Knows nothing of the store, the backend
or chainlit: a task is a callable taking its cancel event.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass(eq=False)
class Ticket:
    """One submitted task: its future, its cancel flag and where it stands."""

    conversation_id: str
    fn: Callable[[threading.Event], Any]
    label: str = ""
    owner: str = ""
    future: Future = field(default_factory=Future)
    cancel: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    state: str = "queued"  # queued | running | done


class QueueFull(Exception):
    """One owner already has as many jobs waiting as the queue takes."""


class JobQueue:
    def __init__(self, workers: int = 1, max_waiting_per_owner: int = 32) -> None:
        if workers < 1:
            raise ValueError("The job queue needs at least one worker.")
        self.workers = workers
        self.max_waiting_per_owner = max_waiting_per_owner
        self._cond = threading.Condition()
        self._queued: list[Ticket] = []
        self._running: dict[str, Ticket] = {}
        self._last_start: dict[str, float] = {}
        self._seq = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"qec-job-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # ---- public ---------------------------------------------------------------------

    def submit(self, conversation_id: str, fn: Callable[[threading.Event], Any], *,
               label: str = "", owner: str = "") -> Ticket:
        owner = owner or conversation_id
        with self._cond:
            if self._closed:
                raise RuntimeError("The job queue is shut down.")
            waiting = sum(1 for t in self._queued if t.owner == owner)
            if waiting >= self.max_waiting_per_owner:
                raise QueueFull(f"{waiting} images are already waiting for you; let some finish "
                                f"(or stop them) before asking for more.")
            ticket = Ticket(conversation_id, fn, label, owner=owner, seq=next(self._seq))
            self._queued.append(ticket)
            self._cond.notify_all()
            return ticket

    def position(self, ticket: Ticket) -> int:
        """How many tasks run before this one can start (0 = running or starting now)."""
        with self._cond:
            if ticket.state != "queued" or ticket not in self._queued:
                return 0
            before = self._order().index(ticket)
            blocked = (len(self._running) >= self.workers
                       or ticket.conversation_id in self._running)
            # Running tasks that hold the slot it needs count as ahead of it too.
            return before + (len(self._running) if blocked else 0)

    def cancel(self, ticket: Ticket) -> bool:
        """Cancel a queued task now, or flag a running one to stop at its next step.

        Returns True when the task was removed before it ever started.
        """
        with self._cond:
            ticket.cancel.set()
            if ticket.state == "queued":
                self._queued.remove(ticket)
                ticket.state = "done"
                ticket.future.cancel()
                ticket.future.set_running_or_notify_cancel()
                self._cond.notify_all()
                return True
            return False

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            for t in list(self._queued):
                t.cancel.set()
                t.future.cancel()
            self._queued.clear()
            for t in self._running.values():
                t.cancel.set()
            self._cond.notify_all()
        for th in self._threads:
            th.join(timeout)

    # ---- scheduling -----------------------------------------------------------------

    def _order(self) -> list[Ticket]:
        """Queued tickets in the order they would start (caller holds the lock)."""
        order: list[Ticket] = []
        busy = set(self._running)
        last = dict(self._last_start)
        remaining = list(self._queued)
        clock = time.monotonic()
        while remaining:
            free = [t for t in remaining if t.conversation_id not in busy]
            pick = min(free or remaining, key=lambda t: _fairness(t, last))
            order.append(pick)
            remaining.remove(pick)
            # In the simulation each started task is assumed to finish before the next.
            clock += 1
            last[("owner", pick.owner)] = last[("conv", pick.conversation_id)] = clock
            busy.discard(pick.conversation_id)
        return order

    def _next(self) -> Optional[Ticket]:
        free = [t for t in self._queued if t.conversation_id not in self._running]
        if not free or len(self._running) >= self.workers:
            return None
        return min(free, key=lambda t: _fairness(t, self._last_start))

    def _work(self) -> None:
        while True:
            with self._cond:
                ticket = None
                while not self._closed:
                    ticket = self._next()
                    if ticket is not None:
                        break
                    self._cond.wait()
                if self._closed and ticket is None:
                    return
                self._queued.remove(ticket)
                self._running[ticket.conversation_id] = ticket
                now = time.monotonic()
                self._last_start[("owner", ticket.owner)] = now
                self._last_start[("conv", ticket.conversation_id)] = now
                ticket.state = "running"
            self._run(ticket)
            with self._cond:
                self._running.pop(ticket.conversation_id, None)
                ticket.state = "done"
                self._cond.notify_all()

    @staticmethod
    def _run(ticket: Ticket) -> None:
        if not ticket.future.set_running_or_notify_cancel():
            return
        try:
            ticket.future.set_result(ticket.fn(ticket.cancel))
        except BaseException as e:  # the waiter gets every failure, including Cancelled
            ticket.future.set_exception(e)


def _fairness(ticket: Ticket, last_start: dict) -> tuple:
    """Sort key: the owner served longest ago, then their conversation, then first asked."""
    never = float("-inf")
    return (last_start.get(("owner", ticket.owner), never),
            last_start.get(("conv", ticket.conversation_id), never), ticket.seq)
