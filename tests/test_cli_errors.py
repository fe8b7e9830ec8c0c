"""Bad flags and bad data end in one clear line and exit code 2, never a traceback,
and never leave a partial model version behind."""

import numpy as np
import pytest

from tests.conftest import run_candor

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes


def assert_clean_failure(result, message):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(("candor ", "usage:", "candor: error")), result.stderr


@pytest.fixture
def files(tmp_path):
    def npz(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return str(tmp_path / name)

    made = {
        "labels_out_of_range": npz(
            "a.npz", X=np.ones((6, 2)), y=np.array([0, 1, 2, 0, 1, 9]), class_names=np.array(["a", "b", "c"])
        ),
        "nan": npz("b.npz", X=np.array([[0.0, np.nan]] * 6), y=np.array([0, 1] * 3)),
        "mismatch": npz("c.npz", X=np.ones((6, 2)), y=np.array([0, 1] * 4)),
        "single_class": npz("d.npz", X=np.ones((6, 2)), y=np.zeros(6, dtype=int)),
    }
    (tmp_path / "empty.csv").write_text("")
    made["empty"] = str(tmp_path / "empty.csv")
    (tmp_path / "garbage.npz").write_bytes(b"\x00\x01 not a zip")
    made["unreadable"] = str(tmp_path / "garbage.npz")
    return made


@pytest.mark.parametrize(
    "case, message",
    [
        ("labels_out_of_range", "labels must lie in [0, 3)"),
        ("nan", "NaN or infinite"),
        ("mismatch", "6 rows of features but 8 labels"),
        ("single_class", "only one class"),
        ("empty", "the file is empty"),
        ("unreadable", "not a readable .npz"),
    ],
)
def test_bad_data(files, tmp_path, case, message):
    repo = tmp_path / "repo"
    result = run_candor("train", "--dataset", files[case], "--model-repository", str(repo), "--epochs", "1")
    assert_clean_failure(result, message)
    assert not repo.exists() or not any(repo.rglob("model.onnx"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epsilon", "1.5"], "expected a number in [0, 1), got 1.5"),
        (["--epsilon", "-0.1"], "expected a number in [0, 1), got -0.1"),
        (["--epsilon", "lots"], "expected a number in [0, 1), got 'lots'"),
        (["--smoothing", "gaussian"], "invalid choice: 'gaussian'"),
        (["--epochs", "0"], "expected a positive integer"),
        (["--val-fraction", "1.2"], "expected a number in (0, 1)"),
        (["--smoothing", "hierarchy", "--epsilon", "0.1"], "needs --hierarchy FILE"),
        (["--smoothing", "teacher", "--epsilon", "0.1"], "needs --teacher MODEL.onnx"),
        (["--smoothing", "teacher", "--epsilon", "0.1", "--teacher", "/nonexistent.onnx"], "teacher model not found"),
        (["--dataset", "iris", "--architecture", "cnn"], "needs image-shaped data"),
        # train's old --model cnn (the architecture, for one release): a note, then the same answer.
        (["--dataset", "iris", "--model", "cnn"], "now names the model; the architecture is --architecture cnn"),
        (["--dataset", "iris", "--model", "cnn"], "needs image-shaped data"),
        (["--dataset", "imagenet"], "unknown data set 'imagenet'"),
        (["--dataset", "/nonexistent/data.csv"], "no such file"),
        (["--name", "../escape"], "model name '../escape'"),
        (["--model", "../escape"], "model name '../escape'"),
        (["--opset", "13"], "expected an ONNX opset from 17 to 20, got 13"),
        (["--per-class-temperature"], "for multi-label models"),
    ],
)
def test_bad_flags(tmp_path, flags, message):
    repo = tmp_path / "repo"
    result = run_candor("train", "--dataset", "iris", "--epochs", "1", "--model-repository", str(repo), *flags)
    assert_clean_failure(result, message)
    assert not any(repo.rglob("*.onnx")) if repo.exists() else True
    if repo.exists():  # a failed export leaves no staging folder
        assert not [p for p in repo.rglob(".staging-*")]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epsilons", "0,1.5"], "--epsilons must be comma-separated numbers in [0, 1)"),
        (["--epsilons", "a,b"], "--epsilons must be comma-separated numbers in [0, 1)"),
        (["--conventions", "uniform,gaussian"], "--conventions must be comma-separated names from uniform, off_target"),
        (["--seeds", "1,1"], "--seeds must be comma-separated distinct integers"),
    ],
)
def test_bad_sweep_flags(tmp_path, flags, message):
    assert_clean_failure(
        run_candor("sweep", "--dataset", "iris", "--epochs", "1", "--output", str(tmp_path / "s"), *flags), message
    )
    assert not (tmp_path / "s").exists()


def test_missing_model_and_version(digits_repo):
    assert_clean_failure(
        run_candor("evaluate", "--model-repository", str(digits_repo), "--model", "nope"), "no versions of model 'nope'"
    )
    assert_clean_failure(
        run_candor("calibrate", "--model-repository", str(digits_repo), "--model", "digits", "--version", "99"),
        "has no version 99",
    )


def test_tampered_model_is_refused(digits_repo, tmp_path):
    import shutil

    shutil.copytree(digits_repo / "digits" / "1", tmp_path / "digits" / "1")
    with open(tmp_path / "digits/1/model.onnx", "ab") as f:
        f.write(b"\0")
    result = run_candor("evaluate", "--model-repository", str(tmp_path), "--model", "digits")
    assert_clean_failure(result, "sha256 does not match")


def test_evaluating_on_data_of_another_shape_is_refused(digits_repo):
    result = run_candor("evaluate", "--model-repository", str(digits_repo), "--model", "digits", "--dataset", "iris")
    assert_clean_failure(result, "the model expects 64 features")
