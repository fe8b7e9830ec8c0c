"""The trainer verbs as a newcomer meets them: options checked before any work, defaults that
say what they are, progress in a log, output in words, JSON that agrees with the rest of the CLI,
and a note on which version a server now serves."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from candor.calibration.manifest import read_manifest
from candor.trainer.conventions import DEFAULT_EPSILON, MAX_OPSET
from candor.trainer.data import load_npz
from candor.trainer.loop import LoopResult, Progress
from candor.trainer.report import describe_noise
from tests.conftest import run_candor

QUICK = ["--dataset", "iris", "--epochs", "2"]


def test_the_opset_ceiling_is_the_exporters():
    from torch.onnx import _constants

    assert MAX_OPSET == _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


@pytest.mark.parametrize("verb", ["train", "export"])
def test_a_bad_opset_is_refused_before_any_work(verb, tmp_path):
    args = ["train", *QUICK] if verb == "train" else ["export", "--model", "iris"]
    result = run_candor(*args, "--opset", "99", "--model-repository", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--opset" in line and f"17 to {MAX_OPSET}" in line and "99" in line and f"candor {verb} --help" in line
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_argparse_mistakes_are_one_line_and_point_at_help():
    result = run_candor("train", "--epsilon", "2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "candor train: error: argument --epsilon: expected a number in [0, 1), got 2.0 (see `candor train --help`)"]
    unknown = run_candor("predict", "--model", "digits", "--frobnicate")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert "unrecognized arguments: --frobnicate" in unknown.stderr and "see `candor predict --help`" in unknown.stderr


def test_training_defaults_to_uniform_smoothing_and_says_so(tmp_path):
    assert f"default: {DEFAULT_EPSILON}, uniform label smoothing" in " ".join(run_candor("train", "--help").stdout.split())
    result = run_candor("train", *QUICK, "--model-repository", str(tmp_path), "--model", "iris")
    assert result.returncode == 0, result.stderr
    s = read_manifest(tmp_path / "iris/1/candor.json").smoothing
    assert (s.convention, s.epsilon) == ("uniform", 0.1)
    # Which version a server on this repository now answers with.
    assert f"v1 is now the newest of {tmp_path}/iris" in result.stdout
    again = run_candor("train", *QUICK, "--model-repository", str(tmp_path), "--model", "iris", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["version"] == "2" and summary["smoothing"] == {"convention": "uniform", "epsilon": 0.1}
    assert "v2 is now the newest" in summary["newest"] and "serves v1, v2" in summary["newest"]
    assert summary["test"]["after_calibration"]["accuracy"] > 0.5
    # Off a terminal, progress is a plain line per few seconds: the first epoch's at least.
    assert "train: epoch 1/2" in again.stderr and "done" in again.stderr
    quiet = run_candor("train", *QUICK, "--model-repository", str(tmp_path), "--model", "iris", "--no-progress")
    assert "train: epoch" not in quiet.stderr
    evaluated = run_candor("evaluate", "--model-repository", str(tmp_path), "--model", "iris", "--json")
    assert json.loads(evaluated.stdout)["version"] == "3"  # text, as predict, models and the API carry it


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_epochs(progress: Progress, n: int, sleep_s: float = 0.0) -> None:
    result = LoopResult(epochs_run=0, best_epoch=0, best_val_nll=float("inf"))
    for epoch in range(1, n + 1):
        result.epochs_run, result.best_epoch, result.best_val_nll = epoch, epoch, 1.0 / epoch
        progress.epoch(result, 0.5, 1.0 / epoch, last=epoch == n)
        time.sleep(sleep_s)
    progress.close()


def test_the_bar_stays_on_a_terminal():
    stream = Terminal()
    run_epochs(Progress(3, True, stream=stream), 3)
    final = stream.getvalue().split("\r")[-1]
    assert "3/3" in final and "train" in final  # left in place, not wiped by spaces


def test_off_a_terminal_progress_is_a_line_every_few_seconds(monkeypatch):
    stream = io.StringIO()
    run_epochs(Progress(50, True, stream=stream), 50)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("train: epoch 1/50") and lines[-1].endswith("done") and len(lines) < 50
    monkeypatch.setattr("candor.trainer.loop.LOG_EVERY_S", 0.0)
    stream = io.StringIO()
    run_epochs(Progress(4, True, stream=stream), 4)
    assert [x.split(",")[0] for x in stream.getvalue().splitlines()] == [f"train: epoch {i}/4" for i in range(1, 5)]
    stream = io.StringIO()
    run_epochs(Progress(4, False, stream=stream), 4)
    assert stream.getvalue() == ""


def test_label_noise_reads_as_words():
    assert describe_noise(None) == "none"
    text = describe_noise({"kind": "symmetric", "rate": 0.2, "matrix_file": None, "seed": 0, "changed_share": 0.198})
    assert text == "symmetric, rate 0.2 (19.8% of training labels changed, seed 0)"
    assert "{" not in describe_noise({"kind": "matrix", "rate": 0.1, "matrix_file": "m.npy", "seed": 3})


@pytest.mark.parametrize("key", ["y", "Y"])
def test_npz_labels_read_from_either_letter_by_their_shape(tmp_path, key):
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    matrix = (np.arange(40).reshape(20, 2) % 3 == 0).astype(np.int64)
    np.savez(tmp_path / "ml.npz", X=X, **{key: matrix})
    np.savez(tmp_path / "mc.npz", X=X, **{key: np.arange(20) % 2})
    assert load_npz(tmp_path / "ml.npz").task == "multilabel"
    assert load_npz(tmp_path / "mc.npz").task == "multiclass"


def test_split_of_a_multilabel_version_trains_again(tmp_path):
    trained = run_candor("train", "--dataset", "synthetic_multilabel", "--n-samples", "400", "--n-classes", "3",
                         "--epochs", "2", "--model-repository", str(tmp_path / "m"), "--model", "ml")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    split = run_candor("split", "--model-repository", str(tmp_path / "m"), "--model", "ml", "--output", str(tmp_path / "t.npz"))
    assert split.returncode == 0, split.stderr
    with np.load(tmp_path / "t.npz") as f:
        assert "Y" in f.files and f["Y"].ndim == 2
    again = run_candor("train", "--dataset", str(tmp_path / "t.npz"), "--epochs", "2", "--model-repository",
                       str(tmp_path / "m2"), "--model", "again")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert read_manifest(tmp_path / "m2/again/1/candor.json").task == "multilabel"


def test_help_describes_every_verb_and_hides_flags_that_do_not_apply():
    for verb in ("evaluate", "calibrate", "export", "sweep", "split", "train", "predict", "feedback", "calibration",
                 "recalibrate", "models", "health", "simulate"):  # fmt: skip
        text = run_candor(verb, "--help").stdout
        body = text.split("options:")[0].split("\n\n", 1)[1]  # the description, between usage and the options
        assert len(body.strip()) > 40, verb
    evaluate = run_candor("evaluate", "--help").stdout
    assert "--n-samples" not in evaluate and "--label-noise" not in evaluate
    assert "--n-samples" in run_candor("train", "--help").stdout
    assert "(default: )" not in run_candor("serve", "--help").stdout
