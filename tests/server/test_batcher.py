"""The dynamic batcher on its own, with a real run function that records its batches."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from candor.server.core.batcher import DynamicBatcher
from candor.server.core.errors import DeadlineExceeded, ResourceExhausted


class Recorder:
    """run(X) -> (X * 2, X + 1), remembering each batch's rows; can be held closed."""

    def __init__(self, fail_on: float | None = None):
        self.batches: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on = fail_on

    def __call__(self, X):
        self.gate.wait(10)
        self.batches.append(X.copy())
        if self.fail_on is not None and np.any(X == self.fail_on):
            raise RuntimeError("boom")
        return X * 2, X + 1


def run(coro):
    return asyncio.run(coro)


def make(recorder, **kw):
    options = {"max_batch_size": 8, "max_queue_delay_s": 0.0, "max_queue_rows": 64} | kw
    return DynamicBatcher(recorder, ThreadPoolExecutor(2), **options)


def test_concurrent_requests_share_runs_and_get_their_own_rows():
    rec = Recorder()

    async def main():
        b = make(rec, max_queue_delay_s=0.2)
        rows = [np.full((1, 3), i, np.float32) for i in range(8)]
        results = await asyncio.gather(*(b.submit(r) for r in rows))
        await b.close()
        return rows, results

    rows, results = run(main())
    for r, (a, p) in zip(rows, results, strict=True):
        assert np.array_equal(a, r * 2) and np.array_equal(p, r + 1)
    assert [len(x) for x in rec.batches] == [8]  # one run: the delay let the batch fill
    assert rec.batches[0][:, 0].tolist() == list(range(8))  # arrival order kept


def test_batches_never_exceed_the_limit_but_a_big_request_runs_whole():
    rec = Recorder()
    rec.gate.clear()  # hold the first run so the rest queue up

    async def main():
        b = make(rec)
        tasks = [asyncio.create_task(b.submit(np.full((3, 2), i, np.float32))) for i in range(5)]
        big = asyncio.create_task(b.submit(np.zeros((20, 2), np.float32)))
        await asyncio.sleep(0.05)
        rec.gate.set()
        await asyncio.gather(*tasks, big)
        await b.close()

    run(main())
    sizes = [len(x) for x in rec.batches]
    assert sum(sizes) == 35 and 20 in sizes
    assert all(s <= 8 for s in sizes if s != 20)


def test_full_queue_is_refused():
    rec = Recorder()
    rec.gate.clear()

    async def main():
        b = make(rec, max_queue_rows=4, max_batch_size=4)
        first = asyncio.create_task(b.submit(np.zeros((4, 1), np.float32)))  # runs (held at the gate)
        await asyncio.sleep(0.05)
        second = asyncio.create_task(b.submit(np.zeros((4, 1), np.float32)))  # fills the queue
        await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted, match="queue full: 4 rows waiting, limit 4"):
            await b.submit(np.zeros((1, 1), np.float32))
        rec.gate.set()
        await asyncio.gather(first, second)
        await b.close()

    run(main())


def test_expired_requests_are_dropped_before_running():
    rec = Recorder()
    rec.gate.clear()

    async def main():
        b = make(rec, max_batch_size=1)
        first = asyncio.create_task(b.submit(np.zeros((1, 1), np.float32)))
        await asyncio.sleep(0.05)
        late = asyncio.create_task(b.submit(np.ones((1, 1), np.float32), deadline=time.monotonic() + 0.01))
        await asyncio.sleep(0.1)
        rec.gate.set()
        await first
        with pytest.raises(DeadlineExceeded):
            await late
        await b.close()

    run(main())
    assert all(not np.any(x == 1) for x in rec.batches)  # the late row never ran


def test_a_failed_run_fails_its_batch_and_the_worker_goes_on():
    rec = Recorder(fail_on=7.0)

    async def main():
        b = make(rec)
        with pytest.raises(RuntimeError, match="boom"):
            await b.submit(np.full((1, 1), 7.0, np.float32))
        logits, _ = await b.submit(np.full((1, 1), 2.0, np.float32))
        await b.close()
        return logits

    assert run(main()).tolist() == [[4.0]]


def test_close_finishes_queued_work():
    rec = Recorder()
    rec.gate.clear()

    async def main():
        b = make(rec, max_batch_size=1)
        tasks = [asyncio.create_task(b.submit(np.full((1, 1), i, np.float32))) for i in range(4)]
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(b.close())
        rec.gate.set()
        await closing
        return [await t for t in tasks]

    assert [float(a[0, 0]) for a, _ in run(main())] == [0.0, 2.0, 4.0, 6.0]
