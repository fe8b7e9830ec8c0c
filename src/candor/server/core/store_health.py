"""Whether the store answers, as one flag fed by every user of the store (feedback writes, the
prediction log's writer thread, its pings) and reported only when it changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from candor.server.core.events import StoreHealthChanged

log = logging.getLogger("candor.server")


class StoreHealth:
    def __init__(self, notify: Callable[[object], None]):
        """``notify`` delivers an event to the core's subscribers from any thread."""
        self._notify = notify
        self._ok: bool | None = None
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        return bool(self._ok)

    def report(self, ok: bool, problem: str = "") -> None:
        with self._lock:
            changed, self._ok = ok != self._ok, ok
        if changed:
            if ok:
                log.info("the store answers again")
            else:
                log.error("the store is failing: %s", problem)
            self._notify(StoreHealthChanged(ok))
