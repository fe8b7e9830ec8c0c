"""Prediction sets served per request: candor.v1 through the SDK (sync and async), the CLI and KServe's
``prediction_set`` output, each equal to the sets computed offline from the version's stored scores,
and every bad request answered with the right code and the allowed range."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import tritonclient.grpc as triton

from candor.calibration.calibrators import fit_calibrator
from candor.calibration.conformal import score_of, threshold
from candor.calibration.conformal.split import read_split
from candor.calibration.lineage import Refit, publish_child
from candor.calibration.manifest import read_manifest
from candor.calibration.reference import read_sample
from candor.client import AsyncClient, FailedPrecondition, InvalidArgument
from candor.graph import set_calibrator
from tests.conftest import REPO_ROOT, run_candor
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow


def offline_sets(repo, probabilities: np.ndarray, coverage: float, method: str) -> list[list[int]]:
    """The sets from the version's conformal.npz alone, most probable class first."""
    folder = repo / "digits/1"
    spec = read_manifest(folder / "candor.json").conformal
    split = read_split(folder, spec)
    options = {"penalty_weight": spec.raps_penalty, "k_reg": spec.raps_k_reg} if method == "raps" else {}
    score = score_of(method, **options)
    member = score.sets(probabilities.astype(np.float64), threshold(split.scores[method], coverage))
    order = np.argsort(-probabilities.astype(np.float64), axis=1, kind="stable")
    return [[int(c) for c in row if member[i, c]] for i, row in enumerate(order)]


@pytest.mark.parametrize("method", ["", "lac", "aps", "raps"])
def test_sdk_sets_equal_the_offline_sets(server, digits_rows, method):
    rows = np.tile(digits_rows, (8, 1))[:300] + np.random.default_rng(0).normal(0, 2, (300, 64)).astype(np.float32)
    with server.client() as client:
        described = client.model("digits")
        r = client.predict(rows, model="digits", coverage=0.9, conformal_method=method)
    assert described.conformal_methods == ["lac", "aps", "raps"]
    assert described.max_coverage == pytest.approx(described.max_coverage) and 0.99 < described.max_coverage < 1
    resolved = method or described.recommended_conformal_method
    assert (r.coverage, r.conformal_method) == (0.9, resolved)
    assert r.sets == offline_sets(server.repo, r.probabilities, 0.9, resolved)
    assert r.set_labels[0] == [str(c) for c in r.sets[0]]
    assert len(r.sets) == 300 and r.set_sizes.tolist() == [len(s) for s in r.sets]
    assert any(len(s) > 1 for s in r.sets) or any(len(s) == 0 for s in r.sets) or resolved == "lac"


def test_higher_coverage_gives_sets_that_contain_the_lower_ones(server, digits_rows):
    with server.client() as client:
        low = client.predict(digits_rows[:200], model="digits", coverage=0.8, conformal_method="aps").sets
        high = client.predict(digits_rows[:200], model="digits", coverage=0.95, conformal_method="aps").sets
    assert all(set(a) <= set(b) for a, b in zip(low, high, strict=True))
    assert sum(map(len, high)) > sum(map(len, low))


def test_async_client_gets_the_same_sets(server, digits_rows):
    async def go():
        async with AsyncClient(server.target) as client:
            return await client.predict(digits_rows[:50], model="digits", coverage=0.9, conformal_method="raps")

    with server.client() as client:
        expected = client.predict(digits_rows[:50], model="digits", coverage=0.9, conformal_method="raps").sets
    assert asyncio.run(go()).sets == expected


def test_sets_split_across_requests_join_in_row_order(served_repo, digits_rows):
    server = start_server(served_repo, "--max-rows-per-request", "64")
    try:
        with server.client() as client:
            rows = np.tile(digits_rows, (20, 1))[:500]  # more than the SDK sends before learning the limit
            joined = client.predict(rows, model="digits", coverage=0.9)
            pieces = [client.predict(rows[i : i + 64], model="digits", coverage=0.9).sets for i in range(0, 500, 64)]
    finally:
        server.stop()
    assert joined.sets == [s for piece in pieces for s in piece]


@pytest.mark.parametrize("coverage, method, message", [
    (1.5, "", "coverage must lie in (0, 1), got 1.5"),
    (-0.1, "", "coverage must lie in (0, 1), got -0.1"),
    (0.9999, "", "coverage 0.9999 needs at least 9999 calibration rows"),
    (0.9, "sideways", "conformal method 'sideways' is not one this version serves; choose one of lac, aps, raps"),
    (0.0, "aps", "needs a coverage level in (0, 0.99"),
])  # fmt: skip
def test_bad_levels_and_methods_are_invalid_argument_naming_the_allowed_range(server, digits_rows, coverage, method, message):
    with server.client() as client:
        with pytest.raises(InvalidArgument) as e:
            client.predict(digits_rows[:4], model="digits", coverage=coverage, conformal_method=method)
        assert message in e.value.message
        if coverage == 0.9999:
            assert "allowed: coverage in (0, 0.99" in e.value.message
        # nothing was broken: the next request is answered
        assert len(client.predict(digits_rows[:4], model="digits", coverage=0.9).sets) == 4


