"""Batching, limits, hot reload and graceful stop on a real server process."""

import json
import shutil
import signal
import threading

import numpy as np
import pytest

from candor.calibration import read_manifest
from candor.calibration.manifest import write_manifest
from candor.client import CandorError, DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from candor.trainer.export import run_onnx
from tests.conftest import run_candor
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow


def predict_in_threads(server, rows_list, **kw):
    """Send each rows array as its own Predict from its own thread; return results or exceptions."""
    out = [None] * len(rows_list)

    def call(i):
        with server.client() as c:
            try:
                out[i] = c.predict(rows_list[i], model="digits", **kw)
            except CandorError as e:
                out[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(rows_list))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_batching_keeps_each_callers_rows_and_a_bad_request_hurts_no_one(served_repo, digits_rows):
    server = start_server(served_repo, "--max-queue-delay-ms", "300", "--max-batch-size", "64", "--poll-interval-seconds", "0")
    try:
        requests = [digits_rows[i : i + 1 + i % 3] for i in range(12)]
        requests[5] = np.full((2, 64), np.nan, np.float32)  # refused at validation, never joins a batch
        results = predict_in_threads(server, requests)
        _, expected = run_onnx(served_repo / "digits/1/model.onnx", digits_rows)
        for i, r in enumerate(results):
            if i == 5:
                assert isinstance(r, InvalidArgument) and r.code == "INVALID_ARGUMENT"
                continue
            np.testing.assert_allclose(r.probabilities, expected[i : i + 1 + i % 3], atol=1e-6)
        # 11 good requests, 300 ms to gather: far fewer runs than requests.
        runs = server.metric("candor_batch_size_rows_count", model="digits")
        rows = server.metric("candor_batch_size_rows_sum", model="digits")
        assert rows == sum(len(r) for i, r in enumerate(requests) if i != 5)  # the refused request never ran
    finally:
        server.stop()
    assert runs < 11


def test_queue_full_and_expired_deadline(served_repo):
    server = start_server(served_repo, "--max-queue-delay-ms", "3000", "--max-batch-size", "1000", "--max-queue-rows", "8",
                          "--max-rows-per-request", "8", "--poll-interval-seconds", "0")  # fmt: skip
    try:
        row = np.zeros((8, 64), np.float32)
        holder = threading.Thread(target=predict_in_threads, args=(server, [row]))
        holder.start()  # 8 rows wait 3 s for a batch that never fills: the queue is full
        wait_for(lambda: server.metric("candor_queue_rows", model="digits") == 8)
        with server.client() as c:
            with pytest.raises(ResourceExhausted, match="queue full"):
                c.predict(row[:1], model="digits")
        holder.join(30)
        assert server.metric("candor_rejected_requests_total", model="digits") == 1
        # A caller whose deadline passes while queued: the server drops the row unrun.
        with server.client(retries=0) as c:
            with pytest.raises(DeadlineExceeded):
                c.predict(row[:1], model="digits", timeout=0.3)
        wait_for(lambda: server.metric("candor_dropped_requests_total", model="digits") == 1)  # "cancelled" or "deadline"
        assert server.metric("candor_queue_rows", model="digits") == 0
        assert server.metric("candor_batch_size_rows_sum", model="digits") == 8  # only the first 8 rows ever ran
    finally:
        server.stop()


def test_hot_reload_of_new_and_corrupt_versions(served_repo, digits_rows, tmp_path):
    """While serving: a new version appears and is served; a corrupt version (sha256 mismatch) is reported
    FAILED while the last good one serves on; a loaded version whose files change on disk so that they no
    longer check out keeps its loaded copy serving; a deleted version is unloaded."""
    server = start_server(served_repo, "--poll-interval-seconds", "0.2")
    try:
        with server.client() as c:
            assert c.predict(digits_rows[:1], model="digits").version == "1"
        # A new version appears (as the trainer publishes: rename of a whole folder).
        result = run_candor("export", "--model-repository", str(served_repo), "--model", "digits")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: versions(server) == {"1": "READY", "2": "READY"})
        with server.client() as c:
            assert c.predict(digits_rows[:1], model="digits").version == "2"
        failures_before = server.metric("candor_model_load_failures_total", model="digits")
        # A corrupt version 3: its sha256 does not match. It is reported and 2 keeps serving.
        staging = tmp_path / "3"
        shutil.copytree(served_repo / "digits/2", staging)
        write_manifest(read_manifest(staging / "candor.json").replace(version=3), staging / "candor.json")
        with open(staging / "model.onnx", "ab") as f:
            f.write(b"corrupt")
        staging.rename(served_repo / "digits/3")
        wait_for(lambda: versions(server).get("3") == "FAILED")
        with server.client() as c:
            described = {m.version: m for m in c.models()}
            assert "sha256" in described["3"].message
            assert c.predict(digits_rows[:1], model="digits").version == "2"
            with pytest.raises(Unavailable, match="FAILED"):
                c.predict(digits_rows[:1], model="digits", version=3)
        assert server.metric("candor_model_load_failures_total", model="digits") == failures_before + 1
        # Version 2's files replaced by broken ones in place: the loaded copy keeps serving.
        manifest = read_manifest(served_repo / "digits/2/candor.json")
        write_manifest(manifest.replace(model_sha256="0" * 64), served_repo / "digits/2/candor.json")
        wait_for(lambda: "previous copy" in {m.version: m for m in server.client().models()}["2"].message)
        with server.client() as c:
            assert c.predict(digits_rows[:1], model="digits").version == "2"
        # Removing a version unloads it.
        shutil.rmtree(served_repo / "digits/3")
        wait_for(lambda: "3" not in versions(server))
    finally:
        server.stop()


