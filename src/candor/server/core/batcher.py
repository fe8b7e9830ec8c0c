"""Dynamic batching: rows from concurrent requests share one onnxruntime run.

Requests queue per model version. A worker takes the queued jobs in order,
up to ``max_batch_size`` rows (a single larger request runs alone), waits at
most ``max_queue_delay`` for more when the batch is not full, runs the batch
in a thread (off the event loop) and hands each job exactly its own rows.
While one batch runs, new requests queue, so batches grow with load even with
no delay. A batch that ``inline(rows)`` says is cheap runs on the event loop
itself: for a small model, handing a run to a thread and back costs more than
the run. A cheap request that finds nothing queued runs at once, in its own
handler; cheap requests that do queue skip the worker task: the first of a
loop turn schedules one callback that runs every one queued in that turn.
The queue is bounded in rows; a job whose deadline has passed is dropped
before it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from candor.server.core.errors import DeadlineExceeded, ResourceExhausted, Unavailable

log = logging.getLogger("candor.server")
RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Job:
    rows: np.ndarray
    future: asyncio.Future
    deadline: float | None  # time.monotonic() seconds
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What one run looked like, for metrics."""

    rows: int
    queue_seconds: list[float]
    run_seconds: float
    expired: int  # deadline passed while queued
    cancelled: int = 0  # the caller went away (deadline on its side, disconnect) while queued
    probabilities: np.ndarray | None = None  # the batch's outputs, for prediction statistics


