"""Feedback joined to predictions on a real server: outcomes, durability, label-based signals."""

import shutil

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from candor.calibration import ece, read_manifest, write_manifest
from candor.calibration.manifest import sha256_file
from candor.client import CandorError, FailedPrecondition, NotFound
from candor.graph import set_temperature
from candor.trainer.options import DataOptions
from candor.trainer.split import split_dataset
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow
V1 = {"model": "digits", "version": "1"}
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def held_out():
    data = DataOptions()
    ds = data.load()
    rows = split_dataset(ds, seed=data.split_seed).val
    return ds.X[rows], ds.y[rows]


def counted(server, **labels) -> dict[str, float]:
    """This replica's label-based counters for one version, summed over bins, plus the ECE and
    gap they give (what the fleet recording rules compute, here for one replica)."""
    bins: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            if sample.name.startswith("candor_feedback_") and "bin" in sample.labels and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                bins.setdefault(sample.labels["bin"], {})[sample.name] = sample.value
    rows = sum(b["candor_feedback_rows_total"] for b in bins.values())
    conf = sum(b["candor_feedback_confidence_total"] for b in bins.values())
    correct = sum(b["candor_feedback_correct_total"] for b in bins.values())
    gaps = sum(abs(b["candor_feedback_confidence_total"] - b["candor_feedback_correct_total"]) for b in bins.values())
    return {"rows": rows, "accuracy": correct / rows if rows else 0.0, "ece": gaps / rows if rows else 0.0,
            "gap": (conf - correct) / rows if rows else 0.0}  # fmt: skip


def test_feedback_outcomes_and_live_calibration(served_repo, held_out):
    X, y = held_out
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            result = c.predict(X, model="digits")
            fb = c.feedback(result.prediction_ids, y, model="digits")
            assert (fb.accepted, fb.duplicate, fb.unknown_id, fb.expired) == (len(y), 0, 0, 0)
            seen = counted(server, **V1)
            assert seen["rows"] == len(y)
            assert seen["accuracy"] == pytest.approx(np.mean(result.probabilities.argmax(1) == y))
            assert seen["ece"] == pytest.approx(ece(result.probabilities.astype(np.float64), y), abs=1e-6)
            assert c.calibration("digits").observed.ece == pytest.approx(seen["ece"], abs=1e-6)

            old = "00000001" + "0" * 24  # made in 1970: long expired
            again = c.feedback([result.prediction_ids[0], old, "not-an-id"], [0, 1, 2], model="digits")
            assert again.outcomes == ["DUPLICATE", "EXPIRED", "UNKNOWN_ID"]
            own = c.feedback(None, y[:4], model="digits", version=1, probabilities=result.probabilities[:4])
            assert own.outcomes == ["ACCEPTED"] * 4
            own_logits = c.feedback(None, y[:2], model="digits", logits=np.zeros((2, 10)))
            assert own_logits.accepted == 2
            assert server.metric("candor_feedback_total", model="digits", outcome="DUPLICATE") == 1
            assert counted(server, **V1)["rows"] == len(y) + 6
    finally:
        assert server.stop() == 0
    # A restart keeps every acknowledged row, and still knows which ids have feedback.
    again = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with again.client() as c:
            assert c.calibration("digits").observed.rows == len(y) + 6
            assert c.feedback(result.prediction_ids[:2], y[:2], model="digits").outcomes == ["DUPLICATE", "DUPLICATE"]
    finally:
        again.stop()


