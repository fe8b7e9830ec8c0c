"""Dynamic batching: rows from concurrent requests share one onnxruntime run.

Requests queue per model version. A worker takes the queued jobs in order,
up to ``max_batch_size`` rows (a single larger request runs alone), waits at
most ``max_queue_delay`` for more when the batch is not full, runs the batch
in a thread (off the event loop) and hands each job exactly its own rows.
While one batch runs, new requests queue, so batches grow with load even with
no delay. The queue is bounded in rows; a job whose deadline has passed is
dropped before it runs.
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
    ):
        self._run = run
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_rows = max_queue_rows
        self._on_batch = on_batch or (lambda _s: None)
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
        job = _Job(rows, asyncio.get_running_loop().create_future(), deadline)
        self._jobs.append(job)
        self._queued_rows += len(rows)
        self._arrived.set()
        return await job.future

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
            batch = self._take_batch()
            if self._jobs:  # leftovers: let an idle worker (instances > 1) start on them
                self._arrived.set()
            now = time.monotonic()
            live, expired, cancelled = [], 0, 0
            for job in batch:
                if job.future.done():  # the caller went away (cancelled)
                    cancelled += 1
                    continue
                if job.deadline is not None and job.deadline <= now:
                    job.future.set_exception(DeadlineExceeded("the deadline passed while the request waited for a batch"))
                    expired += 1
                    continue
                live.append(job)
            if not live:
                if expired or cancelled:
                    self._report(BatchStats(0, [], 0.0, expired, cancelled))
                continue
            X = live[0].rows if len(live) == 1 else np.concatenate([j.rows for j in live])
            started = time.monotonic()
            try:
                logits, probs = await loop.run_in_executor(self._executor, self._run, X)
            except Exception as e:  # a failed run fails its batch, never the worker
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
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