class DynamicBatcher:
    def __init__(
        self,
        run: RunFn,
        executor: Executor,
        *,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_rows: int,
        instances: int = 1,
        on_batch: Callable[[BatchStats], None] | None = None,
        inline: Callable[[int], bool] = lambda rows: False,
    ):
        self._run = run
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_rows = max_queue_rows
        self._on_batch = on_batch or (lambda _s: None)
        self._inline = inline
        self._flush_scheduled = False
        self._jobs: deque[_Job] = deque()
        self._queued_rows = 0
        self._arrived = asyncio.Event()
        self._closing = False
        self._workers = [asyncio.create_task(self._work()) for _ in range(instances)]

    @property
    def queued_rows(self) -> int:
        """Rows waiting now (an int read: safe from any thread)."""
        return self._queued_rows

    async def submit(self, rows: np.ndarray, deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Queue ``rows`` [n, F]; return their (logits, probabilities)."""
        if self._closing:
            raise Unavailable("the model version is being unloaded; retry to reach its successor")
        if self._queued_rows + len(rows) > self.max_queue_rows:
            raise ResourceExhausted(
                f"queue full: {self._queued_rows} rows waiting, limit {self.max_queue_rows}; retry with backoff"
            )
        if not self._jobs and self.max_queue_delay_s <= 0 and self._inline(len(rows)):
            return self._run_now(rows)
        loop = asyncio.get_running_loop()
        job = _Job(rows, loop.create_future(), deadline)
        self._jobs.append(job)
        self._queued_rows += len(rows)
        if self.max_queue_delay_s <= 0 and self._inline(self._queued_rows):
            # Cheap to run all that waits: one plain callback at the end of this loop turn takes every
            # job queued in the turn and runs them inline, without waking a worker task.
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush_inline)
        else:
            self._arrived.set()
        return await job.future

    def _run_now(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A cheap run with nothing queued: run it here, in its own request, as a batch of its own. Measured on
        a saturated loop, a queue and a callback per request cost more than the run they would share."""
        started = time.monotonic()
        logits, probs = self._run(rows)
        self._report(BatchStats(len(rows), [0.0], time.monotonic() - started, 0, 0, probs))
        return logits, probs

    def _take_batch(self) -> list[_Job]:
        batch, rows = [], 0
        while self._jobs:
            n = len(self._jobs[0].rows)
            if batch and rows + n > self.max_batch_size:
                break
            job = self._jobs.popleft()
            self._queued_rows -= n
            batch.append(job)
            rows += n
            if rows >= self.max_batch_size:
                break
        return batch

    async def _wait_to_fill(self) -> None:
        """Wait up to max_queue_delay for the queue to hold a full batch."""
        if self.max_queue_delay_s <= 0:
            return
        end = time.monotonic() + self.max_queue_delay_s
        while self._queued_rows < self.max_batch_size and not self._closing:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _report(self, stats: BatchStats) -> None:
        try:
            self._on_batch(stats)
        except Exception:  # metrics must never stop the worker
            log.exception("batch metrics callback failed")

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            await self._wait_to_fill()
            await self._run_batch(loop, self._take_batch())

    def _flush_inline(self) -> None:
        """Run what queued during the last loop turn, on the loop; a worker takes it if it grew too costly."""
        self._flush_scheduled = False
        if not self._jobs:
            return
        if not self._inline(min(self._queued_rows, self.max_batch_size)):
            self._arrived.set()
            return
        live, expired, cancelled = self._sort_out(self._take_batch())
        if not live:
            self._report_dropped(expired, cancelled)
        else:
            X = self._rows_of(live)
            started = time.monotonic()
            try:
                logits, probs = self._run(X)
            except Exception as e:  # a failed run fails its batch
                self._fail(live, e)
            else:
                self._answer(live, X, logits, probs, started, expired, cancelled)
        if self._jobs:  # more than one batch's worth queued in the turn
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_inline)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Job]) -> None:
        """Run one taken batch and answer each of its jobs with exactly its own rows."""
        if self._jobs:  # leftovers: let an idle worker (instances > 1) start on them
            self._arrived.set()
        live, expired, cancelled = self._sort_out(batch)
        if not live:
            self._report_dropped(expired, cancelled)
            return
        X = self._rows_of(live)
        started = time.monotonic()
        try:
            if self._inline(len(X)):
                logits, probs = self._run(X)
            else:
                logits, probs = await loop.run_in_executor(self._executor, self._run, X)
        except Exception as e:  # a failed run fails its batch, never the worker
            self._fail(live, e)
            return
        self._answer(live, X, logits, probs, started, expired, cancelled)

    @staticmethod
    def _sort_out(batch: list[_Job]) -> tuple[list[_Job], int, int]:
        """(jobs to run, expired, cancelled): a job whose caller left, or whose deadline passed, is not run."""
        now = time.monotonic()
        live, expired, cancelled = [], 0, 0
        for job in batch:
            if job.future.done():  # the caller went away (cancelled)
                cancelled += 1
            elif job.deadline is not None and job.deadline <= now:
                job.future.set_exception(DeadlineExceeded("the deadline passed while the request waited for a batch"))
                expired += 1
            else:
                live.append(job)
        return live, expired, cancelled

    @staticmethod
    def _rows_of(live: list[_Job]) -> np.ndarray:
        return live[0].rows if len(live) == 1 else np.concatenate([j.rows for j in live])

    @staticmethod
    def _fail(live: list[_Job], error: Exception) -> None:
        for job in live:
            if not job.future.done():
                job.future.set_exception(error)

    def _report_dropped(self, expired: int, cancelled: int) -> None:
        if expired or cancelled:
            self._report(BatchStats(0, [], 0.0, expired, cancelled))

    def _answer(self, live: list[_Job], X: np.ndarray, logits: np.ndarray, probs: np.ndarray, started: float,
                expired: int, cancelled: int) -> None:  # fmt: skip
        finished = time.monotonic()
        offset = 0
        for job in live:
            n = len(job.rows)
            if not job.future.done():
                job.future.set_result((logits[offset : offset + n], probs[offset : offset + n]))
            offset += n
        waited = [started - j.enqueued for j in live]
        self._report(BatchStats(len(X), waited, finished - started, expired, cancelled, probs))

    async def close(self) -> None:
        """Stop taking requests, finish the queued ones, then stop the workers."""
        self._closing = True
        self._arrived.set()
        await asyncio.gather(*self._workers, return_exceptions=True)
