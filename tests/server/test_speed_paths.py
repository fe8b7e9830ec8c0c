"""Issue 13's fast paths against real servers: the columnar answer and its per-row twin, the SDK's
lazy names and ids, cheap runs on the event loop, bulk drift summaries, and ``--workers N``."""

from __future__ import annotations

import json
import re
import threading

import grpc
import numpy as np
import pytest

from candor.client import PredictResult
from candor.server.core.batcher import DynamicBatcher
from candor.server.core.drift import SUMMARY_ROWS, SUMMARY_SPREAD_S, DriftWindow
from candor.server.core.plane import top_classes
from candor.server.core.tensors import all_finite
from candor.server.rpc.convert import INT32, to_raw
from candor.trainer.export import run_onnx
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow


def predict(target: str, rows: np.ndarray, *, columnar: bool, top_k: int = 3) -> pb.PredictResponse:
    tensor = pb.Tensor(shape=list(rows.shape), dtype=pb.DATA_TYPE_FLOAT32, raw_data=rows.astype("<f4").tobytes())
    with grpc.insecure_channel(target) as channel:
        request = pb.PredictRequest(model="digits", inputs=tensor, top_k=top_k, columnar=columnar)
        return pb_grpc.InferenceServiceStub(channel).Predict(request, timeout=10)


def test_columnar_and_per_row_layouts_carry_the_same_answer(server, digits_rows):
    columnar = predict(server.target, digits_rows, columnar=True)
    per_row = predict(server.target, digits_rows, columnar=False)
    n = len(digits_rows)
    # Columnar: one id, packed tensors, nothing per row in the repeated fields.
    assert re.fullmatch(r"[0-9a-f]{24}", columnar.request_id)
    assert list(columnar.top_k_index.shape) == [n, 3] and columnar.top_k_index.dtype == pb.DATA_TYPE_INT32
    assert not (columnar.prediction_ids or columnar.confidences or columnar.top_k_names or columnar.top_k_indices)
    # Per-row (deprecated): what clients of earlier releases read, and no columnar fields.
    assert len(per_row.prediction_ids) == n and not per_row.request_id and not per_row.HasField("top_k_index")
    a = PredictResult.from_proto(columnar, [str(i) for i in range(10)])
    b = PredictResult.from_proto(per_row)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_array_equal(a.top_k_indices, b.top_k_indices)
    np.testing.assert_array_equal(a.top_k_probabilities, b.top_k_probabilities)
    np.testing.assert_array_equal(a.confidences, b.confidences)
    assert a.labels == b.labels
    assert a.prediction_ids[5] == columnar.request_id + "00000005" and len(set(a.prediction_ids)) == n
    _, probs = run_onnx(server.repo / "digits/1/model.onnx", digits_rows)
    np.testing.assert_allclose(a.top_k_probabilities[:, 0], probs.max(axis=1), atol=1e-6)


def test_ids_made_from_the_request_id_join_feedback(served_repo, digits_rows):
    running = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        answer = predict(running.target, digits_rows[:6], columnar=True)
        ids = [f"{answer.request_id}{i:08x}" for i in range(6)]
        with running.client() as c:
            result = c.feedback(ids, [0, 1, 2, 3, 4, 5], model="digits")
            again = c.predict(digits_rows[6:9], model="digits")
            second = c.feedback(again.prediction_ids, [6, 7, 8], model="digits")
        assert result.outcomes == ["ACCEPTED"] * 6
        assert second.outcomes == ["ACCEPTED"] * 3
    finally:
        running.stop()


def test_the_sdk_fetches_class_names_once_per_version_and_maps_them(served_repo, digits_rows):
    manifest = served_repo / "digits/1/candor.json"
    data = json.loads(manifest.read_text())
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    data["class_names"] = names
    manifest.write_text(json.dumps(data))
    running = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with running.client() as c:
            results = [c.predict(digits_rows[i : i + 4], model="digits", top_k=2) for i in range(0, 12, 4)]
        for r in results:
            assert r.labels == [[names[i] for i in row] for row in r.top_k_indices.tolist()]
        wait_for(lambda: running.metric("candor_requests_total", rpc="Predict") == 3)
        assert running.metric("candor_requests_total", rpc="GetModel") == 1
    finally:
        running.stop()