def test_graceful_shutdown_loses_no_call_in_flight(served_repo, digits_rows):
    """SIGTERM with six calls waiting in the batcher: all six are answered, then the server exits 0."""
    server = start_server(served_repo, "--max-queue-delay-ms", "5000", "--max-batch-size", "1000", "--grace-period-seconds", "10",
                          "--poll-interval-seconds", "0")  # fmt: skip
    results = []
    caller = threading.Thread(
        target=lambda: results.extend(predict_in_threads(server, [digits_rows[i : i + 1] for i in range(6)]))
    )
    caller.start()
    wait_for(lambda: server.metric("candor_queue_rows", model="digits") == 6)  # all six wait for their batch
    server.proc.send_signal(signal.SIGTERM)
    caller.join(30)
    assert server.proc.wait(30) == 0
    assert len(results) == 6 and all(not isinstance(r, Exception) for r in results), results
    # The answers came while the server stopped, so the SDK could not fetch the class names (GetModel is
    # refused): the answer is whole, and only labels, which need the names, says why.
    for r in results:
        assert r.top_k_indices.shape == (1, 1) and len(r.prediction_ids) == 1
        with pytest.raises(Unavailable):
            _ = r.labels
    with pytest.raises(Unavailable):
        with server.client(retries=0, timeout=2) as c:
            c.predict(digits_rows[:1], model="digits")


def test_metrics_endpoint(server, digits_rows):
    with server.client() as c:
        c.predict(digits_rows[:5], model="digits")
    text = server.metrics_text()
    assert 'candor_model_info{model="digits",provider="CPUExecutionProvider",task="multiclass",version="1"} 1.0' in text
    assert server.metric("candor_requests_total", rpc="Predict", code="OK") >= 1
    assert server.metric("candor_predicted_rows_total", model="digits", version="1") >= 5
    assert server.metric("candor_confidence_count", model="digits") >= 5
    assert server.metric("candor_predictions_total", model="digits", class_name="0") >= 1
    for name in ("candor_request_duration_seconds_bucket", "candor_queue_duration_seconds_bucket",
                 "candor_inference_duration_seconds_bucket", "candor_queue_rows", "candor_inflight_requests"):  # fmt: skip
        assert name in text


def test_settings_from_environment_file_and_refusals(served_repo, tmp_path):
    settings = tmp_path / "candor.toml"
    settings.write_text("max_batch_size = 16\npoll_interval_s = 0\n")
    server = start_server(served_repo, "--settings", str(settings), env={"CANDOR_MAX_QUEUE_ROWS": "5000"})
    try:
        with server.client() as c:
            assert c.models()[0].state == "READY"
    finally:
        server.stop()
    bad = [
        (["--max-batch-size", "0"], {}, "--max-batch-size: field 'max_batch_size' must be greater than or equal to 1, got 0"),
        ([], {"CANDOR_GRPC_PORT": "eighty"},
         "environment variable CANDOR_GRPC_PORT: field 'grpc_port' must be a valid integer, unable to parse string as an "
         "integer, got 'eighty'"),
        (["--provider", "tpu"], {}, "field 'provider' must be 'auto', 'cpu' or 'cuda', got 'tpu'"),
        (["--settings", str(tmp_path / "none.toml")], {}, "cannot read"),
    ]
    (tmp_path / "unknown.json").write_text(json.dumps({"batch": 3}))
    bad.append((["--settings", str(tmp_path / "unknown.json")], {}, "unknown field 'batch' (allowed here: model_repository, "))
    for flags, env, message in bad:
        result = run_candor("serve", "--model-repository", str(served_repo), *flags, env=env, timeout=60)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def versions(server) -> dict[str, str]:
    with server.client() as c:
        return {m.version: m.state for m in c.models()}


def test_message_size_limit(served_repo):
    server = start_server(served_repo, "--max-message-bytes", "100000", "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            with pytest.raises(ResourceExhausted):
                c.predict(np.zeros((1000, 64), np.float32), model="digits")  # 256 kB of floats
            assert c.predict(np.zeros((100, 64), np.float32), model="digits").probabilities.shape == (100, 10)
    finally:
        server.stop()
