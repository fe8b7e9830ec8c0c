"""Nothing a client sends corrupts shared state, poisons a recalibration or exhausts the server
(issue 15). Real `candor serve` processes on 127.0.0.1; each test names the attack it replays."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sklearn.datasets import load_digits

from candor.client import Cancelled, Client, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from candor.client._client import rows_tensor
from candor.server.core.predictions import new_request_id
from candor.server.core.store import FeedbackRow, LoggedRequest
from candor.server.store.sqlite import SQLiteStore
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow  # real servers in child processes

HUGE = np.full((1, 64), 3.4e38, np.float32)  # finite, and enough to overflow the digits MLP
TOKENS = {"infer": "i" * 32, "admin": "a" * 32}


@pytest.fixture(scope="module")
def labelled():
    d = load_digits()
    return d.data.astype(np.float32), d.target


def store_of(repo: Path) -> SQLiteStore:
    return SQLiteStore(repo.parent / "data" / "feedback.sqlite3")


def stub(server) -> tuple[grpc.Channel, inference_pb2_grpc.InferenceServiceStub]:
    channel = grpc.insecure_channel(server.target)
    return channel, inference_pb2_grpc.InferenceServiceStub(channel)


def rows_request(rows: np.ndarray, version: str = "") -> pb.PredictRequest:
    return pb.PredictRequest(model="digits", version=version,
                             inputs=pb.Tensor(shape=list(rows.shape), raw_data=rows.astype("<f4").tobytes()))  # fmt: skip


# --- 1. non-finite outputs ----------------------------------------------------------------------


def test_rows_with_non_finite_outputs_are_refused_and_poison_nothing(served_repo, digits_rows):
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            with pytest.raises(InvalidArgument, match=r"not finite .* for 1 of 3 rows \(rows 1\).*Nothing from this"):
                c.predict(np.concatenate([digits_rows[:1], HUGE, digits_rows[1:2]]), model="digits")
            ids = c.predict(digits_rows[:8], model="digits").prediction_ids
            assert c.feedback(ids, [0] * 8, model="digits").accepted == 8
            # A stream answers the bad message with its own error and goes on.
            requests = [pb.PredictStreamRequest(request=rows_request(r), correlation_id=str(i))
                        for i, r in enumerate([HUGE, digits_rows[:1]])]  # fmt: skip
            channel, s = stub(server)
            with channel:
                answers = list(s.PredictStream(iter(requests), timeout=10))
            assert answers[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and answers[1].response.model
            # The refused request's two finite rows were predicted, and count as traffic; the overflowed ones do not.
            report = c.calibration("digits")
            assert report.drift.rows == 11 and np.isfinite(report.drift.confidence_psi)
            assert report.observed.rows == 8 and np.isfinite(report.observed.ece)
        server.metrics_text()  # answers at all (it answered HTTP 500 before)
        assert np.isfinite(server.metric("candor_confidence_sum", model="digits"))
        assert np.isfinite(server.metric("candor_confidence_psi", model="digits"))
        assert server.metric("candor_nonfinite_rows_total", model="digits", version="1") == 2
        assert server.metric("candor_predicted_rows_total", model="digits") == 11
    finally:
        server.stop()


def test_non_finite_rows_stored_by_older_servers_are_ignored(served_repo, labelled):
    """A NaN feedback row and a logged request with a NaN row, as an older server stored them."""
    X, y = labelled
    store = store_of(served_repo)
    nan_probs = np.full(10, np.nan, np.float32)
    now = time.time()
    store.insert([FeedbackRow("old-nan-row", "digits", 1, 3, nan_probs, nan_probs, now - 5, now - 1)])
    request_id = new_request_id(now)
    logged = np.stack([nan_probs, np.full(10, 0.1, np.float32)])
    store.log_predictions([LoggedRequest(request_id, "digits", 1, now, logged, logged)])
    store.close()
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            assert c.feedback([f"{request_id}00000000"], [3], model="digits").outcomes == ["UNKNOWN_ID"]
            assert c.feedback([f"{request_id}00000001"], [3], model="digits").outcomes == ["ACCEPTED"]
            ids = c.predict(X[:120], model="digits").prediction_ids
            c.feedback(ids, y[:120], model="digits")
            report = c.calibration("digits")
            assert report.observed.rows == 121 and np.isfinite(report.observed.nll)
            result = c.recalibrate("digits", dry_run=True)  # fits on finite rows only: no INTERNAL
            assert result.fit_rows + result.holdout_rows == 121
        assert server.metric("candor_requests_total", code="INTERNAL") == 0
    finally:
        server.stop()


# --- 2 and 3. client-recorded feedback ----------------------------------------------------------------


def test_client_recorded_feedback_cannot_poison_recalibration(served_repo, labelled):
    """The issue's attack: 400 rows of made-up logits with random labels from the lowest role, then an admin
    Recalibrate. They are left out unless the admin asks for them; asked for (here as a dry run), the answer
    shows the refit's cost on the version's own validation rows beside the feedback numbers."""
    X, _ = labelled
    tokens = served_repo.parent / "tokens"
    tokens.write_text(f"{TOKENS['infer']} infer\n{TOKENS['admin']} admin\n")
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--auth-tokens-file", str(tokens))
    rng = np.random.default_rng(0)
    try:
        with server.client(token=TOKENS["infer"]) as c:
            logits = c.predict(X[:400], model="digits", return_logits=True).logits
            result = c.feedback(None, rng.integers(0, 10, 400), model="digits", logits=logits)
            assert result.accepted == 400
        with server.client(token=TOKENS["admin"]) as admin:
            with pytest.raises(FailedPrecondition, match="has 0 usable feedback rows"):
                admin.recalibrate("digits")
            opted = admin.recalibrate("digits", include_client_recorded=True, dry_run=True)
            assert opted.included_client_recorded and opted.fit_rows + opted.holdout_rows == 400
            assert opted.validation_nll[1] > 5 * opted.validation_nll[0] > 0  # the trade-off, in the answer
            assert [m.version for m in admin.models()] == ["1"]
    finally:
        server.stop()


def test_client_recorded_rows_have_their_own_id_space_and_ids_are_capped(served_repo, digits_rows):
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            served = c.predict(digits_rows[:2], model="digits", return_logits=True)
            # An attacker sends its own record under a served prediction's id ...
            taken = c.feedback(served.prediction_ids[:1], [9], model="digits", logits=served.logits[:1])
            assert taken.outcomes == ["ACCEPTED"]
            # ... and the prediction's owner still gets its label in.
            assert c.feedback(served.prediction_ids, [0, 1], model="digits").outcomes == ["ACCEPTED", "ACCEPTED"]
            with pytest.raises(InvalidArgument, match="item 1: prediction_id has 129 characters, at most 128"):
                c.feedback(["a", "x" * 129], [0, 0], model="digits", logits=np.zeros((2, 10)))
        with sqlite3.connect(served_repo.parent / "data" / "feedback.sqlite3") as db:
            rows = dict(db.execute("SELECT prediction_id, client_recorded FROM feedback"))
        assert rows == {f"client:{served.prediction_ids[0]}": 1, served.prediction_ids[0]: 0, served.prediction_ids[1]: 0}
    finally:
        server.stop()


def test_the_store_has_a_row_cap(served_repo, digits_rows):
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--feedback-store-max-rows", "5")
    try:
        with server.client() as c:
            ids = c.predict(digits_rows[:8], model="digits").prediction_ids
            assert c.feedback(ids[:4], [0] * 4, model="digits").accepted == 4
            with pytest.raises(ResourceExhausted, match="holds 4 rows and this batch adds 2, over its limit of 5"):
                c.feedback(ids[4:6], [0, 0], model="digits")
            assert c.feedback(ids[4:5], [0], model="digits").accepted == 1
    finally:
        server.stop()


# --- 4. resource bounds -------------------------------------------------------------------------------


def test_the_message_limit_follows_the_models_and_covers_decompressed_size(served_repo):
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        log = "".join(server.process.output)
        limit = int(log.split("largest gRPC message accepted: ")[1].split(" bytes")[0])
        # digits: 4096 rows x 64 features x 4 bytes is the largest Predict; feedback with 10 classes is smaller.
        assert limit == 4096 * 64 * 4 + 64 * 1024
        big = np.zeros((5000, 64), np.float32)  # over the limit, over max_rows too: the size refuses it first
        request = pb.PredictRequest(model="digits", inputs=rows_tensor(big))
        with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                inference_pb2_grpc.InferenceServiceStub(channel).Predict(request, timeout=30)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in refused.value.details()
        with server.client() as c:  # the SDK splits the same rows into requests the server takes
            assert c.predict(big, model="digits").probabilities.shape == (5000, 10)
        with grpc.insecure_channel(server.target, compression=grpc.Compression.Gzip) as channel:
            bomb = b"\0" * (8 << 20)  # a few KiB of gzip on the wire
            with pytest.raises(grpc.RpcError) as e:
                channel.unary_unary("/candor.v1.InferenceService/Predict")(bomb, timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop()


def test_unauthenticated_calls_are_refused_before_their_body_is_read(served_repo):
    tokens = served_repo.parent / "tokens"
    tokens.write_text(f"{TOKENS['infer']} infer\n")
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--auth-tokens-file", str(tokens),
                          "--max-message-bytes", str(64 << 20))  # fmt: skip
    try:
        status = Path(f"/proc/{server.proc.pid}/status")

        def peak_mib() -> float:
            return int(status.read_text().split("VmHWM:")[1].split()[0]) / 1024

        before = peak_mib()
        options = [("grpc.max_send_message_length", 64 << 20)]
        with grpc.insecure_channel(server.target, options=options) as channel:
            predict = channel.unary_unary("/candor.v1.InferenceService/Predict")
            for _ in range(4):
                with pytest.raises(grpc.RpcError) as e:
                    predict(b"\x0a" * (60 << 20), timeout=30)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Receiving and parsing one 60 MB body would raise the peak by more than 60 MiB.
        assert peak_mib() - before < 50, (before, peak_mib())
    finally:
        server.stop()


def test_a_call_whose_body_never_arrives_times_out(served_repo):
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--default-deadline-seconds", "1")
    never = threading.Event()

    def no_body():
        never.wait(30)  # the request stream stays open and sends nothing
        return
        yield

    try:
        with grpc.insecure_channel(server.target) as channel:
            call = channel.stream_unary("/candor.v1.InferenceService/Predict").future(no_body())  # no deadline
            with pytest.raises(grpc.RpcError) as e:
                call.result(timeout=15)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "default_deadline_s" in e.value.details()
    finally:
        never.set()
        server.stop()


def test_connection_and_health_watch_caps(served_repo):
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--max-health-watches", "2", "--max-connections", "3")
    channels = [grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
    try:
        watch = health_pb2_grpc.HealthStub(channels[0]).Watch
        streams = [watch(health_pb2.HealthCheckRequest(service=""), timeout=20) for _ in range(2)]
        assert [next(s).status for s in streams] == [health_pb2.HealthCheckResponse.SERVING] * 2
        with pytest.raises(grpc.RpcError) as e:
            next(watch(health_pb2.HealthCheckRequest(service=""), timeout=20))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_health_watches" in e.value.details()
        for s in streams:
            s.cancel()
        check = health_pb2.HealthCheckRequest(service="")
        answers = []
        for channel in channels[1:]:
            try:
                answers.append(health_pb2_grpc.HealthStub(channel).Check(check, timeout=5).status)
            except grpc.RpcError as err:
                answers.append(err.code())
        # Three connections are allowed (one is the Watch channel's); the fourth is closed at accept.
        assert answers[:2] == [health_pb2.HealthCheckResponse.SERVING] * 2 and answers[2] == grpc.StatusCode.UNAVAILABLE
    finally:
        for channel in channels:
            channel.close()
        server.stop()


def test_oversized_typed_floats_are_refused_by_count_before_conversion(served_repo):
    """15M typed floats for shape [1, 64] under a limit an operator raised: parsing the message costs what it
    costs (about 2 x 60 MB), but no Python list of 15M floats (about 500 MB more) is built before the refusal."""
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--max-message-bytes", str(80 << 20))
    status = Path(f"/proc/{server.proc.pid}/status")
    peak = lambda: int(status.read_text().split("VmHWM:")[1].split()[0]) / 1024  # noqa: E731
    try:
        before = peak()
        tensor = pb.Tensor(shape=[1, 64], float_data=np.zeros(15_000_000, np.float32))
        with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 80 << 20)]) as channel:
            with pytest.raises(grpc.RpcError) as e:
                inference_pb2_grpc.InferenceServiceStub(channel).Predict(pb.PredictRequest(model="digits", inputs=tensor),
                                                                         timeout=30)  # fmt: skip
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "typed input holds 15000000 values; shape [1, 64] needs 64"
        assert peak() - before < 300, (before, peak())
    finally:
        server.stop()


def test_the_metrics_endpoint_is_loopback_bounded_and_times_out_half_sent_requests(served_repo):
    from candor.server.core.settings import Settings

    assert Settings().metrics_host == "127.0.0.1"
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    status = Path(f"/proc/{server.proc.pid}/status")

    def threads() -> int:
        return int(status.read_text().split("Threads:")[1].split()[0])

    before = threads()
    half_sent = []
    try:
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends the head
            half_sent.append(s)
        assert "candor_requests_total" in server.metrics_text()  # a real scrape still answers
        assert threads() <= before + 2, (before, threads())  # was one thread per connection
        half_sent[0].settimeout(15)
        assert half_sent[0].recv(100).startswith(b"HTTP/1.1 408")  # timed out, answered, closed
    finally:
        for s in half_sent:
            s.close()
        server.stop()


def test_a_collector_that_raises_costs_only_its_own_series():
    from prometheus_client import CollectorRegistry, generate_latest

    from candor.server.observability.collectors import GuardedCollector
    from candor.server.observability.metrics import ServerMetrics

    class Broken:
        def collect(self):
            raise ValueError("a bug in a collector")

    metrics = ServerMetrics(CollectorRegistry())
    metrics.registry.register(GuardedCollector("drift", Broken(), metrics.collector_failed))
    text = generate_latest(metrics.registry).decode()
    assert "candor_inflight_requests" in text
    assert metrics.registry.get_sample_value("candor_metrics_collector_failures_total", {"collector": "drift"}) == 1


# --- 7 and 8. versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["²", "¹", "١", "9" * 5000, "0", "-1", " 1"])
def test_versions_are_ascii_digits_of_bounded_length(server, digits_rows, version):
    channel, s = stub(server)
    with channel:
        with pytest.raises(grpc.RpcError) as e:
            s.Predict(rows_request(digits_rows[:1], version), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ASCII digits" in e.value.details()
        assert len(e.value.details()) < 300
        answers = list(s.PredictStream(iter([pb.PredictStreamRequest(request=rows_request(digits_rows[:1], version)),
                                             pb.PredictStreamRequest(request=rows_request(digits_rows[:1]))]),
                                       timeout=10))  # fmt: skip
        assert answers[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and answers[1].response.model == "digits"
        with pytest.raises(grpc.RpcError) as e:
            s.GetCalibration(pb.GetCalibrationRequest(model="digits", version=version), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stray_folders_are_ignored_and_the_watcher_keeps_going(served_repo):
    (served_repo / "digits" / "²").mkdir()  # there at start-up
    server = start_server(served_repo, "--poll-interval-seconds", "0.2")
    try:
        (served_repo / "digits" / "¹").mkdir()  # appears while serving
        shutil.copytree(served_repo / "digits" / "1", served_repo / "digits" / ".incoming")
        manifest = served_repo / "digits" / ".incoming" / "candor.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": 2}))
        (served_repo / "digits" / ".incoming").rename(served_repo / "digits" / "2")
        with server.client() as c:
            wait_for(lambda: [m.version for m in c.models()] == ["1", "2"])
        log = "".join(server.process.output)
        assert "ignoring" in log and "¹" in log and "²" in log and "Traceback" not in log
    finally:
        server.stop()


def test_a_repository_root_gone_for_a_moment_keeps_serving(served_repo, digits_rows):
    server = start_server(served_repo, "--poll-interval-seconds", "0.1")
    away = served_repo.with_name("models-away")
    try:
        with server.client() as c:
            served_repo.rename(away)
            time.sleep(0.5)  # several polls see no root
            assert c.predict(digits_rows[:2], model="digits").probabilities.shape == (2, 10)
            away.rename(served_repo)
            time.sleep(0.3)
            assert [m.version for m in c.models()] == ["1"]
        assert "model repository" in "".join(server.process.output) and "still serving" in "".join(server.process.output)
    finally:
        if away.exists():
            away.rename(served_repo)
        server.stop()


# --- 9. recalibrate ------------------------------------------------------------------------------------


def shifted(X: np.ndarray) -> np.ndarray:
    """Covariate shift (as in test_core's drift scenario): the model turns overconfident on it."""
    return np.clip(X + np.random.default_rng(1).normal(0, 2.0, X.shape), 0, 16).astype(np.float32)


def label_served(c: Client, X: np.ndarray, y: np.ndarray) -> None:
    ids = c.predict(X, model="digits").prediction_ids
    c.feedback(ids, y, model="digits")


def test_recalibrate_refusals_are_failed_precondition(served_repo, labelled):
    X, y = labelled
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            label_served(c, X[:30], y[:30])
            with pytest.raises(FailedPrecondition, match="leaves .* to fit and .* to check; each side needs at least 10"):
                c.recalibrate("digits", min_rows=1, holdout_share=0.999)
            with pytest.raises(FailedPrecondition, match="each side needs at least 10"):
                c.recalibrate("digits", min_rows=1, holdout_share=0.1)
        assert server.metric("candor_requests_total", code="INTERNAL") == 0
    finally:
        server.stop()


def test_publishing_into_a_repository_that_cannot_be_written_is_failed_precondition(digits_repo, labelled, tmp_path):
    """Core level: as root, permissions cannot make a folder unwritable here, so the repository is a path
    under a file (ENOTDIR), which takes the same OSError path as EACCES or EROFS."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor as Pool

    from candor.server.core.errors import FailedPrecondition as CoreFailedPrecondition
    from candor.server.core.events import Events
    from candor.server.core.recalibrate import recalibrate
    from candor.server.core.repository import ModelRepository
    from candor.server.core.settings import Settings

    X, y = labelled
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    async def run():
        settings = Settings(model_repository=str(digits_repo), poll_interval_s=0).check()
        repository = ModelRepository(digits_repo, settings, Pool(1), Events())
        await repository.refresh()
        model = repository.resolve("digits", "1")
        noisy = shifted(X[:600])
        logits, _ = model.opened.run(noisy)
        rows = [FeedbackRow(str(i), "digits", 1, int(label), np.zeros(10), z, 0.0, float(i))
                for i, (label, z) in enumerate(zip(y[:600], logits, strict=True))]  # fmt: skip
        try:
            with pytest.raises(CoreFailedPrecondition, match="cannot write the new version into the model repository"):
                recalibrate(blocker / "models", model, rows)
        finally:
            await repository.close()

    asyncio.run(run())


def test_concurrent_identical_recalibrations_publish_once(served_repo, labelled):
    X, y = labelled
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    noisy = shifted(X[:800])
    try:
        with server.client() as c:
            label_served(c, noisy, y[:800])  # overconfident under the shift: a refit is significant
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda _: _try(lambda: c.recalibrate("digits", "1")), range(8)))
            published = {a.new_version for a in answers if not isinstance(a, Exception) and a.published}
            errors = [type(a).__name__ for a in answers if isinstance(a, Exception)]
            assert published == {"2"}, answers
            assert set(errors) <= {"Aborted", "FailedPrecondition"}, answers
            assert [m.version for m in c.models()] == ["1", "2"]
        assert sorted(p.name for p in (served_repo / "digits").iterdir() if not p.name.startswith(".")) == ["1", "2"]
        assert server.metric("candor_requests_total", code="INTERNAL") == 0
    finally:
        server.stop()


def _try(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the test sorts what came back
        return e


def test_the_sdk_never_retries_recalibrate():
    """A server that is UNAVAILABLE for everything (CANCELLED for GetModel, as a stopping server cancels a call it
    had not handed over): models() and model() are retried, recalibrate() is sent once."""
    import asyncio

    calls: dict[str, int] = {}

    async def serve(ready: threading.Event, stop: threading.Event, port: list[int]):
        def unavailable(name: str):
            async def answer(request, context):
                calls[name] = calls.get(name, 0) + 1
                code = grpc.StatusCode.CANCELLED if name == "GetModel" else grpc.StatusCode.UNAVAILABLE
                await context.abort(code, "going away")

            return grpc.unary_unary_rpc_method_handler(answer)

        handler = grpc.method_handlers_generic_handler("candor.v1.InferenceService", {
            name: unavailable(name) for name in ("Recalibrate", "ListModels", "GetModel")})  # fmt: skip
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.stop(0)

    ready, stop, port = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=lambda: asyncio.run(serve(ready, stop, port)))
    thread.start()
    ready.wait(10)
    try:
        with Client(f"127.0.0.1:{port[0]}", retries=3) as c:
            with pytest.raises(Unavailable):
                c.models()
            with pytest.raises(Unavailable):
                c.recalibrate("digits")
            with pytest.raises(Cancelled):
                c.model("digits")
        assert calls == {"ListModels": 4, "Recalibrate": 1, "GetModel": 4}
    finally:
        stop.set()
        thread.join(10)


# --- 10 and 11. echoed input, SIGTERM -------------------------------------------------------------------


def test_messages_never_echo_unbounded_input(server, digits_rows):
    name = "m" * (512 << 10)
    with server.client() as c, pytest.raises(NotFound) as e:
        c.predict(digits_rows[:1], model=name)
    assert "(524288 characters)" in str(e.value) and len(str(e.value)) < 400


def test_calls_arriving_at_sigterm_are_unavailable_never_cancelled(served_repo, digits_rows):
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--grace-period-seconds", "5")
    codes: list[str] = []
    stop = threading.Event()

    def load():
        with server.client(retries=0) as c:
            while not stop.is_set():
                try:
                    c.predict(digits_rows[:4], model="digits")
                    codes.append("OK")
                except Exception as e:  # noqa: BLE001 - the codes are the point
                    codes.append(getattr(e, "code", type(e).__name__))
                    if codes[-1] == "UNAVAILABLE":
                        return

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert server.stop(signal.SIGTERM) == 0
    stop.set()
    for t in threads:
        t.join(20)
    assert codes.count("OK") > 20 and set(codes) <= {"OK", "UNAVAILABLE"}, sorted(set(codes))


def test_idle_connections_are_closed_by_the_server(served_repo):
    """--connection-idle-seconds: a connection without calls gets GOAWAY; the client sees its channel go IDLE
    (and would reconnect on its next call)."""
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--connection-idle-seconds", "0.5")
    states: list[grpc.ChannelConnectivity] = []
    try:
        with grpc.insecure_channel(server.target) as channel:
            channel.subscribe(states.append, try_to_connect=False)
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            wait_for(lambda: grpc.ChannelConnectivity.READY in states
                     and states[-1] == grpc.ChannelConnectivity.IDLE, timeout=15)  # fmt: skip
            assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
            channel.unsubscribe(states.append)
    finally:
        server.stop()
