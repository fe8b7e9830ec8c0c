"""`candor predict`, `candor models` and `candor health` against a real server."""

import json

import numpy as np
import pytest

from candor.trainer.export import run_onnx
from tests.conftest import run_candor

pytestmark = pytest.mark.slow


def test_predict_from_npy_csv_and_stdin(server, digits_rows, tmp_path):
    np.save(tmp_path / "rows.npy", digits_rows[:3])
    result = run_candor(
        "predict", "--target", server.target, "--model", "digits", "--input", str(tmp_path / "rows.npy"), "--json"
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    _, probs = run_onnx(server.repo / "digits/1/model.onnx", digits_rows[:3])
    assert np.allclose([p["probabilities"] for p in out["predictions"]], probs, atol=1e-6)
    assert [p["labels"][0] for p in out["predictions"]] == [str(i) for i in probs.argmax(axis=1)]

    header = ",".join(f"f{i}" for i in range(64))
    (tmp_path / "rows.csv").write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in digits_rows[:2]) + "\n")
    table = run_candor("predict", "--target", server.target, "--model", "digits", "--input", str(tmp_path / "rows.csv"))
    assert table.returncode == 0 and "digits v1: 2 row(s)" in table.stdout

    import subprocess
    import sys

    cmd = [sys.executable, "-m", "candor", "predict", "--target", server.target, "--model", "digits", "--top-k", "2"]
    row = ",".join(map(str, digits_rows[0])) + "\n"
    piped = subprocess.run(cmd, input=row, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "1 row(s)" in piped.stdout


def test_models_and_health(server):
    result = run_candor("models", "--target", server.target, "--json")
    assert result.returncode == 0
    (model,) = json.loads(result.stdout)
    assert model["name"] == "digits" and model["state"] == "READY"
    assert run_candor("health", "--target", server.target).stdout.strip() == "server: SERVING"
    assert run_candor("health", "--target", server.target, "--model", "digits").returncode == 0


def test_remote_and_local_errors_are_one_line(server, tmp_path):
    result = run_candor("predict", "--target", server.target, "--model", "nope", "--input", "-")
    assert result.returncode == 2 and "expected rows" in result.stderr  # empty stdin
    (tmp_path / "r.csv").write_text("1,2,3\n")
    result = run_candor("predict", "--target", server.target, "--model", "digits", "--input", str(tmp_path / "r.csv"))
    assert result.returncode == 1 and "INVALID_ARGUMENT: the model takes 64 features per row, got 3" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_candor("health", "--target", server.target, "--model", "nope")  # a usage mistake: exit 2, what is served
    assert result.returncode == 2 and "no model 'nope'; it serves digits" in result.stderr
    result = run_candor("models", "--target", "127.0.0.1:1", "--timeout-seconds", "1")
    assert result.returncode == 1 and "UNAVAILABLE" in result.stderr


def test_demo_serves_predicts_and_stops_cleanly(served_repo):
    result = run_candor("demo", "--model-repository", str(served_repo), "--rows", "3", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Served digits v1 on CPUExecutionProvider" in result.stdout
    assert 'candor_predicted_rows_total{model="digits",version="1"} +3' in result.stdout
    assert "Server stopped cleanly (exit code 0)" in result.stdout
    assert sorted(p.name for p in (served_repo / "digits").iterdir()) == ["1"]  # nothing retrained
