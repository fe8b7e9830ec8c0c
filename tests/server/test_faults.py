"""Faults a real server survives: a full feedback store, a crash, SIGTERM under load, a client that
leaves mid-stream, a client that stops reading. (Model files corrupted or removed while serving:
test_lifecycle.py.) In each case acknowledged feedback is never lost."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest

from candor.client import CandorError, Unavailable
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes

# A call arriving as the server stops is UNAVAILABLE (retried elsewhere), never CANCELLED by the stop itself.
OK_DURING_STOP = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}


def stored_ids(data_dir) -> set[str]:
    with sqlite3.connect(data_dir / "feedback.sqlite3") as db:
        return {r[0] for r in db.execute("SELECT prediction_id FROM feedback")}


def predict_and_label(client, rows, labels) -> tuple[list[str], object]:
    ids = client.predict(rows, model="digits").prediction_ids
    return ids, client.feedback(ids, labels, model="digits")


def fill_store(client, X, y, batch: int) -> tuple[list[str], list[str], CandorError | None]:
    """Predict and label ``batch`` rows at a time until a feedback batch is refused:
    (acknowledged ids, the refused batch's ids, the refusal), the last two empty/None if none was."""
    acknowledged: list[str] = []
    for start in range(0, len(X) - batch + 1, batch):
        ids = client.predict(X[start : start + batch], model="digits").prediction_ids
        try:
            result = client.feedback(ids, y[start : start + batch], model="digits")
        except CandorError as e:
            return acknowledged, ids, e
        assert result.accepted == len(ids)
        acknowledged += ids
    return acknowledged, [], None


@pytest.fixture(scope="module")
def labelled():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target


def test_a_full_feedback_store_refuses_whole_batches_and_keeps_serving(served_repo, labelled):
    """Fill the feedback store (a 64 KiB cap: SQLITE_FULL, as on a full disk): the batch that does not fit is
    UNAVAILABLE and stored not at all, every earlier acknowledged row is on disk, Predict goes on, health
    candor.feedback_store and candor_feedback_store_up say so; with room again, the same store works."""
    X, y = labelled
    data_dir = served_repo.parent / "data"
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--feedback-store-max-bytes", "65536")
    try:
        with server.client(retries=0) as client:
            acknowledged, refused_ids, e = fill_store(client, X, y, batch=50)
            assert e is not None, "the store never filled up"
            assert isinstance(e, Unavailable)
            assert "the feedback store cannot write (database or disk is full)" in e.message
            assert "nothing from this batch was stored" in e.message
            # The fault shows in the log, the error counter, health details and the gauge, and stays there while the
            # prediction log (it shares the file) flushes small batches every 0.1 s, some of which still fit: only a
            # feedback write that succeeds ends a failure for lack of room.
            assert server.metric("candor_feedback_store_errors_total") >= 1
            failing = next(i for i, line in enumerate(server.process.output) if "the store is failing" in line)
            assert "full" in server.process.output[failing]
            for _ in range(5):
                client.predict(X[:50], model="digits")
                time.sleep(0.1)
            assert client.health("candor.feedback_store") == "NOT_SERVING"
            assert server.metric("candor_feedback_store_up") == 0
            assert not any("the store answers again" in line for line in server.process.output[failing:])
            # Predictions go on.
            assert len(client.predict(X[:3], model="digits").prediction_ids) == 3
            assert client.health() == "SERVING" and client.health("digits") == "SERVING"
    finally:
        assert server.stop() == 0
    stored = stored_ids(data_dir)
    assert set(acknowledged) <= stored and not set(refused_ids) & stored  # all acknowledged, nothing partial

    # Room again (no cap): the same store takes feedback and reports healthy; old rows still count as duplicates.
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as client:
            assert client.health("candor.feedback_store") == "SERVING"
            _, result = predict_and_label(client, X[:5], y[:5])
            assert result.accepted == 5
            assert client.feedback(acknowledged[:10], y[:10], model="digits").duplicate == 10
        assert server.metric("candor_feedback_store_up") == 1
    finally:
        assert server.stop() == 0


def test_a_crash_loses_no_acknowledged_feedback(served_repo, labelled):
    """SIGKILL right after 40 rows of feedback were acknowledged: after a restart all 40 are on disk, come back
    as DUPLICATE, and the label-based window is rebuilt from them."""
    X, y = labelled
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    with server.client() as client:
        ids, result = predict_and_label(client, X[:40], y[:40])
        assert result.accepted == 40
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # no graceful anything
    assert set(ids) <= stored_ids(served_repo.parent / "data")
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as client:
            assert client.feedback(ids, y[:40], model="digits").duplicate == 40
            report = client.calibration("digits")
            assert report.observed.rows == 40  # the label-based window was rebuilt from disk
    finally:
        assert server.stop() == 0


def test_sigterm_under_load_loses_no_acknowledged_call(served_repo, labelled):
    """SIGTERM while six clients predict and send feedback: exit 0, every call answered OK or UNAVAILABLE
    (never an internal error), every acknowledged feedback row on disk."""
    X, y = labelled
    data_dir = served_repo.parent / "data"
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--grace-period-seconds", "10")
    acknowledged: list[str] = []
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with server.client(retries=0) as client:
            while not stop.is_set():
                pick = rng.integers(0, len(X), 16)
                try:
                    ids, result = predict_and_label(client, X[pick], y[pick])
                    with lock:
                        acknowledged.extend(i for i, o in zip(ids, result.outcomes, strict=True) if o == "ACCEPTED")
                        codes.append(grpc.StatusCode.OK)
                except CandorError as e:
                    with lock:
                        codes.append(grpc.StatusCode[e.code])
                    if isinstance(e, Unavailable):
                        return  # the server is going away

    threads = [threading.Thread(target=load, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    exit_code = server.stop(signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert exit_code == 0
    assert codes.count(grpc.StatusCode.OK) > 20
    assert set(codes) <= OK_DURING_STOP, set(codes)
    assert set(acknowledged) <= stored_ids(data_dir)


def stream_requests(rows: np.ndarray, n: int):
    for i in range(n):
        tensor = pb.Tensor(shape=list(rows.shape), raw_data=rows.astype("<f4").tobytes())
        request = pb.PredictRequest(model="digits", inputs=tensor)
        yield pb.PredictStreamRequest(request=request, correlation_id=str(i))


def test_a_client_leaving_mid_stream_leaves_nothing_behind(served_repo, digits_rows):
    """A PredictStream client cancels after 5 of 1000 messages: nothing stays in flight, the server serves on."""
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            call = stub.PredictStream(stream_requests(digits_rows[:4], 1000), timeout=30)
            got = [next(call) for _ in range(5)]
            assert [r.correlation_id for r in got] == ["0", "1", "2", "3", "4"]
            call.cancel()
        wait_for(lambda: server.metric("candor_inflight_requests") == 0)
        with server.client() as client:
            assert client.health() == "SERVING"
            assert len(client.predict(digits_rows[:2], model="digits").prediction_ids) == 2
    finally:
        assert server.stop() == 0


def test_a_client_that_stops_reading_slows_no_one_else(served_repo, digits_rows):
    """A stream whose client sends 256-row requests and never reads the answers: flow control
    holds it back, while other clients are answered as usual (each call within its 10 s deadline)."""
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    big = np.repeat(digits_rows, 7, axis=0)[:256]
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            stalled = stub.PredictStream(stream_requests(big, 400), timeout=60)  # never read from
            time.sleep(1.0)
            with server.client(timeout=10, retries=0) as client:
                for _ in range(20):
                    assert len(client.predict(digits_rows[:2], model="digits").prediction_ids) == 2
            assert stalled.running()  # the stalled stream was open throughout
            stalled.cancel()
        wait_for(lambda: server.metric("candor_inflight_requests") == 0)
    finally:
        assert server.stop() == 0



def privileged(cmd: list[str]) -> None:
    """Run a command that needs root (mount, chattr); skip the test where it cannot run (CI runs as root)."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"{' '.join(cmd[:2])} is not permitted here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KiB filesystem (tmpfs) for the feedback store."""
    mount = tmp_path / "disk"
    mount.mkdir()
    privileged(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)])
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_really_full_disk_under_the_store(served_repo, labelled, small_disk):
    """The store on a 512 KiB filesystem that fills up (ENOSPC): the batch that does not fit is UNAVAILABLE
    and stored not at all, Predict goes on, and every acknowledged row is on disk."""
    X, y = labelled
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--data-dir", str(small_disk))
    try:
        with server.client(retries=0) as client:
            acknowledged, _, e = fill_store(client, X, y, batch=100)
            if e is None:
                pytest.fail("512 KiB never filled up")
            assert isinstance(e, Unavailable) and "full" in e.message
            assert len(client.predict(X[:2], model="digits").prediction_ids) == 2
            assert client.health("candor.feedback_store") == "NOT_SERVING"
    finally:
        assert server.stop() == 0
    assert acknowledged and set(acknowledged) <= stored_ids(small_disk)


def test_read_only_store_files_then_writable_again(served_repo, labelled):
    """The store's files turn read-only while serving (immutable: every write fails): the batch is
    UNAVAILABLE, Predict goes on; once writable, the same batch goes through, its predictions still held."""
    X, y = labelled
    data_dir = served_repo.parent / "data"
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    # The database and its write-ahead log; not the -shm index, which SQLite maps into memory as scratch
    # space (an immutable mapping ends in SIGBUS, which no read-only filesystem would do to it).
    files = [str(p) for p in data_dir.iterdir() if not p.name.endswith("-shm")]
    try:
        with server.client(retries=0) as client:
            ids, result = predict_and_label(client, X[:20], y[:20])
            assert result.accepted == 20
            ids = client.predict(X[20:40], model="digits").prediction_ids
            privileged(["chattr", "+i", *files])
            try:
                with pytest.raises(Unavailable, match="nothing from this batch was stored"):
                    client.feedback(ids, y[20:40], model="digits")
                assert client.health("candor.feedback_store") == "NOT_SERVING" and client.health() == "SERVING"
                assert len(client.predict(X[:2], model="digits").prediction_ids) == 2
            finally:
                subprocess.run(["chattr", "-i", *files], check=True)
            assert client.feedback(ids, y[20:40], model="digits").accepted == 20
            assert client.health("candor.feedback_store") == "SERVING"
    finally:
        assert server.stop() == 0
    assert len(stored_ids(data_dir)) == 40