def test_a_multilabel_version_refuses_sets_as_failed_precondition(tmp_path, digits_rows):
    repo = tmp_path / "models"
    trained = run_candor("train", "--dataset", "synthetic_multilabel", "--n-samples", "300", "--n-classes", "3", "--epochs",
                         "3", "--model-repository", str(repo), "--model", "tags")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert read_manifest(repo / "tags/1/candor.json").conformal is None
    server = start_server(repo)
    try:
        with server.client() as client:
            width = client.model("tags").num_features
            with pytest.raises(FailedPrecondition, match="is multi-label: prediction sets cover one label per row"):
                client.predict(np.zeros((2, width), np.float32), model="tags", coverage=0.9)
            assert client.model("tags").conformal_methods == []
    finally:
        server.stop()


def test_kserve_prediction_set_output_is_the_default_level_and_method(server, digits_rows):
    rows = digits_rows[:40]
    client = triton.InferenceServerClient(server.target)
    meta = client.get_model_metadata("digits")
    outputs = {o.name: (o.datatype, list(o.shape)) for o in meta.outputs}
    assert outputs["prediction_set"] == ("BOOL", [-1, 10])
    inp = triton.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    result = client.infer("digits", [inp], outputs=[triton.InferRequestedOutput("prediction_set")])
    mask = result.as_numpy("prediction_set")
    client.close()
    with server.client() as c:
        described = c.model("digits")
        expected = c.predict(rows, model="digits", coverage=described.default_coverage).sets
    assert mask.dtype == bool and mask.shape == (40, 10)
    assert [sorted(np.flatnonzero(m).tolist()) for m in mask] == [sorted(s) for s in expected]