def test_top_classes_break_ties_to_the_lower_index_for_every_k():
    probs = np.array([[0.2, 0.4, 0.4, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    for k in (1, 2, 4):
        indices, values = top_classes(probs, k)
        expected = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_array_equal(values, np.take_along_axis(probs, expected, axis=1))
        assert np.issubdtype(indices.dtype, np.integer)  # int32 once the response writes them


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_one_sum_finiteness_check_answers_as_isfinite_does_overflow_included(dtype):
    rng = np.random.default_rng(0)
    huge = np.finfo(dtype).max
    for trial in range(300):
        values = rng.normal(size=(int(rng.integers(1, 40)), int(rng.integers(1, 12)))).astype(dtype)
        kind = trial % 5  # 0: all finite; 1-3: a NaN, +inf or -inf somewhere; 4: finite values whose sum overflows
        where = tuple(int(rng.integers(0, d)) for d in values.shape)
        if kind in (1, 2, 3):
            values[where] = (np.nan, np.inf, -np.inf)[kind - 1]
        elif kind == 4:
            values[:] = huge
        assert all_finite(values) == bool(np.isfinite(values).all()), (trial, kind)
    both = np.array([np.inf, -np.inf], dtype)  # their sum is NaN: not finite either way
    assert not all_finite(both) and all_finite(np.zeros((0, 3), dtype))


def test_response_bytes_are_row_major_little_endian_whatever_the_layout():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    for view in (a, a.T, a[:, ::2], a.astype(np.float32)):
        assert to_raw(view) == np.ascontiguousarray(view, dtype="<f4").tobytes()
        assert to_raw(view, INT32) == np.ascontiguousarray(view, dtype="<i4").tobytes()


@pytest.mark.parametrize("inline", [True, False])
def test_cheap_runs_stay_on_the_event_loop_and_others_go_to_a_thread(inline):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    threads: list[str] = []

    def run(X):
        threads.append(threading.current_thread().name)
        return X * 2, X

    async def go():
        with ThreadPoolExecutor(1, thread_name_prefix="infer") as pool:
            batcher = DynamicBatcher(run, pool, max_batch_size=8, max_queue_delay_s=0, max_queue_rows=64,
                                     inline=lambda rows: inline)  # fmt: skip
            results = await asyncio.gather(*(batcher.submit(np.full((1, 2), i, np.float32)) for i in range(5)))
            await batcher.close()
            return results

    results = asyncio.run(go())
    assert [r[0][0, 0] for r in results] == [0, 2, 4, 6, 8]  # each job got exactly its own rows
    assert threads and all((t == "MainThread") == inline for t in threads)


def test_the_server_measures_run_cost_and_answers_the_same_inline_or_not(served_repo, digits_rows):
    answers = []
    for flag in ("0", "100000"):  # never inline / always inline
        running = start_server(served_repo, "--poll-interval-seconds", "0", "--inline-run-us", flag)
        try:
            answers.append(predict(running.target, digits_rows, columnar=True))
        finally:
            running.stop()
    assert answers[0].probabilities.raw_data == answers[1].probabilities.raw_data


def test_drift_summarised_in_bulk_equals_batch_by_batch(digits_repo):
    from candor.calibration.manifest import read_manifest

    reference = read_manifest(digits_repo / "digits/1/candor.json").reference
    rng = np.random.default_rng(0)
    batches = [rng.dirichlet(np.ones(10), size=n).astype(np.float32) for n in (1, 3, 7, 2, SUMMARY_ROWS + 44, 5)]
    one_by_one = DriftWindow(reference, 10, False, 100_000, 3600)
    for b in batches:
        one_by_one.add(b, now=0.0)
        one_by_one.report(now=0.0)  # a read folds what waits: every batch summarised on its own
    together = DriftWindow(reference, 10, False, 100_000, 3600)
    for b in batches:
        together.add(b, now=0.0)
    x, y = one_by_one.totals(), together.totals()
    assert x.rows == y.rows == sum(len(b) for b in batches)
    np.testing.assert_array_equal(x.confidence_fine, y.confidence_fine)
    np.testing.assert_array_equal(x.classes, y.classes)
    assert x.confidence_sum == pytest.approx(y.confidence_sum)
    rx, ry = one_by_one.report(now=0.0), together.report(now=0.0)
    assert rx.confidence_psi == pytest.approx(ry.confidence_psi) and rx.mean_entropy == pytest.approx(ry.mean_entropy)


def test_drift_batches_far_apart_age_out_separately(digits_repo):
    from candor.calibration.manifest import read_manifest

    reference = read_manifest(digits_repo / "digits/1/candor.json").reference
    window = DriftWindow(reference, 10, False, 100_000, max_age_s=10)
    rows = np.full((2, 10), 0.1, np.float32)
    window.add(rows, now=0.0)
    window.add(rows, now=SUMMARY_SPREAD_S + 5)  # too far from the first to share its summary
    assert window.report(now=12.0).rows == 2  # the first batch is older than 10 s, the second is not