def test_malformed_feedback_is_refused_whole(served_repo, held_out):
    X, y = held_out
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            ids = c.predict(X[:3], model="digits").prediction_ids
            cases = [
                (lambda: c.feedback(ids, [1, 2, 10], model="digits"), INVALID, "label 10 is out of range"),
                (lambda: c.feedback(ids, [1, 2, -1], model="digits"), INVALID, "label -1 is out of range"),
                (lambda: c.feedback([], [], model="digits"), INVALID, "no feedback items"),
                (lambda: c.feedback(ids, [1, 2, 3], model="nope"), grpc.StatusCode.NOT_FOUND, "model 'nope' not found"),
                (lambda: c.feedback([""], [1], model="digits"), INVALID, "neither a prediction_id"),
                (lambda: c.feedback(None, [1], model="digits", probabilities=[[0.5, 0.5]]), INVALID, "must be 10 finite numbers"),
                (lambda: c.feedback(None, [1], model="digits", probabilities=[[0.5] * 10]), INVALID, "sum to 1"),
            ]  # fmt: skip
            for call, code, message in cases:
                with pytest.raises(CandorError) as e:
                    call()
                assert e.value.code == code.name and message in e.value.message, e.value.message
            assert counted(server, **V1)["rows"] == 0  # nothing of a refused batch was written
            assert c.feedback(ids, [1, 2, 3], model="digits").accepted == 3  # and the ids are still joinable
    finally:
        server.stop()


def test_an_overconfident_version_shows_in_observed_ece(served_repo, held_out):
    X, y = held_out
    # Mildly noisy inputs (about 80% accuracy): calibration differences show; on clean digits
    # nearly every row is right and any temperature looks calibrated.
    X = np.clip(X + np.random.default_rng(0).normal(0, 0.5, X.shape), 0, 16)
    v1, v2 = served_repo / "digits/1", served_repo / "digits/2"
    shutil.copytree(v1, v2)
    m = read_manifest(v1 / "candor.json")
    sharp_t = m.temperature.value[0] / 2  # halve the fitted temperature: overconfident
    set_temperature(v1 / "model.onnx", v2 / "model.onnx", sharp_t)
    t = m.temperature
    write_manifest(m.replace(version=2, temperature=type(t)([sharp_t], False, "test", False, t.bounds),
                             model_sha256=sha256_file(v2 / "model.onnx")), v2 / "candor.json")  # fmt: skip
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            for version in (1, 2):
                r = c.predict(X, model="digits", version=version)
                assert c.feedback(r.prediction_ids, y, model="digits").accepted == len(y)
        calibrated = counted(server, **V1)["ece"]
        sharp = counted(server, model="digits", version="2")
        assert sharp["ece"] > 2 * calibrated
        assert sharp["gap"] > 0.05  # promised more than delivered
        # Recalibration on v2's feedback: a dry run first, then a real one that publishes v3.
        with server.client() as c:
            dry = c.recalibrate("digits", 2, dry_run=True)
            assert not dry.published and dry.new_version is None and "dry run" in dry.message
            assert sorted(p.name for p in (served_repo / "digits").iterdir()) == ["1", "2"]
            result = c.recalibrate("digits", 2)
            assert result.published and result.new_version == "3" and isinstance(result.fit_rows, int)
            assert result.new_temperature > 1.5 * result.old_temperature  # softened back
            assert result.holdout_nll_after < result.holdout_nll_before
            assert result.holdout_ece_after < result.holdout_ece_before
            assert c.predict(X[:1], model="digits").version == "3"  # served at once
            v3 = read_manifest(served_repo / "digits/3/candor.json")
            assert v3.parent == "digits/2" and v3.temperature.value[0] == pytest.approx(result.new_temperature, rel=1e-6)
            with pytest.raises(FailedPrecondition, match="needs at least 100"):
                c.recalibrate("digits", 3)  # no feedback for v3 yet
    finally:
        server.stop()