def test_cli_prints_the_sets_and_refuses_a_bad_level_in_one_line(server, digits_rows, tmp_path):
    np.save(tmp_path / "rows.npy", digits_rows[:5])
    args = ("predict", "--target", server.target, "--model", "digits", "--input", str(tmp_path / "rows.npy"))
    result = run_candor(*args, "--coverage", "0.9", "--conformal-method", "aps", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    with server.client() as client:
        expected = client.predict(digits_rows[:5], model="digits", coverage=0.9, conformal_method="aps")
    assert (out["coverage"], out["conformal_method"]) == (0.9, "aps")
    assert [p["prediction_set"] for p in out["predictions"]] == expected.sets
    table = run_candor(*args, "--coverage", "0.9")
    assert table.returncode == 0 and "prediction sets at coverage 0.9" in table.stdout and "|  {" in table.stdout
    bad = run_candor(*args, "--coverage", "2")
    assert bad.returncode == 2 and "expected a coverage level in (0, 1)" in bad.stderr and "Traceback" not in bad.stderr
    finer = run_candor(*args, "--coverage", "0.9999")
    assert finer.returncode != 0 and "allowed: coverage in (0, 0.99" in finer.stderr
    assert len(finer.stderr.strip().splitlines()) == 1


def test_a_child_version_serves_sets_rescored_through_its_own_calibrator(served_repo, digits_rows):
    parent = read_manifest(served_repo / "digits/1/candor.json")
    sample = read_sample(served_repo / "digits/1", parent.reference.sample)
    vector = fit_calibrator("vector", sample.val_logits, sample.val_labels)
    publish_child(served_repo, parent, refit=Refit(vector, "test: vector scaling"),
                  write_model=lambda path: set_calibrator(served_repo / "digits/1/model.onnx", path, vector))  # fmt: skip
    child = read_manifest(served_repo / "digits/2/candor.json")
    assert child.conformal.rows == parent.conformal.rows and child.conformal.sha256 != parent.conformal.sha256
    assert child.conformal.source == "through digits/2's vector calibrator"
    a, b = read_split(served_repo / "digits/1", parent.conformal), read_split(served_repo / "digits/2", child.conformal)
    assert np.array_equal(a.logits, b.logits) and not np.allclose(a.scores["lac"], b.scores["lac"])
    # The child's test report is re-measured through its own calibrator, not copied.
    assert child.conformal.test_split != parent.conformal.test_split
    server = start_server(served_repo)
    try:
        with server.client() as client:
            r = client.predict(digits_rows, model="digits", version=2, coverage=0.9, conformal_method="lac")
    finally:
        server.stop()
    q = threshold(b.scores["lac"], 0.9)
    assert [sorted(s) for s in r.sets] == [sorted(np.flatnonzero(1 - p <= q + 1e-9).tolist()) for p in r.probabilities]


def test_served_sizes_and_joined_coverage_are_counters_equal_to_the_offline_counts(served_repo, digits_rows):
    rows = np.tile(digits_rows, (5, 1)) + np.random.default_rng(1).normal(0, 3, (200, 64)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 10, len(rows))
    server = start_server(served_repo)
    try:
        with server.client() as client:
            served = client.predict(rows, model="digits", coverage=0.9, conformal_method="aps")
            client.predict(rows[:7], model="digits", coverage=0.777, conformal_method="aps")  # counted as "other"
            plain = client.predict(rows, model="digits")  # no sets asked: the joined rows' sets are counted anyway
            assert client.feedback(plain.prediction_ids, labels, model="digits").accepted == len(rows)
        aps = {"model": "digits", "version": "1", "method": "aps"}
        assert server.metric("candor_prediction_set_size_count", **aps, coverage="0.9") == len(rows)
        assert server.metric("candor_prediction_set_size_sum", **aps, coverage="0.9") == served.set_sizes.sum()
        assert server.metric("candor_prediction_set_size_bucket", **aps, coverage="0.9", le="1") == np.sum(served.set_sizes <= 1)
        assert server.metric("candor_prediction_set_size_count", **aps, coverage="other") == 7
        for method in ("lac", "aps", "raps"):
            for level in (0.8, 0.9, 0.95):
                expected = offline_sets(served_repo, plain.probabilities, level, method)
                hit = sum(int(y) in s for s, y in zip(expected, labels, strict=True))
                keys = {"model": "digits", "version": "1", "method": method, "coverage": f"{level:g}"}
                assert server.metric("candor_feedback_set_rows_total", **keys) == len(rows)
                assert server.metric("candor_feedback_set_covered_total", **keys) == hit
                assert server.metric("candor_feedback_set_classes_total", **keys) == sum(map(len, expected))
                assert server.metric("candor_prediction_set_level", **keys) == level
        # GetCalibration shows the same coverage per method and level, with its interval, next to the ECE.
        with server.client() as client:
            observed = client.calibration("digits").observed
        found = {(c.method, c.coverage): c for c in observed.set_coverage}
        assert len(found) == 9 and observed.rows == len(rows)
        for (method, level), c in found.items():
            expected = offline_sets(served_repo, plain.probabilities, level, method)
            hit = sum(int(y) in s for s, y in zip(expected, labels, strict=True))
            assert c.covered == pytest.approx(hit / len(rows)) and c.interval[0] <= c.covered <= c.interval[1]
        shown = run_candor("calibration", "--target", server.target, "--model", "digits")
        assert shown.returncode == 0 and "prediction sets aps at 0.9: covered" in shown.stdout
    finally:
        server.stop()


def test_the_compiled_kernel_and_the_numpy_path_answer_alike_and_the_step_timer_sees_each(served_repo, digits_rows,
                                                                                           tmp_path):  # fmt: skip
    """Two real servers of one version: the compiled kernel (where built) and the numpy path
    (CANDOR_BENCHMARK_SKIP=native), each with benchmarks/sets_step_timer loaded: the same sets, sizes and top-k for
    every method and several top-k, and the timer counts the calls on each path (make bench reads it)."""
    rows = np.tile(digits_rows, (8, 1))[:300] + np.random.default_rng(1).normal(0, 3, (300, 64)).astype(np.float32)
    answers, times = {}, {}
    for path, skip in (("kernel", ""), ("numpy", "native")):
        times[path] = tmp_path / f"{path}.json"
        env = {"PYTHONPATH": str(REPO_ROOT / "benchmarks/sets_step_timer"), "CANDOR_STEP_TIMES": str(times[path]),
               "CANDOR_BENCHMARK_SKIP": skip}  # fmt: skip
        running = start_server(served_repo, "--poll-interval-seconds", "0", env=env)
        try:
            with running.client() as client:
                answers[path] = [client.predict(rows, model="digits", coverage=c, conformal_method=m, top_k=k)
                                 for m in ("lac", "aps", "raps") for c, k in ((0.8, 1), (0.95, 3), (0.99, 10))]  # fmt: skip
                client.predict(rows, model="digits", top_k=2)  # without sets: top_classes
        finally:
            assert running.stop() == 0
    for kernel, numpy_path in zip(answers["kernel"], answers["numpy"], strict=True):
        assert kernel.sets == numpy_path.sets and np.array_equal(kernel.set_sizes, numpy_path.set_sizes)
        assert np.array_equal(kernel.top_k_indices, numpy_path.top_k_indices)
        assert np.array_equal(kernel.top_k_probabilities, numpy_path.top_k_probabilities)
    assert any(len(s) > 1 for r in answers["kernel"] for s in r.sets) and any(not s for r in answers["kernel"] for s in r.sets)
    for path in times:
        timed = json.loads(times[path].read_text())
        assert timed["sets"]["calls"] == 9 and timed["top-k"]["calls"] == 1, timed
        assert timed["sets"]["us_per_call"] > 0
