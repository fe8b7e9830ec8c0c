"""ONNX export: graph contract, parity with torch, and the rewritable temperature."""

import numpy as np
import onnx
import pytest
import torch

from candor.calibration import softmax
from candor.calibration.calibrators import METHODS, Calibrator, TemperatureScaling, fit_calibrator
from candor.graph import read_calibrator, read_temperature, set_calibrator, set_temperature
from candor.trainer import export as export_mod
from candor.trainer.export import ExportError, export_model, run_onnx, to_onnx
from candor.trainer.models import ModelSpec, build_model


def make_model(arch="mlp", k=4, f=16, image_shape=None):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    return build_model(ModelSpec(arch, f, k, 16, 2, 0.1, image_shape), rng.normal(size=f), rng.uniform(0.5, 2, size=f))


@pytest.mark.parametrize("arch, image_shape", [("mlp", None), ("cnn", (1, 4, 4))])
def test_graph_contract_and_parity(tmp_path, arch, image_shape):
    model = make_model(arch, image_shape=image_shape)
    X = np.random.default_rng(1).normal(size=(37, 16)).astype(np.float32) * 3
    gap = export_model(model, tmp_path / "m.onnx", X, TemperatureScaling.of(1.7), multilabel=False)
    assert gap <= 1e-5
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch axis
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    logits, probs = run_onnx(tmp_path / "m.onnx", X[:5])
    with torch.no_grad():
        torch_logits = model(torch.as_tensor(X[:5])).numpy()
    assert np.allclose(logits, torch_logits, atol=1e-5)
    assert np.allclose(probs, softmax(logits, 1.7), atol=1e-6)
    assert run_onnx(tmp_path / "m.onnx", X[:1])[1].shape == (1, 4)


def test_temperature_is_a_rewritable_initializer(tmp_path):
    model = make_model()
    X = np.random.default_rng(2).normal(size=(8, 16)).astype(np.float32)
    export_model(model, tmp_path / "a.onnx", X, TemperatureScaling.of(1.0), multilabel=False)
    set_temperature(tmp_path / "a.onnx", tmp_path / "b.onnx", 0.5)
    assert read_temperature(tmp_path / "b.onnx") == pytest.approx(0.5)
    logits_a, _ = run_onnx(tmp_path / "a.onnx", X)
    logits_b, probs_b = run_onnx(tmp_path / "b.onnx", X)
    assert np.array_equal(logits_a, logits_b)
    assert np.allclose(probs_b, softmax(logits_b, 0.5), atol=1e-6)
    with pytest.raises(ValueError, match="> 0"):
        set_temperature(tmp_path / "a.onnx", tmp_path / "c.onnx", -1.0)
    assert not (tmp_path / "c.onnx").exists()


def test_multilabel_head_is_sigmoid_with_per_class_temperature(tmp_path):
    model = make_model(k=3)
    X = np.random.default_rng(3).normal(size=(10, 16)).astype(np.float32)
    t = np.array([0.5, 1.0, 2.0])
    export_model(model, tmp_path / "m.onnx", X, TemperatureScaling.of(t), multilabel=True)
    logits, probs = run_onnx(tmp_path / "m.onnx", X)
    assert np.allclose(probs, 1 / (1 + np.exp(-logits / t)), atol=1e-6)
    assert np.allclose(read_temperature(tmp_path / "m.onnx"), t)


def test_parity_failure_fails_the_export_and_writes_nothing(tmp_path, monkeypatch):
    model = make_model()
    X = np.random.default_rng(4).normal(size=(8, 16)).astype(np.float32)
    real = export_mod.to_onnx

    def drifted(*args, **kwargs):
        # A graph whose temperature disagrees with the one torch is checked at.
        proto = real(*args, **kwargs)
        for init in proto.graph.initializer:
            if init.name == "temperature":
                init.CopyFrom(onnx.numpy_helper.from_array(np.array(3.0, dtype=np.float32), "temperature"))
        return proto

    monkeypatch.setattr(export_mod, "to_onnx", drifted)
    with pytest.raises(ExportError, match="disagree"):
        export_model(model, tmp_path / "m.onnx", X, TemperatureScaling.of(1.0), multilabel=False)
    assert not (tmp_path / "m.onnx").exists()


def test_old_opset_is_refused():
    with pytest.raises(ValueError, match="17 or newer"):
        to_onnx(make_model(), 16, TemperatureScaling.of(1.0), False, opset=13)


def _fitted(method: str, seed: int = 5) -> Calibrator:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 300)
    z = rng.normal(size=(300, 3)) * 2
    z[np.arange(300), y] += 2.5
    return fit_calibrator(method, z * 1.8, y)


@pytest.mark.parametrize("method", METHODS)
def test_every_calibrator_is_folded_into_the_graph_exactly(tmp_path, method):
    """The served graph's probabilities equal the method applied in float64 numpy to its raw logits, to 1e-6."""
    model = make_model(k=3)
    X = np.random.default_rng(6).normal(size=(64, 16)).astype(np.float32)
    calibrator = _fitted(method)
    export_model(model, tmp_path / "m.onnx", X, calibrator, multilabel=False)
    logits, probs = run_onnx(tmp_path / "m.onnx", X)
    assert np.max(np.abs(probs - calibrator.probabilities(logits.astype(np.float64)))) < 1e-6
    assert read_calibrator(tmp_path / "m.onnx").method == method
    # Rewriting the head to another method keeps the network and serves the new one.
    other = _fitted("dirichlet" if method != "dirichlet" else "vector")
    set_calibrator(tmp_path / "m.onnx", tmp_path / "n.onnx", other)
    logits2, probs2 = run_onnx(tmp_path / "n.onnx", X)
    assert np.array_equal(logits, logits2)
    assert np.max(np.abs(probs2 - other.probabilities(logits2.astype(np.float64)))) < 1e-6
