"""The client verbs as a newcomer meets them, against a real server: .npz input, a hint at a
terminal, feedback by class name with a summary and an honest exit code, tokens kept out of
`ps`, health for an unknown model, and tables that stay aligned."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys

import pytest

from tests.conftest import run_candor
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow  # a real server in a child process

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def repo(digits_repo, tmp_path_factory):
    """digits, iris (class names that are words) and a multi-label model with one temperature per class."""
    repo = tmp_path_factory.mktemp("first-hour") / "models"
    shutil.copytree(digits_repo, repo)
    for args in (["--dataset", "iris", "--model", "iris"],
                 ["--dataset", "synthetic_multilabel", "--n-samples", "400", "--n-classes", "3", "--per-class-temperature",
                  "--model", "a-much-longer-multilabel-name"]):  # fmt: skip
        result = run_candor("train", *args, "--epochs", "3", "--model-repository", str(repo))
        assert result.returncode == 0, result.stderr
    return repo


@pytest.fixture(scope="module")
def server(repo):
    running = start_server(repo, "--poll-interval-seconds", "0")
    yield running
    running.stop()


def candor(server, *args, env=None):
    return run_candor(*args, "--target", server.target, env=env)


@pytest.fixture(scope="module")
def iris_rows(repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "iris-test.npz"
    assert run_candor("split", "--model-repository", str(repo), "--model", "iris", "--output", str(path)).returncode == 0
    return path


def test_predict_reads_the_npz_split_writes(server, iris_rows):
    result = candor(server, "predict", "--model", "iris", "--input", str(iris_rows), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["version"] == "1" and len(answer["predictions"]) == 30
    assert {p["labels"][0] for p in answer["predictions"]} <= {"setosa", "versicolor", "virginica"}


def test_predict_at_a_terminal_says_it_is_reading_stdin(server):
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "candor", "predict", "--model", "iris", "--target", server.target],
                            stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(terminal)
    try:
        hint = proc.stderr.readline()
        assert "reading rows as CSV from stdin" in hint and "Ctrl-D" in hint
        os.write(controller, b"\x04")  # end of input, with nothing typed
        _, rest = proc.communicate(timeout=60)
    finally:
        os.close(controller)
    assert proc.returncode == 2 and "at least one row" in rest


def feedback_csv(tmp_path, predictions, label) -> str:
    path = tmp_path / "labels.csv"
    path.write_text("prediction_id,label\n" + "".join(f"{p['prediction_id']},{label(p)}\n" for p in predictions))
    return str(path)


def test_feedback_by_class_name_then_a_resend_is_summarised_and_fails(server, iris_rows, tmp_path):
    predictions = json.loads(candor(server, "predict", "--model", "iris", "--input", str(iris_rows), "--json").stdout)
    predictions = predictions["predictions"]
    by_name = feedback_csv(tmp_path, predictions, lambda p: p["labels"][0])
    first = candor(server, "feedback", "--model", "iris", "--input", by_name, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"accepted": 30, "duplicate": 0, "unknown_id": 0, "expired": 0, "refused": {}}
    again = candor(server, "feedback", "--model", "iris", "--input", by_name)
    assert again.returncode == 1
    assert again.stdout.splitlines()[0] == "accepted 0, duplicate 30, unknown id 0, expired 0"
    assert len(again.stdout.splitlines()) == 2 and "DUPLICATE (already labelled" in again.stdout and "30 item(s)" in again.stdout
    assert "none of the 30 item(s) was accepted" in again.stderr


def test_feedback_by_index_and_a_wrong_label(server, iris_rows, tmp_path):
    predictions = json.loads(candor(server, "predict", "--model", "iris", "--input", str(iris_rows), "--json").stdout)
    by_index = feedback_csv(tmp_path, predictions["predictions"], lambda p: 2)
    assert "accepted 30" in candor(server, "feedback", "--model", "iris", "--input", by_index).stdout
    wrong = feedback_csv(tmp_path, predictions["predictions"], lambda p: "daisy")
    result = candor(server, "feedback", "--model", "iris", "--input", wrong)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'daisy' is neither a class name (setosa, versicolor, virginica) nor an index 0..2" in result.stderr


def test_health_of_an_unknown_model_says_what_is_served(server):
    result = candor(server, "health", "--model", "nosuch")
    assert result.returncode == 2
    assert "no model 'nosuch'; it serves a-much-longer-multilabel-name, digits, iris" in result.stderr
    ok = candor(server, "health", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"service": "server", "status": "SERVING"}


def test_models_table_stays_aligned_with_per_class_temperatures(server):
    result = candor(server, "models")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    assert len(lines) == 4 and all(c in header for c in ("version", "provider", "smoothing", "test ECE"))
    # Every row's cells start where their column's name does, the long name and per-class cells included.
    for column, values in (("state", ("READY",)), ("task", ("multiclass", "multilabel")), ("temperature", ("0.", "per class "))):
        at = header.index(column)
        assert all(line[at:].startswith(values) for line in lines[1:]), (column, result.stdout)
    assert any(line[header.index("temperature"):].startswith("per class ") for line in lines)
    assert "[" not in result.stdout  # no Python lists
    report = candor(server, "calibration", "--model", "digits")
    assert report.returncode == 0 and "temperature [" not in report.stdout and "calibrator, temperature 0." in report.stdout
    listed = json.loads(candor(server, "models", "--json").stdout)
    assert {m["version"] for m in listed} == {"1"} and all(m["max_rows_per_request"] == 4096 for m in listed)


def test_tokens_from_a_file_or_the_environment(repo, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} infer\n")
    secured = start_server(repo, "--poll-interval-seconds", "0", "--auth-tokens-file", str(tokens))
    try:
        refused = candor(secured, "models")
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr.upper()
        (tmp_path / "token").write_text(TOKEN + "\n")
        from_file = candor(secured, "models", "--token-file", str(tmp_path / "token"))
        assert from_file.returncode == 0, from_file.stderr
        from_env = candor(secured, "models", env={"CANDOR_TOKEN": TOKEN})
        assert from_env.returncode == 0, from_env.stderr
        both = candor(secured, "models", "--token", TOKEN, "--token-file", str(tmp_path / "token"))
        assert both.returncode == 2 and "not both" in both.stderr
    finally:
        secured.stop()
