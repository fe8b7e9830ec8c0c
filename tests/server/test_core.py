"""The server core in process, with no gRPC: a real model repository, real onnxruntime sessions,
a real SQLite store, and metrics on a fresh CollectorRegistry fed by the core's events."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sklearn.datasets import load_digits

from candor.calibration.calibrators import TemperatureScaling
from candor.calibration.lineage import Refit, publish_child
from candor.calibration.manifest import MODEL_FILE, read_manifest, write_manifest
from candor.calibration.reference import confidence_histogram, read_sample
from candor.calibration.temperature import softmax
from candor.client import CalibrationReport, PredictResult
from candor.graph import set_temperature
from candor.server.core.drift import DriftThresholds
from candor.server.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from candor.server.core.events import Events, LoadFailed, VersionLoaded, VersionUnloaded
from candor.server.core.feedback import FeedbackItem, FeedbackService
from candor.server.core.plane import DataPlane, InputTensor
from candor.server.core.repository import FAILED, READY, ModelRepository
from candor.server.core.settings import Settings
from candor.server.observability.collectors import register_core_views
from candor.server.observability.metrics import ServerMetrics
from candor.server.rpc import convert
from candor.server.rpc.calls import stream
from candor.server.store import open_store
from candor.v1 import inference_pb2 as pb

V1 = {"model": "digits", "version": "1"}
EDGES = [f"{(i + 1) / 15:.4f}" for i in range(15)]


class Core:
    """What app.py assembles, minus gRPC: repository, store, feedback, data plane, metrics."""

    def __init__(self, repo: Path, data_dir: Path, **settings):
        self.settings = Settings(model_repository=str(repo), data_dir=str(data_dir), poll_interval_s=0, **settings).check()
        self.events = Events()
        self.seen: list[object] = []
        self.events.subscribe(self.seen.append)
        self.metrics = ServerMetrics(CollectorRegistry())
        self.events.subscribe(self.metrics.on_event)
        self.executor = ThreadPoolExecutor(2)
        self.repository = ModelRepository(repo, self.settings, self.executor, self.events)

    async def start(self) -> Core:
        await self.repository.refresh()
        self.store = open_store(self.settings)
        loop = asyncio.get_running_loop()
        self.feedback = FeedbackService(self.settings, self.repository, self.store, self.events,
                                        lambda e: loop.call_soon_threadsafe(self.events.emit, e))  # fmt: skip
        self.plane = DataPlane(self.settings, self.repository, self.feedback, DriftThresholds(), self.events)
        register_core_views(self.metrics.registry, self.repository, self.feedback, self.plane.thresholds,
                            self.metrics.collector_failed, self.plane.label_shift)
        return self

    def metric(self, name: str, labels: dict | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or {})

    async def predict(self, rows: np.ndarray, version: str = "", **kw):
        model = self.plane.model("digits", version)
        tensor = InputTensor(list(rows.shape), rows.astype("<f4").tobytes(), ())
        return await self.plane.predict(model, tensor, **kw)

    async def close(self) -> None:
        await self.repository.close()
        self.feedback.close()
        self.executor.shutdown()


def run(repo: Path, tmp_path: Path, scenario, **settings):
    """Start a core on ``repo``, run ``await scenario(core)``, stop it."""

    async def main():
        core = await Core(repo, tmp_path / "data", **settings).start()
        try:
            return await scenario(core)
        finally:
            await core.close()

    return asyncio.run(main())


@pytest.fixture
def repo(digits_repo, tmp_path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(digits_repo, copy)
    return copy


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data.astype(np.float32), d.target


def test_predict_records_rows_that_feedback_joins_into_the_totals_and_the_store(repo, tmp_path, digits):
    X, y = digits

    async def scenario(core: Core):
        answer = await core.predict(X[:20], top_k=3, keep_for_feedback=True)
        assert answer.probabilities.shape == (20, 10) and answer.top_k_indices.shape == (20, 3)
        assert len(set(answer.prediction_ids)) == 20
        np.testing.assert_array_equal(answer.top_k_indices[:, 0], answer.probabilities.argmax(axis=1))
        items = [FeedbackItem(pid, int(label)) for pid, label in zip(answer.prediction_ids, y[:20], strict=True)]
        assert await core.plane.feedback("digits", "", items[:15]) == ["ACCEPTED"] * 15
        again = await core.plane.feedback("digits", "", [items[0], items[15], FeedbackItem("f" * 32, 1)])
        assert again == ["DUPLICATE", "ACCEPTED", "UNKNOWN_ID"]
        with pytest.raises(InvalidArgument, match="label 10 is out of range"):
            await core.plane.feedback("digits", "", [FeedbackItem(answer.prediction_ids[16], 10)])
        state = await core.plane.calibration("digits", "1")
        assert state.observed.rows == 16 and state.drift.rows == 20
        assert core.store.count() == 16
        # KServe asks for no ids: nothing is kept for feedback (the cache holds the 20 rows of the one request).
        assert (await core.predict(X[:3])).prediction_ids == [] and len(core.feedback.cache) == 20
        return core

    core = run(repo, tmp_path, scenario)
    assert core.metric("candor_feedback_total", {"model": "digits", "outcome": "ACCEPTED"}) == 16
    assert core.metric("candor_feedback_total", {"model": "digits", "outcome": "UNKNOWN_ID"}) == 1
    assert core.metric("candor_predicted_rows_total", V1) == 23
    rows = sum(core.metric("candor_feedback_rows_total", {**V1, "bin": b}) or 0 for b in EDGES)
    assert rows == 16
    assert core.metric("candor_drift_window_rows", V1) == 23

    # After a restart, the report on the store's feedback is the same, and the log still joins.
    async def after_restart(core: Core):
        state = await core.plane.calibration("digits", "1")
        return state.observed.rows

    assert run(repo, tmp_path, after_restart) == 16


def test_repository_refresh_loads_reports_a_failure_reloads_and_unloads(repo, tmp_path, digits):
    X, _ = digits

    async def scenario(core: Core):
        assert [(e.version, e.state) for e in core.plane.models()] == [(1, READY)]
        bad = repo / "digits/2"
        shutil.copytree(repo / "digits/1", bad)
        write_manifest(read_manifest(bad / "candor.json").replace(version=2), bad / "candor.json")
        (bad / MODEL_FILE).write_bytes((bad / MODEL_FILE).read_bytes() + b"tampered")
        await core.repository.refresh()
        entry, versions = core.plane.describe("digits", "2")
        assert entry.state == FAILED and "sha256" in entry.message and versions == ["1", "2"]
        with pytest.raises(Unavailable, match="FAILED"):
            core.plane.model("digits", "2")
        assert core.plane.model("digits", "").version == "1"  # the newest READY one
        assert core.metric("candor_model_load_failures_total", {"model": "digits"}) == 1
        assert core.metric("candor_model_ready", {"model": "digits", "version": "2"}) == 0

        # Same files rewritten (a reload of v1): it keeps serving, and its info series survives the swap.
        old = core.plane.model("digits", "1")
        manifest = repo / "digits/1/candor.json"
        manifest.write_text(manifest.read_text())
        os.utime(manifest, ns=(1, 1))
        await core.repository.refresh()
        assert core.plane.model("digits", "1") is not old
        info = {"model": "digits", "version": "1", "provider": "CPUExecutionProvider", "task": "multiclass"}
        assert core.metric("candor_model_info", info) == 1
        assert (await core.predict(X[:2], version="1")).probabilities.shape == (2, 10)

        shutil.rmtree(bad)
        shutil.rmtree(repo / "digits/1")
        await core.repository.refresh()
        with pytest.raises(NotFound, match="model 'digits' not found"):
            core.plane.model("digits", "")
        return core

    core = run(repo, tmp_path, scenario)
    kinds = [type(e).__name__ for e in core.seen if isinstance(e, (VersionLoaded, VersionUnloaded, LoadFailed))]
    assert kinds == ["VersionLoaded", "LoadFailed", "VersionUnloaded", "VersionLoaded", "VersionUnloaded"]
    assert [e.removed for e in core.seen if isinstance(e, VersionUnloaded)] == [False, True]
    assert core.metric("candor_model_ready", V1) is None  # a removed version's series go


def test_recalibration_fits_on_stored_feedback_publishes_a_child_and_serves_it(repo, tmp_path, digits):
    X, y = digits
    parent = read_manifest(repo / "digits/1/candor.json")
    # An overconfident v2 (T far too low), made the one way a child version is made.
    publish_child(repo, parent, write_model=lambda path: set_temperature(repo / "digits/1" / MODEL_FILE, path, 0.2),
                  refit=Refit(TemperatureScaling.of(0.2), "test: made overconfident"))  # fmt: skip

    async def scenario(core: Core):
        with pytest.raises(FailedPrecondition, match="needs at least 100"):
            await core.plane.recalibrate("digits", "2")
        # Mildly noisy inputs: some mistakes, so an overconfident T costs NLL that a refit can win back.
        rows = np.clip(X[:400] + np.random.default_rng(2).normal(0, 2.0, X[:400].shape), 0, 16).astype(np.float32)
        answer = await core.predict(rows, keep_for_feedback=True)
        items = [FeedbackItem(pid, int(label)) for pid, label in zip(answer.prediction_ids, y[:400], strict=True)]
        assert (await core.plane.feedback("digits", "2", items)).count("ACCEPTED") == 400
        result = await core.plane.recalibrate("digits", "2")
        assert result.published and result.new_version == 3 and result.new_temperature > 1.5 * result.old_temperature
        assert result.holdout_nll_after < result.holdout_nll_before
        assert core.plane.model("digits", "").version == "3"  # refreshed at once, served without a poll
        return result

    result = run(repo, tmp_path, scenario)
    child = read_manifest(repo / "digits/3/candor.json")
    assert child.parent == "digits/2" and child.temperature.value == [pytest.approx(result.new_temperature)]
    assert child.training == parent.training and "feedback of digits/2" in child.temperature.fitted_on
    assert child.calibrator.nll_improvement[1] > 0 and result.nll_improvement_low > 0
    # The child's reference is the stored clean test rows through its own calibrator, never the feedback.
    sample = read_sample(repo / "digits/1", parent.reference.sample)
    clean = softmax(sample.test_logits, result.new_temperature)
    assert child.reference.confidence_histogram == pytest.approx(confidence_histogram(clean.max(axis=1)).tolist())
    assert child.reference.n_samples == len(sample.test_labels) and "logits stored with digits/1" in child.reference.source


def test_recalibration_after_drift_fits_the_window_and_keeps_clean_traffic_quiet(repo, tmp_path, digits):
    X, y = digits
    noisy = np.clip(X + np.random.default_rng(1).normal(0, 2.0, X.shape), 0, 16).astype(np.float32)

    async def scenario(core: Core):
        for rows in (X[:300], noisy[300:700]):  # clean feedback first, then drifted
            answer = await core.predict(rows, keep_for_feedback=True)
            labels = y[:300] if len(rows) == 300 else y[300:700]
            items = [FeedbackItem(pid, int(label)) for pid, label in zip(answer.prediction_ids, labels, strict=True)]
            assert (await core.plane.feedback("digits", "1", items)).count("ACCEPTED") == len(rows)
        with pytest.raises(InvalidArgument, match="unknown calibration method 'isotonic'; choose one of temperature"):
            await core.plane.recalibrate("digits", "1", method="isotonic")
        with pytest.raises(InvalidArgument, match="since must be a time in the past"):
            await core.plane.recalibrate("digits", "1", since=time.time() + 3600)
        with pytest.raises(FailedPrecondition, match="matrix scaling has 110 parameters"):
            await core.plane.recalibrate("digits", "1", method="matrix", newest_rows=120)
        result = await core.plane.recalibrate("digits", "1", newest_rows=400)  # the drifted rows only
        assert sum(result.label_counts) == 400 and result.fit_rows + result.holdout_rows == 400
        assert result.published and result.new_temperature > result.old_temperature  # noisy inputs: soften
        assert result.validation_nll_after > result.validation_nll_before  # the cost on clean validation rows, shown
        await core.predict(X[700:1100])  # clean traffic on the child
        state = await core.plane.calibration("digits", "2")
        return result, state

    result, state = run(repo, tmp_path, scenario)
    # The child's reference went with its calibrator: clean traffic is not drift.
    assert state.drift.confidence_psi < 0.1, state.drift


def test_responses_map_core_results_to_protocol_and_sdk_types(repo, tmp_path, digits):
    X, y = digits

    async def scenario(core: Core):
        answer = await core.predict(X[:5], top_k=2, keep_for_feedback=True)
        items = [FeedbackItem(pid, int(label)) for pid, label in zip(answer.prediction_ids, y[:5], strict=True)]
        await core.plane.feedback("digits", "1", items)
        return answer, await core.plane.calibration("digits", "1")

    answer, state = run(repo, tmp_path, scenario)
    names = answer.model.manifest.class_names
    for columnar in (True, False):  # the SDK's layout, and the deprecated per-row one of earlier clients
        wire = convert.predict_response(answer, return_logits=True, columnar=columnar)
        result = PredictResult.from_proto(pb.PredictResponse.FromString(wire.SerializeToString()), names if columnar else ())
        np.testing.assert_array_equal(result.probabilities, answer.probabilities)
        np.testing.assert_array_equal(result.logits, answer.logits)
        np.testing.assert_array_equal(result.top_k_indices, answer.top_k_indices)
        assert result.labels[0] == [str(i) for i in answer.top_k_indices[0]]
        assert result.prediction_ids == answer.prediction_ids
        np.testing.assert_allclose(result.confidences, answer.probabilities.max(axis=1))
    report = CalibrationReport.from_proto(convert.calibration_response(state))
    assert report.observed.rows == 5 and isinstance(report.observed.rows, int)
    assert report.drift.confidence_state in ("OK", "WARN", "DRIFT") and report.drift.rows == 5
    assert sum(b.count for b in report.observed.reliability) == 5
    assert report.reference.accuracy == pytest.approx(state.model.manifest.reference.accuracy)
    assert convert.feedback_response(["ACCEPTED", "EXPIRED", "ACCEPTED"]).accepted == 2


def test_a_scrape_while_versions_load_and_unload_never_raises(repo, tmp_path, digits):
    X, y = digits
    failures: list[BaseException] = []
    scrapes = 0
    stop = threading.Event()

    def scrape(registry: CollectorRegistry) -> None:
        nonlocal scrapes
        # A pause between scrapes: a loop that never waits holds the GIL against the loads and the store's
        # threads (each takes it back only at a forced switch), and the scenario then ran for minutes on 2 cores.
        while not stop.wait(0.002):
            try:
                generate_latest(registry)
                scrapes += 1
            except BaseException as e:  # noqa: BLE001 - any failure of a scrape is the finding
                failures.append(e)

    async def scenario(core: Core):
        scraper = threading.Thread(target=scrape, args=(core.metrics.registry,))
        scraper.start()
        try:
            for _ in range(6):
                for v in range(2, 5):
                    shutil.copytree(repo / "digits/1", repo / f"digits/{v}")
                    path = repo / f"digits/{v}/candor.json"
                    write_manifest(read_manifest(path).replace(version=v), path)
                await core.repository.refresh()
                for v in ("1", "2", "3", "4"):
                    answer = await core.predict(X[:8], version=v, keep_for_feedback=True)
                    items = [FeedbackItem(p, int(t)) for p, t in zip(answer.prediction_ids, y[:8], strict=True)]
                    await core.plane.feedback("digits", v, items)
                for v in range(2, 5):
                    shutil.rmtree(repo / f"digits/{v}")
                await core.repository.refresh()
        finally:
            stop.set()
            scraper.join(30)

    run(repo, tmp_path, scenario, serve_latest=0)  # all four versions served at once
    assert failures == [] and scrapes > 10


def test_an_unexpected_error_in_a_stream_is_logged_and_answered_internal(caplog):
    class Service:
        observer = ServerMetrics(CollectorRegistry())

        @stream("PredictStream", error_reply=lambda item, code, text: (item, code.name, text))
        async def answer(self, item, context):
            if item == "bug":
                raise KeyError("boom")
            if item == "bad":
                raise InvalidArgument("rows must be 2-D")
            return (item, "OK", "")

    async def requests():
        for item in ("fine", "bug", "bad", "fine"):
            yield item

    async def collect():
        return [reply async for reply in Service().answer(requests(), context=None)]

    with caplog.at_level(logging.ERROR, logger="candor.server"):
        replies = asyncio.run(collect())
    assert [r[1] for r in replies] == ["OK", "INTERNAL", "INVALID_ARGUMENT", "OK"]
    assert "internal error in PredictStream: KeyError" in replies[1][2] and replies[2][2] == "rows must be 2-D"
    assert "PredictStream failed" in caplog.text and "KeyError: 'boom'" in caplog.text
    get = Service.observer.registry.get_sample_value
    assert get("candor_requests_total", {"rpc": "PredictStream", "code": "INTERNAL", "model": ""}) == 1
    assert get("candor_requests_total", {"rpc": "PredictStream", "code": "OK", "model": ""}) == 2
    assert get("candor_inflight_requests") == 0
