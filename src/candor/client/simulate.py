"""Traffic for a dashboard to show: Predict and Feedback through the SDK, with drift switched on after a while.

The simulator draws labelled rows (a ``.npz`` with ``X`` and ``y``, e.g. written
by ``candor split``), predicts them in small requests at a steady rate, and sends
their true labels back as feedback a little later, as a labelling process would.
After ``drift_after_s`` it adds Gaussian noise to every row: the inputs move
away from the training data, so the confidence and predicted-class mix drift
and the model's confidences stop matching its outcomes.

>>> plan = SimulationPlan(rate=50, drift_after_s=60)   # doctest: +SKIP
>>> with Client("127.0.0.1:8001") as c:                # doctest: +SKIP
...     stats = simulate(c, "digits", *load_labelled_rows("digits-test.npz"), plan)
"""

from __future__ import annotations

import threading
import time
import zipfile
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from candor.client._errors import CandorError


@dataclass(frozen=True)
class SimulationPlan:
    rate: float = 20.0  # requests per second; 0 sends the next request as soon as one is answered
    rows_per_request: int = 8
    feedback_share: float = 1.0  # share of predicted rows whose true label is sent back
    feedback_delay_s: float = 5.0  # how long labels take to arrive
    drift_after_s: float | None = 300.0  # None: never drift
    drift_noise: float = 1.0  # noise standard deviation, in units of the data's standard deviation
    duration_s: float = 0.0  # 0: until stopped
    report_every_s: float = 30.0
    seed: int = 0
    coverage: float = 0.0  # > 0: ask for prediction sets at this level with every request

    def check(self) -> SimulationPlan:
        problems = []
        if self.rate < 0:
            problems.append(f"rate must be >= 0 requests/s, got {self.rate}")
        if self.rows_per_request < 1:
            problems.append(f"rows_per_request must be >= 1, got {self.rows_per_request}")
        if not 0 <= self.feedback_share <= 1:
            problems.append(f"feedback_share must be in [0, 1], got {self.feedback_share}")
        for name in ("feedback_delay_s", "drift_noise", "duration_s", "report_every_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.drift_after_s is not None and self.drift_after_s < 0:
            problems.append(f"drift_after_s must be >= 0 (or None for never), got {self.drift_after_s}")
        if not 0 <= self.coverage < 1:
            problems.append(f"coverage must lie in (0, 1), or be 0 for no prediction sets, got {self.coverage}")
        if problems:
            raise ValueError("invalid simulation: " + "; ".join(problems))
        return self


@dataclass
class SimulationStats:
    requests: int = 0
    rows: int = 0
    feedback_sent: int = 0
    feedback_accepted: int = 0
    errors: Counter = field(default_factory=Counter)  # gRPC status code name -> count
    drifting: bool = False

    def line(self, elapsed: float) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (f"t={elapsed:.0f}s requests={self.requests} rows={self.rows} feedback={self.feedback_accepted}/"
                f"{self.feedback_sent} drift={'on' if self.drifting else 'off'} errors: {errors}")  # fmt: skip


def load_labelled_rows(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` [N, F] float32 and ``y`` [N] class indices from a ``.npz`` file."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds one array; expected a .npz file with arrays X (rows) and y (labels)")
    with data:
        if "X" not in data or "y" not in data:
            raise ValueError(f"{path}: expected arrays X (rows) and y (labels), found {sorted(data.files)}")
        try:
            X, y = np.asarray(data["X"], dtype=np.float32), np.asarray(data["y"])
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: X and y must be numeric arrays ({e})") from e
    if X.ndim != 2 or len(X) == 0 or y.shape != (len(X),):
        raise ValueError(f"{path}: expected X [N, F] with N >= 1 and y [N], got {X.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"{path}: y must hold class indices (whole numbers >= 0), got {y.dtype}")
    return X, y.astype(np.int64)


class _Drift:
    """Turns clean rows into drifted ones: Gaussian noise, kept inside the data's range per feature."""

    def __init__(self, X: np.ndarray, noise: float, rng: np.random.Generator):
        self.scale = noise * float(X.std())
        self.low, self.high = X.min(axis=0), X.max(axis=0)
        self.rng = rng

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        noisy = rows + self.rng.normal(0.0, self.scale, rows.shape).astype(np.float32)
        return np.clip(noisy, self.low, self.high)


def wait_until_serving(client, model: str, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Block until the model reports SERVING (the server may still be starting); TimeoutError after ``timeout_s``."""
    deadline = clock() + timeout_s
    last = "no answer"
    while True:
        try:
            last = client.health(model, timeout=5.0)
            if last == "SERVING":
                return
        except CandorError as e:
            last = e.code
        if clock() >= deadline:
            raise TimeoutError(f"model {model!r} not SERVING after {timeout_s:g}s (last answer: {last})")
        time.sleep(1.0)


def simulate(client, model: str, X: np.ndarray, y: np.ndarray, plan: SimulationPlan, *,
             stop: threading.Event | None = None, log: Callable[[str], None] = print,
             clock: Callable[[], float] = time.monotonic) -> SimulationStats:  # fmt: skip
    """Run ``plan`` against ``model`` until its duration ends or ``stop`` is set; errors are counted, not raised."""
    plan.check()
    stop = stop or threading.Event()
    rng = np.random.default_rng(plan.seed)
    drift = _Drift(X, plan.drift_noise, rng)
    stats = SimulationStats()
    pending: deque[tuple[float, list[str], np.ndarray]] = deque()  # (due time, prediction ids, labels)
    start = clock()
    next_report = start + plan.report_every_s

    def send_due_feedback(now: float, everything: bool = False) -> None:
        while pending and (everything or pending[0][0] <= now):
            _, ids, labels = pending.popleft()
            stats.feedback_sent += len(ids)
            try:
                stats.feedback_accepted += client.feedback(ids, labels, model=model).accepted
            except CandorError as e:
                stats.errors[e.code] += 1

    while not stop.is_set():
        now = clock()
        elapsed = now - start
        if plan.duration_s and elapsed >= plan.duration_s:
            break
        if not stats.drifting and plan.drift_after_s is not None and elapsed >= plan.drift_after_s:
            stats.drifting = True
            log(f"t={elapsed:.0f}s drift switched on: inputs get noise of {plan.drift_noise:g} data standard deviations")
        pick = rng.integers(0, len(X), plan.rows_per_request)
        rows = drift(X[pick]) if stats.drifting else X[pick]
        try:
            result = client.predict(rows, model=model, coverage=plan.coverage or None)
            stats.requests += 1
            stats.rows += len(rows)
            labelled = rng.random(len(rows)) < plan.feedback_share
            if labelled.any():
                ids = [pid for pid, keep in zip(result.prediction_ids, labelled, strict=True) if keep]
                pending.append((now + plan.feedback_delay_s, ids, y[pick][labelled]))
        except CandorError as e:
            stats.errors[e.code] += 1
            stop.wait(1.0)  # the server may be restarting or reloading; do not spin on it
        send_due_feedback(clock())
        if plan.report_every_s and clock() >= next_report:
            log(stats.line(clock() - start))
            next_report += plan.report_every_s
        if plan.rate:
            stop.wait(max(0.0, now + 1.0 / plan.rate - clock()))
    send_due_feedback(clock(), everything=True)  # labels already promised are not dropped at the end
    log(stats.line(clock() - start))
    return stats
