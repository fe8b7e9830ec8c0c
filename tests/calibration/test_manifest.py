"""The manifest round-trips, and a broken one is refused with the field named."""

import copy
import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from candor.calibration import SchemaError, read_manifest, write_manifest
from candor.calibration.manifest import (
    CalibratorSpec,
    DataSpec,
    InputSpec,
    LabelShiftSpec,
    Manifest,
    Metrics,
    MetricSet,
    SmoothingSpec,
    TemperatureSpec,
    TrainingSpec,
    manifest_from_dict,
    manifest_json_schema,
    sha256_file,
)
from candor.calibration.reference import build_reference, confidence_histogram


def sample_manifest() -> Manifest:
    ms = MetricSet(0.9, 0.3, 0.15, 0.05, 0.02, 0.2, 0.07, 0.04, 0.03, 0.07, 0.01)
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    return Manifest(
        schema_version=4, candor_version="0.1.0", name="demo", version=3, created_at="2026-11-23T00:00:00+00:00",
        task="multiclass", class_names=["a", "b", "c"],
        input=InputSpec("input", "float32", [-1, 4], None), outputs=["logits", "probabilities"],
        temperature=TemperatureSpec([1.5], False, "val", False, [0.05, 20.0]),
        calibrator=CalibratorSpec("temperature", None, None, None, None, None, None),
        smoothing=SmoothingSpec("uniform", 0.1, [1 / 3] * 3, None, None),
        training=TrainingSpec("mlp", 8, 1, 0.0, 10, 5, 4, 32, 1e-3, 0.0, 3, 0, 1, None),
        data=DataSpec("synthetic", {"n_samples": 100, "seed": 0}, "0" * 64, 4, 60, 20, 20, 0, 0.2, 0.2, None),
        metrics=Metrics("test", 15, ms, ms),
        reference=build_reference(probs, np.array([0, 1, 1]), "test"),
        model_sha256="ab" * 32, parent=None, conformal=None, label_shift=None,
    )  # fmt: skip


def test_round_trip(tmp_path):
    m = sample_manifest()
    write_manifest(m, tmp_path / "candor.json")
    assert read_manifest(tmp_path / "candor.json") == m
    assert json.loads((tmp_path / "candor.json").read_text())["metrics"]["after_temperature"]["ece"] == 0.05


def _broken(tmp_path, mutate):
    data = copy.deepcopy(sample_manifest().to_dict())
    mutate(data)
    path = tmp_path / "candor.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("temperature"), "missing field 'temperature'"),
        (lambda d: d["metrics"]["after_temperature"].pop("ece"), "missing field 'metrics.after_temperature.ece'"),
        (lambda d: d.update(colour="red"), "unknown field 'colour'"),
        (lambda d: d["smoothing"].update(sigma=1), r"unknown field 'smoothing.sigma' \(allowed here: "
                                                       r"convention, epsilon, distribution, source, teacher_temperature\)"),
        (lambda d: d.update(version="3"), "field 'version' must be a valid integer, got '3'"),
        (lambda d: d.update(version=True), "field 'version' must be a valid integer, got True"),
        (lambda d: d.update(version=0), "field 'version' must be greater than or equal to 1, got 0"),
        (lambda d: d["training"].update(width=8.0), "field 'training.width' must be a valid integer"),
        (lambda d: d["metrics"]["after_temperature"].update(ece="0.1"),
         "field 'metrics.after_temperature.ece' must be a valid number"),
        (lambda d: d["data"]["params"].update(n_samples=[1]),
         "field 'data.params.n_samples' must be one of str, int, float, bool, null"),
        (lambda d: d.update(temperature=[1.5]), "field 'temperature' must be an object"),
        (lambda d: d.update(conformal={}), "missing field 'conformal.file'"),
        (lambda d: d.update(task="regression"), "field 'task' must be 'multiclass' or 'multilabel', got 'regression'"),
        (lambda d: d["temperature"].update(value=[-1.0]), "temperature.value"),
        (lambda d: d["temperature"].update(value=[1.0, 2.0]), "temperature.value"),
        (lambda d: d["smoothing"].update(epsilon=1.0), "smoothing.epsilon"),
        (lambda d: d.update(class_names=["a", "b"]), "reference.class_frequencies"),
        (lambda d: d.update(class_names=["a", "a", "b"]), "duplicates"),
        (lambda d: d.update(schema_version=5), "schema_version"),
        (lambda d: d["calibrator"].update(method="vector"), "calibrator.scale"),
        (lambda d: d["calibrator"].update(method="matrix", weight=[[1.0] * 3] * 2, bias=[0.0] * 3), "calibrator.weight"),
        (lambda d: d["calibrator"].update(method="sideways"), "calibrator.method"),
        (lambda d: d.update(model_sha256="xyz"), "model_sha256"),
        (lambda d: d["input"].update(shape=[4]), "input.shape"),
        (lambda d: d["input"].update(image_shape=[1, 3, 3]), "input.image_shape"),
        (lambda d: d["class_names"].__setitem__(0, 7), r"class_names\[0\]"),
        (lambda d: d.update(name="../etc"), "field 'name' must match pattern"),
        (lambda d: d.update(model_sha256="AB" * 32), "field 'model_sha256' must match pattern"),
    ],
)
def test_broken_manifest_is_refused_naming_the_field(tmp_path, mutate, message):
    path = _broken(tmp_path, mutate)
    with pytest.raises(SchemaError, match=message) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_every_wrong_field_is_named_at_once(tmp_path):
    path = _broken(tmp_path, lambda d: d.update(version="3", colour="red", task=None))
    with pytest.raises(SchemaError) as info:
        read_manifest(path)
    for part in ("field 'version'", "unknown field 'colour'", "field 'task'"):
        assert part in str(info.value)


SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "manifest.schema.json"


def test_the_published_json_schema_is_the_one_the_reader_uses():
    assert json.loads(SCHEMA_FILE.read_text()) == manifest_json_schema(), (
        "docs/manifest.schema.json is stale: run `make schema`")


def test_the_json_schema_accepts_a_manifest_and_refuses_what_the_reader_refuses_by_type():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    good = sample_manifest().to_dict()
    validator.validate(good)  # raises on a manifest the reader takes
    for mutate in (lambda d: d.update(version="3"), lambda d: d.update(version=0), lambda d: d.update(colour="red"),
                   lambda d: d["smoothing"].update(epsilon=1.0), lambda d: d.pop("label_shift"),
                   lambda d: d["reference"].update(sample=[1]), lambda d: d.update(model_sha256="xyz"),
                   lambda d: d["smoothing"].update(sigma=1), lambda d: d["data"]["params"].update(n=[1])):
        data = copy.deepcopy(good)
        mutate(data)
        assert not validator.is_valid(data), data
        with pytest.raises(SchemaError):
            manifest_from_dict(data)


def test_unreadable_or_invalid_json(tmp_path):
    with pytest.raises(SchemaError, match="cannot read manifest"):
        read_manifest(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(SchemaError, match="must be an object"):
        read_manifest(tmp_path / "list.json")


def test_invalid_manifest_is_never_written(tmp_path):
    path = tmp_path / "candor.json"
    write_manifest(sample_manifest(), path)
    before = path.read_bytes()
    with pytest.raises(SchemaError):
        write_manifest(sample_manifest().replace(version=0), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["candor.json"]  # no temp file left behind


def test_sha256_of_a_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_reference_statistics():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    ref = build_reference(probs, np.array([0, 1, 1]), "test")
    assert ref.class_frequencies == pytest.approx([2 / 3, 1 / 3])
    assert ref.mean_confidence == pytest.approx((0.9 + 0.6 + 0.7) / 3)
    assert ref.accuracy == pytest.approx(2 / 3)
    hist = confidence_histogram(np.array([0.0, 0.005, 0.01, 1.0]))
    assert hist[0] == pytest.approx(0.75) and hist[-1] == pytest.approx(0.25)
    assert manifest_from_dict(sample_manifest().to_dict()).reference.n_samples == 3


def test_a_schema_1_manifest_is_read_as_temperature_scaling_without_a_stored_sample(tmp_path):
    data = sample_manifest().to_dict()
    data["schema_version"] = 1
    del data["calibrator"]
    for key in ("ece_low", "ece_high", "debiased_rms_ece"):
        del data["metrics"]["before_temperature"][key], data["metrics"]["after_temperature"][key]
    for key in ("source", "sample", "ece_interval"):
        del data["reference"][key]
    del data["conformal"], data["label_shift"]
    (tmp_path / "candor.json").write_text(json.dumps(data))
    m = read_manifest(tmp_path / "candor.json")
    assert (m.schema_version, m.calibrator.method, m.reference.sample, m.metrics.after_temperature.ece_low, m.conformal) == (
        4, "temperature", None, None, None)
    assert "not re-derivable" in m.reference.source


def test_a_schema_2_manifest_is_read_without_conformal_scores(tmp_path):
    data = sample_manifest().to_dict()
    data["schema_version"] = 2
    del data["conformal"], data["label_shift"]
    (tmp_path / "candor.json").write_text(json.dumps(data))
    m = read_manifest(tmp_path / "candor.json")
    assert (m.schema_version, m.conformal, m.label_shift) == (4, None, None)
    data["schema_version"] = 3  # a schema-3 manifest must say conformal, even as null
    (tmp_path / "candor.json").write_text(json.dumps(data))
    with pytest.raises(SchemaError, match="conformal"):
        read_manifest(tmp_path / "candor.json")


def test_a_schema_4_manifest_must_say_label_shift_and_one_needs_a_calibrator_with_a_bias(tmp_path):
    data = sample_manifest().to_dict()
    del data["label_shift"]
    with pytest.raises(SchemaError, match="label_shift"):
        manifest_from_dict(data)
    shift = LabelShiftSpec([0.5, 0.3, 0.2], [1 / 3] * 3, [1 / 3] * 3, "prediction log of demo/2", 1.0, 2.0, 300, 12, True,
                           1e-9, 0.1667)  # fmt: skip
    with pytest.raises(SchemaError, match="needs a calibrator with a bias"):
        manifest_from_dict(sample_manifest().replace(label_shift=shift).to_dict())
    bcts = dataclasses.replace(sample_manifest().calibrator, method="bcts", bias=[0.4, -0.1, -0.3])
    m = manifest_from_dict(sample_manifest().replace(label_shift=shift, calibrator=bcts).to_dict())
    assert m.label_shift == shift
    wrong = dataclasses.replace(shift, priors=[0.5, 0.5, 0.2])
    with pytest.raises(SchemaError, match=r"label_shift.priors"):
        manifest_from_dict(sample_manifest().replace(label_shift=wrong, calibrator=bcts).to_dict())