def test_get_calibration_and_the_cli(served_repo, held_out, tmp_path):
    from tests.conftest import run_candor

    X, y = held_out
    server = start_server(served_repo, "--poll-interval-seconds", "0")
    try:
        with server.client() as c:
            before = c.calibration("digits")
            assert before.drift is None and before.observed is None
            assert before.reference.accuracy == pytest.approx(
                read_manifest(served_repo / "digits/1/candor.json").reference.accuracy
            )
            result = c.predict(X, model="digits")
        lines = ["prediction_id,label", *(f"{pid},{label}" for pid, label in zip(result.prediction_ids, y, strict=True))]
        (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
        sent = run_candor("feedback", "--target", server.target, "--model", "digits", "--input", str(tmp_path / "labels.csv"))
        assert sent.returncode == 0 and f"accepted {len(y)}, duplicate 0" in sent.stdout, sent.stderr
        with server.client() as c:
            report = c.calibration("digits", 1)
        assert report.drift.rows == len(y) and report.drift.confidence_state == "OK"
        assert report.observed.rows == len(y) and isinstance(report.observed.rows, int)
        assert report.observed.ece == pytest.approx(counted(server, **V1)["ece"], abs=1e-6)  # store and counters agree
        assert sum(b.count for b in report.observed.reliability) == len(y)
        shown = run_candor("calibration", "--target", server.target, "--model", "digits", "--plot", str(tmp_path / "live.png"))
        assert shown.returncode == 0 and f"feedback over {len(y)} rows" in shown.stdout, shown.stderr
        assert (tmp_path / "live.png").read_bytes()[:4] == b"\x89PNG"
        dry = run_candor("recalibrate", "--target", server.target, "--model", "digits", "--dry-run", "--min-rows", "50")
        assert dry.returncode == 0 and "T " in dry.stdout and "nothing published" in dry.stdout, dry.stderr
        bad = run_candor("feedback", "--target", server.target, "--model", "digits", "--input", str(tmp_path / "live.png"))
        assert bad.returncode == 2 and "cannot read" in bad.stderr
        with server.client() as c:
            with pytest.raises(NotFound, match="model 'nope' not found"):
                c.calibration("nope")
    finally:
        server.stop()


def test_a_label_for_a_version_no_longer_served_here_joins_through_its_manifest(served_repo, held_out):
    """The log keeps logits only; the served probabilities are re-derived through the version's calibrator. A
    replica that does not serve that version (the version policy retired it there) reads the calibrator from the
    version's manifest on disk. Two servers on one SQLite store, as --workers runs them."""
    import sqlite3

    X, y = held_out
    v2 = served_repo / "digits" / "2"
    shutil.copytree(served_repo / "digits" / "1", v2)
    write_manifest(read_manifest(v2 / "candor.json").replace(version=2), v2 / "candor.json")
    data = served_repo.parent / "shared-data"
    a = start_server(served_repo, "--poll-interval-seconds", "0", "--data-dir", str(data), "--serve-versions", "digits:1")
    b = start_server(served_repo, "--poll-interval-seconds", "0", "--data-dir", str(data), "--serve-latest", "1", "--reuse-port")
    try:
        with a.client() as ca:
            served = ca.predict(X[:40], model="digits", version="1")
        assert served.version == "1"
        wait_for_logged(a, 40)
        with b.client() as cb:
            assert [m.version for m in cb.models()] == ["2"]  # v1 is not loaded on B
            got = cb.feedback(served.prediction_ids, y[:40], model="digits")
        assert got.accepted == 40, got.outcomes
        from candor.server.store import SQLITE_FILE

        with sqlite3.connect(data / SQLITE_FILE) as db:
            rows = dict(db.execute("SELECT prediction_id, probabilities FROM feedback").fetchall())
            assert db.execute("SELECT MAX(length(probabilities)) FROM prediction_log").fetchone()[0] == 0
        for pid, probs in zip(served.prediction_ids, served.probabilities, strict=True):
            np.testing.assert_allclose(np.frombuffer(rows[pid], "<f4"), probs, atol=1e-6)
    finally:
        a.stop()
        b.stop()


def wait_for_logged(server, rows: int) -> None:
    from tests.server.conftest import wait_for

    wait_for(lambda: server.metric("candor_prediction_log_rows_total") >= rows)
