"""One function derives a child version: what it inherits, what it always sets anew, and that a failure publishes nothing."""

import json

import pytest

from candor.calibration.calibrators import TemperatureScaling
from candor.calibration.lineage import Refit, derive_manifest, publish_child
from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE, read_manifest, sha256_file
from candor.calibration.repository import versions
from tests.calibration.test_manifest import sample_manifest


def test_a_child_inherits_everything_but_what_it_changes():
    parent = sample_manifest()
    refit = Refit(TemperatureScaling.of(2.5, True), "feedback")
    child = derive_manifest(parent, version=7, model_sha256="a" * 64, refit=refit)
    assert (child.version, child.parent, child.model_sha256) == (7, f"{parent.name}/{parent.version}", "a" * 64)
    assert child.temperature.value == [2.5] and child.temperature.fitted_on == "feedback" and child.temperature.clamped
    assert child.temperature.bounds == parent.temperature.bounds and child.temperature.per_class == parent.temperature.per_class
    assert (child.metrics, child.reference, child.training, child.data) == (parent.metrics, parent.reference, parent.training,
                                                                           parent.data)  # fmt: skip
    assert child.created_at.endswith("+00:00")
    same = derive_manifest(parent, version=8, model_sha256="b" * 64)
    assert same.temperature == parent.temperature and same.parent == child.parent


def test_publish_child_writes_graph_manifest_and_extras_as_one_version(tmp_path):
    parent = sample_manifest()
    seen = []

    def extras(folder, manifest):
        seen.append(manifest.version)
        (folder / "report.md").write_text("r")

    folder = publish_child(tmp_path, parent, write_model=lambda path: path.write_bytes(b"graph"), extras=extras,
                           refit=Refit(TemperatureScaling.of(1.5), "val"))  # fmt: skip
    child = read_manifest(folder / MANIFEST_FILE)
    assert folder == tmp_path / parent.name / "1" and seen == [1] and (folder / "report.md").is_file()
    assert child.model_sha256 == sha256_file(folder / MODEL_FILE) and child.temperature.value == [1.5]
    again = publish_child(tmp_path, child, write_model=lambda path: path.write_bytes(b"graph 2"))
    assert json.loads((again / MANIFEST_FILE).read_text())["parent"] == f"{parent.name}/1"


def test_a_failure_while_writing_publishes_nothing(tmp_path):
    def broken(path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_child(tmp_path, sample_manifest(), write_model=broken)
    assert versions(tmp_path, sample_manifest().name) == []
    assert [p.name for p in (tmp_path / sample_manifest().name).iterdir()] == []  # no staging folder left behind
