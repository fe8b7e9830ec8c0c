"""`candor split` + `candor simulate`: the traffic the compose stack's dashboard shows, against a real server."""

from __future__ import annotations

import re

import numpy as np
import pytest

from candor.client.simulate import SimulationPlan, load_labelled_rows, simulate
from tests.conftest import run_candor
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes


@pytest.fixture(scope="module")
def held_out(digits_repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "digits-test.npz"
    result = run_candor("split", "--model-repository", str(digits_repo), "--model", "digits", "--output", str(path))
    assert result.returncode == 0, result.stderr
    assert "360 rows of digits:test" in result.stdout
    return path


def test_split_writes_the_versions_held_out_rows(held_out):
    X, y = load_labelled_rows(held_out)
    assert X.shape == (360, 64) and X.dtype == np.float32
    assert sorted(set(y.tolist())) == list(range(10))
    with np.load(held_out) as data:
        assert data["class_names"].tolist() == [str(k) for k in range(10)]
    assert not list(held_out.parent.glob(".*tmp"))


def test_drift_moves_every_alerting_signal(served_repo, held_out):
    """Clean traffic stays near the reference; after the switch the drift and calibration signals cross the alert lines."""
    server = start_server(served_repo, "--poll-interval-seconds", "0", "--drift-window-rows", "1000",
                          "--feedback-window-rows", "1000")
    try:
        X, y = load_labelled_rows(held_out)
        lines = []
        with server.client() as client:
            plan = SimulationPlan(rate=0, drift_after_s=None, feedback_delay_s=0.0, duration_s=3, report_every_s=1)
            clean = simulate(client, "digits", X, y, plan, log=lines.append)
            assert clean.errors == {} and clean.rows >= 1000 and not clean.drifting
            assert clean.feedback_accepted == clean.feedback_sent == clean.rows
            assert server.metric("candor_prediction_psi", model="digits") < 0.1
            assert client.calibration("digits").observed.ece < 0.1

            plan = SimulationPlan(rate=0, drift_after_s=0.5, feedback_delay_s=0.2, duration_s=5, report_every_s=0, seed=1)
            drifted = simulate(client, "digits", X, y, plan, log=lines.append)
        assert drifted.drifting and drifted.errors == {}
        assert drifted.feedback_accepted == drifted.feedback_sent == drifted.rows  # labels still due at the end were sent too
        assert any("drift switched on" in line for line in lines)
        assert server.metric("candor_feedback_total", model="digits", outcome="ACCEPTED") == clean.rows + drifted.rows
        assert server.metric("candor_prediction_psi", model="digits") > 0.25
        assert server.metric("candor_confidence_psi", model="digits") > 0.25
        with server.client() as client:
            observed = client.calibration("digits").observed
        assert observed.ece > 0.1 and observed.accuracy_gap > 0.05
    finally:
        assert server.stop() == 0


def test_feedback_share_and_rate_are_honoured(server, held_out):
    X, y = load_labelled_rows(held_out)
    with server.client() as client:
        plan = SimulationPlan(rate=20, rows_per_request=4, feedback_share=0.0, drift_after_s=None, duration_s=2)
        stats = simulate(client, "digits", X, y, plan, log=lambda _: None)
    assert stats.feedback_sent == 0 and stats.errors == {}
    assert 20 <= stats.requests <= 41  # about 20/s for 2 s, generous either way for a loaded machine


def test_errors_are_counted_not_raised(server, held_out):
    X, y = load_labelled_rows(held_out)
    with server.client() as client:
        stats = simulate(client, "no-such-model", X, y, SimulationPlan(rate=0, duration_s=1.5), log=lambda _: None)
    assert stats.requests == 0 and stats.errors["NOT_FOUND"] >= 1


def test_simulate_command_runs_and_stops_by_itself(server, held_out):
    result = run_candor("simulate", str(held_out), "--target", server.target, "--model", "digits",
                        "--rate", "50", "--duration-seconds", "3", "--drift-after-seconds", "1", "--report-every-seconds", "1",
                        "--feedback-delay-seconds", "0.5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "drift switched on" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert "drift=on errors: none" in last and "requests=" in last


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "-1"], "rate must be >= 0"),
        (["--feedback-share", "1.5"], "feedback_share must be in [0, 1]"),
        (["--rows-per-request", "0"], "rows_per_request must be >= 1"),
    ],
)
def test_simulate_refuses_a_bad_plan(held_out, args, message):
    result = run_candor("simulate", "--model", "digits", "--input", str(held_out), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_simulate_gives_up_on_a_server_that_never_serves(held_out):
    result = run_candor("simulate", "--target", "127.0.0.1:9", "--model", "digits", "--data", str(held_out),
                        "--wait-seconds", "1")
    assert result.returncode == 1
    assert "not SERVING after 1s" in result.stderr
    # --data, the old spelling of the input file, still works for one release and says what to write instead.
    assert "candor simulate: note: --data is now INPUT (or --input)" in result.stderr


def test_simulate_without_rows_says_what_to_give():
    result = run_candor("simulate", "--model", "digits")
    assert result.returncode == 2 and "no labelled rows given: name the .npz file" in result.stderr


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((3, 4), np.float32)}, "expected arrays X (rows) and y (labels)"),
        ({"X": np.zeros((3, 4), np.float32), "y": np.zeros(2, np.int64)}, "expected X [N, F]"),
        ({"X": np.zeros(3, np.float32), "y": np.zeros(3, np.int64)}, "expected X [N, F]"),
        ({"X": np.zeros((3, 4), np.float32), "y": np.full(3, 0.5)}, "y must hold class indices"),
        ({"X": np.zeros((3, 4), np.float32), "y": np.array([0, -1, 2])}, "y must hold class indices"),
    ],
)
def test_labelled_rows_refuse_bad_files(tmp_path, arrays, message):
    path = tmp_path / "rows.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_labelled_rows(path)


def test_labelled_rows_refuse_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / "rows.npz"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        load_labelled_rows(path)


def test_labelled_rows_refuse_a_single_array(tmp_path):
    path = tmp_path / "rows.npy"
    np.save(path, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="holds one array"):
        load_labelled_rows(path)
