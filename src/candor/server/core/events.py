"""What the core reports as it works, for whoever listens (metrics, health), with no
knowledge of who that is.

The core emits plain frozen records on the event loop; subscribers are called in
order, synchronously, and one that raises is logged and skipped, so observability
can never fail a request. Figures that are cheaper to read than to push (queue
depth, window contents) are not events: observability reads them through the core's
thread-safe snapshots instead.

>>> events = Events()
>>> events.subscribe(lambda e: print(type(e).__name__))
>>> events.emit(StoreHealthChanged(ok=True))
StoreHealthChanged
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("candor.server")


@dataclass(frozen=True)
class BatchRun:
    """One onnxruntime run of a version's batcher."""

    model: str
    version: str
    rows: int
    probabilities: np.ndarray  # [rows, K] as served
    class_names: list[str]
    multilabel: bool
    queue_seconds: tuple[float, ...]  # per request in the batch: enqueue to run
    run_seconds: float


@dataclass(frozen=True)
class RowsDropped:
    """Requests dropped before they ran: ``reason`` is ``deadline`` (passed while queued) or ``cancelled``."""

    model: str
    version: str
    reason: str
    requests: int


@dataclass(frozen=True)
class NonFiniteRows:
    """Rows whose outputs were NaN or infinite (finite but extreme inputs can overflow a model)."""

    model: str
    version: str
    rows: int


@dataclass(frozen=True)
class RequestRejected:
    """A request refused because the version's queue was full."""

    model: str
    version: str


@dataclass(frozen=True)
class VersionLoaded:
    model: str
    version: str
    provider: str
    task: str


@dataclass(frozen=True)
class VersionUnloaded:
    """Removed from the repository, or replaced by a reload of the same version (then a VersionLoaded follows)."""

    model: str
    version: str
    provider: str
    task: str
    removed: bool  # False when a reload replaced it


@dataclass(frozen=True)
class LoadFailed:
    model: str
    version: str
    message: str
    still_serving: bool  # an earlier copy of the same version keeps serving


@dataclass(frozen=True)
class RepositoryChanged:
    """Versions were loaded, reloaded, failed or removed: what is served may have changed."""


@dataclass(frozen=True)
class FeedbackAnswered:
    """One Feedback call's outcomes, counted per outcome name."""

    model: str
    outcomes: dict[str, int]


@dataclass(frozen=True)
class PredictionsLogged:
    """Rows the prediction log's writer committed to the store."""

    rows: int


@dataclass(frozen=True)
class PredictionLogDropped:
    """Rows that never reached the prediction log: ``buffer_full`` or ``store_error``."""

    rows: int
    reason: str


@dataclass(frozen=True)
class StoreWriteFailed:
    message: str


@dataclass(frozen=True)
class StoreHealthChanged:
    """The store started failing (``ok`` False) or answers again."""

    ok: bool


Subscriber = Callable[[object], None]


class Events:
    """A synchronous, in-process list of subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: object) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a listener's bug must never fail the work that reported it
                log.exception("event subscriber failed on %s", type(event).__name__)
