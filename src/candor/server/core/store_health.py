"""Whether the store answers, as one flag fed by every user of the store (feedback writes, the
prediction log's writer thread, its pings, reads) and reported only when it changes.

Each user reports its own outcomes. A failure for lack of room (:class:`StoreFull`: a full disk,
database file or cap) stays until the same writer succeeds again: a small prediction-log flush that
still fits says nothing about the feedback batch that did not, and with one flag for both the
gauge flapped up and down every 0.1 s on a full store. Any other failure (the store could not be
reached, a read failed) ends with any success, a ping's included, since it was the store itself
that did not answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from candor.server.core.events import StoreHealthChanged
from candor.server.core.store import StoreError, StoreFull

log = logging.getLogger("candor.server")

FEEDBACK, LOG, PING, READ = "feedback", "prediction log", "ping", "read"  # who reports


class StoreHealth:
    def __init__(self, notify: Callable[[object], None]):
        """``notify`` delivers an event to the core's subscribers from any thread."""
        self._notify = notify
        self._failures: dict[str, StoreError] = {}  # user -> its latest failure, while it stands
        self._ok: bool | None = None  # None until the first report
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        return bool(self._ok)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures = {who: e for who, e in self._failures.items() if who != user and isinstance(e, StoreFull)}
            self._settle()

    def failed(self, user: str, error: StoreError) -> None:
        with self._lock:
            self._failures[user] = error
            self._settle()

    def _settle(self) -> None:
        """Notify when the flag changes (the lock held: two threads' changes are told in the order they made them)."""
        ok = not self._failures
        if ok == self._ok:
            return
        self._ok = ok
        if ok:
            log.info("the store answers again")
        else:
            who, error = next(reversed(self._failures.items()))
            log.error("the store is failing (%s): %s", who, error)
        self._notify(StoreHealthChanged(ok))
