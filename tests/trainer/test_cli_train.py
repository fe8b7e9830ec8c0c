"""End to end through the real `candor` command: train, evaluate, calibrate, export, sweep."""

import csv
import json

import numpy as np
import pytest

from candor.calibration import read_manifest
from candor.calibration.calibrators import TemperatureScaling
from candor.calibration.lineage import Refit, publish_child
from candor.calibration.manifest import sha256_file
from candor.graph import read_temperature, set_temperature
from candor.trainer.export import run_onnx
from candor.trainer.loop import LoopOptions
from candor.trainer.options import DataOptions, TrainOptions
from candor.trainer.pipeline import fit
from tests.conftest import run_candor

pytestmark = pytest.mark.slow


def test_train_writes_a_complete_version(digits_repo):
    v1 = digits_repo / "digits" / "1"
    names = {p.name for p in v1.iterdir()}
    assert {"model.onnx", "candor.json", "report.md", "metrics.json", "reliability.png", "checkpoint.pt"} <= names
    m = read_manifest(v1 / "candor.json")
    assert m.model_sha256 == sha256_file(v1 / "model.onnx")
    assert read_temperature(v1 / "model.onnx") == pytest.approx(m.temperature.value[0], rel=1e-6)
    assert m.smoothing.convention == "uniform" and m.smoothing.epsilon == 0.1
    assert m.smoothing.distribution == pytest.approx([0.1] * 10)
    assert m.metrics.before_temperature.accuracy == m.metrics.after_temperature.accuracy
    assert m.data.n_train + m.data.n_val + m.data.n_test == 1797
    assert sum(m.reference.class_frequencies) == pytest.approx(1)
    assert (v1 / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (v1 / "report.md").read_text()
    assert "after calibration" in report and "90% bootstrap interval" in report and "drift reference: test split" in report
    assert m.calibrator.method == "temperature" and m.reference.sample is not None
    assert sha256_file(v1 / m.reference.sample.file) == m.reference.sample.sha256
    # The basic bootstrap corrects the plug-in ECE's upward bias, so the interval may sit below the estimate.
    low, high = m.reference.ece_interval
    assert 0 <= low <= high and m.metrics.after_temperature.ece_high >= m.metrics.after_temperature.ece_low >= 0
    assert not [p for p in (digits_repo / "digits").iterdir() if p.name.startswith(".")]  # no staging left


def test_evaluate_reproduces_the_manifest_numbers_through_onnx(digits_repo):
    result = run_candor("evaluate", "--model-repository", str(digits_repo), "--model", "digits", "--version", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    m = read_manifest(digits_repo / "digits" / "1" / "candor.json")
    assert report["rows"] == m.data.n_test
    for key in ("accuracy", "nll", "ece", "brier"):
        assert report["calibrated"][key] == pytest.approx(getattr(m.metrics.after_temperature, key), abs=1e-5)
        assert report["uncalibrated"][key] == pytest.approx(getattr(m.metrics.before_temperature, key), abs=1e-5)
    table = run_candor("evaluate", "--model-repository", str(digits_repo), "--model", "digits", "--version", "1")
    assert "served (temperature)" in table.stdout and "[" in table.stdout


def test_calibrate_publishes_only_a_significant_refit_and_rederives_the_reference(digits_repo, tmp_path):
    import shutil

    repo = tmp_path / "repo"
    (repo / "digits").mkdir(parents=True)
    shutil.copytree(digits_repo / "digits" / "1", repo / "digits" / "1")
    # The same method on the same validation rows finds the same temperature: unchanged, nothing written.
    result = run_candor("calibrate", "--model-repository", str(repo), "--model", "digits")
    assert result.returncode == 0, result.stderr
    assert "unchanged:" in result.stdout and not (repo / "digits/2").exists()

    # A child made overconfident (T = 0.2), then calibrated: significantly better, published.
    v1 = read_manifest(repo / "digits/1/candor.json")
    publish_child(repo, v1, write_model=lambda path: set_temperature(repo / "digits/1/model.onnx", path, 0.2),
                  refit=Refit(TemperatureScaling.of(0.2), "test: made overconfident"))  # fmt: skip
    v2 = read_manifest(repo / "digits/2/candor.json")
    assert v2.reference.confidence_histogram != v1.reference.confidence_histogram  # its own calibrator's reference
    result = run_candor("calibrate", "--model-repository", str(repo), "--model", "digits")
    assert result.returncode == 0, result.stderr
    assert "Wrote" in result.stdout and "90% paired bootstrap" in result.stdout
    v3 = read_manifest(repo / "digits/3/candor.json")
    assert v3.parent == "digits/2" and v3.temperature.value[0] == pytest.approx(v1.temperature.value[0], rel=1e-3)
    low = v3.calibrator.nll_improvement[1]
    assert low > 0
    # The reference comes back to the clean one: the same stored logits through (nearly) the same T.
    assert np.abs(np.subtract(v3.reference.confidence_histogram, v1.reference.confidence_histogram)).sum() < 0.02
    assert v3.reference.sample.sha256 == v1.reference.sample.sha256 and "digits/3's temperature calibrator" in v3.reference.source
    logits1, _ = run_onnx(repo / "digits/1/model.onnx", np.ones((2, 64), np.float32))
    logits3, _ = run_onnx(repo / "digits/3/model.onnx", np.ones((2, 64), np.float32))
    assert np.array_equal(logits1, logits3)

    # A calibrated child has no checkpoint of its own; export finds its ancestor's and keeps its calibrator.
    result = run_candor("export", "--model-repository", str(repo), "--model", "digits", "--version", "3", "--opset", "18")
    assert result.returncode == 0, result.stderr
    v4 = read_manifest(repo / "digits/4/candor.json")
    assert v4.parent == "digits/3" and v4.temperature == v3.temperature
    logits4, _ = run_onnx(repo / "digits/4/model.onnx", np.ones((2, 64), np.float32))
    assert np.allclose(logits1, logits4, atol=1e-5)


def test_calibrate_refuses_an_unknown_method_in_one_line(digits_repo):
    result = run_candor("calibrate", "--model-repository", str(digits_repo), "--model", "digits", "--method", "isotonic")
    assert result.returncode == 2 and "temperature" in result.stderr and "dirichlet" in result.stderr
    assert "Traceback" not in result.stderr


def test_training_is_reproducible():
    opts = TrainOptions(data=DataOptions(dataset="iris"), loop=LoopOptions(max_epochs=5, progress=False, seed=3))
    a, b = fit(opts), fit(opts)
    for (name, ta), tb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert np.array_equal(ta.numpy(), tb.numpy()), name
    assert a.calibrator.temperature == b.calibrator.temperature


def test_torchrun_data_parallel_writes_one_version(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "candor",
           "train", "--dataset", "synthetic", "--n-samples", "600", "--epochs", "4", "--model-repository",
           str(tmp_path), "--model", "ddp"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["1"]
    assert result.stdout.count("Wrote ") == 1  # only rank 0 reports and writes
    m = read_manifest(tmp_path / "ddp/1/candor.json")
    assert m.training.world_size == 2


def test_multilabel_with_per_class_temperature(tmp_path):
    result = run_candor("train", "--dataset", "synthetic_multilabel", "--n-samples", "600", "--n-classes", "4",
                        "--epsilon", "0.05", "--epochs", "8", "--per-class-temperature",
                        "--model-repository", str(tmp_path), "--model", "ml")  # fmt: skip
    assert result.returncode == 0, result.stderr
    m = read_manifest(tmp_path / "ml/1/candor.json")
    assert m.task == "multilabel" and m.smoothing.convention == "multilabel"
    assert m.temperature.per_class and len(m.temperature.value) == 4
    logits, probs = run_onnx(tmp_path / "ml/1/model.onnx", np.zeros((3, 20), np.float32))
    assert np.allclose(probs, 1 / (1 + np.exp(-logits / np.array(m.temperature.value))), atol=1e-6)


def test_cnn_teacher_hierarchy_and_prior(digits_repo, tmp_path):
    common = ["--dataset", "digits", "--epochs", "3", "--model-repository", str(tmp_path)]
    teacher = str(digits_repo / "digits/1/model.onnx")
    tree = tmp_path / "tree.json"
    tree.write_text(json.dumps({"round": ["0", "6", "8", "9"], "straight": ["1", "4", "7"], "curly": ["2", "3", "5"]}))
    runs = {
        "cnn": ["--architecture", "cnn", "--width", "16", "--epsilon", "0.1", "--smoothing", "off_target"],
        "teacher": ["--smoothing", "teacher", "--teacher", teacher, "--teacher-temperature", "2", "--epsilon", "0.5"],
        "hierarchy": ["--smoothing", "hierarchy", "--hierarchy", str(tree), "--epsilon", "0.1"],
        "prior": ["--smoothing", "prior", "--epsilon", "0.2", "--class-weights", "balanced"],
    }
    for name, flags in runs.items():
        result = run_candor("train", *common, "--model", name, *flags)
        assert result.returncode == 0, (name, result.stderr)
    assert read_manifest(tmp_path / "cnn/1/candor.json").training.architecture == "cnn"
    t = read_manifest(tmp_path / "teacher/1/candor.json").smoothing
    assert (t.convention, t.source, t.teacher_temperature, t.epsilon) == ("teacher", teacher, 2.0, 0.5)
    assert read_manifest(tmp_path / "hierarchy/1/candor.json").smoothing.source == str(tree)
    p = read_manifest(tmp_path / "prior/1/candor.json")
    assert p.smoothing.distribution == pytest.approx(list(np.bincount(fit_prior_labels(p)) / p.data.n_train), abs=1e-9)
    assert p.training.class_weights is not None and len(p.training.class_weights) == 10


def fit_prior_labels(manifest):
    from candor.trainer.split import split_dataset

    opts = DataOptions.from_manifest(manifest.data)
    ds = opts.load()
    return ds.y[split_dataset(ds, seed=opts.split_seed).train]


def test_label_noise_is_recorded(tmp_path):
    result = run_candor("train", "--dataset", "synthetic", "--n-samples", "2000", "--label-noise", "0.2", "--epochs", "3",
                        "--model-repository", str(tmp_path), "--model", "noisy")  # fmt: skip
    assert result.returncode == 0, result.stderr
    noise = read_manifest(tmp_path / "noisy/1/candor.json").data.label_noise
    assert noise["kind"] == "symmetric" and noise["rate"] == 0.2
    assert noise["changed_share"] == pytest.approx(0.2, abs=0.04)


def test_sweep_writes_table_and_plot(tmp_path):
    result = run_candor("sweep", "--dataset", "iris", "--epsilons", "0,0.1", "--epochs", "3", "--seeds", "0,1",
                        "--output", str(tmp_path / "s"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "s/sweep.csv")))
    assert len(rows) == 12 and {r["seed"] for r in rows} == {"0", "1"}
    assert [(r["convention"], r["epsilon"], r["temperature_scaled"]) for r in rows if r["seed"] == "1"] == [
        ("none", "0.0", "False"), ("none", "0.0", "True"),
        ("uniform", "0.1", "False"), ("uniform", "0.1", "True"),
        ("off_target", "0.1", "False"), ("off_target", "0.1", "True"),
    ]  # fmt: skip
    for r in rows:  # temperature scaling never changes accuracy
        twin = next(o for o in rows if o["convention"] == r["convention"] and o["seed"] == r["seed"]
                    and o["temperature_scaled"] != r["temperature_scaled"])  # fmt: skip
        assert r["accuracy"] == twin["accuracy"]
    assert (tmp_path / "s/sweep.png").stat().st_size > 1000
    table = (tmp_path / "s/sweep.md").read_text()
    assert "| off_target | 0.1 | yes |" in table and "mean ± std over 2 seeds" in table


def test_manifest_records_the_class_weights_the_loss_used(tmp_path):
    # Label noise changes the training split's labels; the loss is weighted from those, and so is the record.
    from candor.trainer.pipeline import build_manifest
    from candor.trainer.smoothing import class_weights

    data = DataOptions(dataset="synthetic", n_samples=900, n_classes=4, imbalance=4.0, label_noise=0.4)
    t = fit(TrainOptions(data=data, class_weights="balanced", loop=LoopOptions(max_epochs=1, progress=False)))
    again = fit(TrainOptions(data=data, class_weights="balanced", loop=LoopOptions(max_epochs=1, progress=False)))
    manifest = build_manifest(t, "noisy", 1, "0" * 64, t.test.reference)
    clean_split = t.data.y[t.split.train]
    assert manifest.training.class_weights == pytest.approx(t.class_weights.tolist())
    assert t.class_weights.tolist() == again.class_weights.tolist()  # reproducible
    # ... and they are not the weights of the clean labels or of the whole set, which differ under this noise.
    assert not np.allclose(t.class_weights, class_weights(clean_split, 4, "balanced", False))
    assert not np.allclose(t.class_weights, class_weights(t.data.y, 4, "balanced", False))
    assert manifest.data.label_noise["rate"] == 0.4
