"""Every registered calibrator, through fit -> graph -> serve -> re-derive: a new method is covered by being registered.

For each method of the registry, a child of digits v1 is fitted on v1's stored validation
logits and published the one way a version is made (its graph's head rewritten, the
manifest and drift reference derived). One real server serves them all; for each version:

* the graph's head reads back as the manifest's calibrator (same method, same parameters);
* the served probabilities are the method applied in float64 numpy to the served logits;
* the drift reference is the stored test logits through the method;
* feedback joined to the logged predictions (logits only in the log) re-derives the served
  probabilities: the live NLL equals the NLL of what was served.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from candor.calibration.calibrators import REGISTRY, fit_calibrator
from candor.calibration.lineage import Refit, calibrator_of, publish_child
from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE, read_manifest
from candor.calibration.metrics import nll
from candor.calibration.reference import read_sample
from candor.graph import read_calibrator, set_calibrator
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_version_per_method(digits_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("methods") / "models"
    shutil.copytree(digits_repo, repo)
    parent = read_manifest(repo / "digits/1" / MANIFEST_FILE)
    sample = read_sample(repo / "digits/1", parent.reference.sample)
    versions = {}
    for name in REGISTRY:
        fitted = fit_calibrator(name, sample.val_logits, sample.val_labels, seed=0)
        folder = publish_child(
            repo, parent, refit=Refit(fitted, f"test: {name} on v1's validation logits"),
            write_model=lambda path, c=fitted: set_calibrator(repo / "digits/1" / MODEL_FILE, path, c),
        )
        versions[name] = int(folder.name)
    server = start_server(repo, "--serve-latest", "0")
    yield repo, versions, server, sample
    server.stop()


def test_every_registered_method_is_covered(one_version_per_method):
    _, versions, _, _ = one_version_per_method
    assert list(versions) == list(REGISTRY) and len(set(versions.values())) == len(REGISTRY)


@pytest.mark.parametrize("method", list(REGISTRY))
def test_fit_graph_serve_rederive(one_version_per_method, digits_rows, method):
    repo, versions, server, sample = one_version_per_method
    version = versions[method]
    folder = repo / "digits" / str(version)
    manifest = read_manifest(folder / MANIFEST_FILE)
    described = calibrator_of(manifest)
    assert manifest.calibrator.method == method and type(described) is REGISTRY[method]
    assert read_calibrator(folder / MODEL_FILE).close_to(described)

    # The drift reference is the stored test logits through this method.
    expected_reference = described.probabilities(sample.test_logits)
    assert manifest.reference.mean_confidence == pytest.approx(float(expected_reference.max(axis=1).mean()), abs=1e-9)

    rows = digits_rows[:200]
    labels = np.random.default_rng(version).integers(0, 10, len(rows))  # any labels: the join, not the accuracy, is tested
    with server.client() as client:
        wait_for(lambda: any(m.version == str(version) and m.state == "READY" for m in client.models()), timeout=60)
        served = client.predict(rows, model="digits", version=version, return_logits=True)
        assert served.version == str(version)
        logits = served.logits.astype(np.float64)
        # The head runs in float32: each calibrated logit z carries a rounding error of a few eps·|z|, and a
        # probability moves by at most half the largest logit error. An unregularised fit on separable classes
        # can scale logits into the thousands, so the bound follows the calibrated logits' size.
        bound = 2e-6 + 4 * np.finfo(np.float32).eps * np.abs(described.calibrated_logits(logits)).max()
        assert np.max(np.abs(served.probabilities - described.probabilities(logits))) < bound
        counts = client.feedback(served.prediction_ids, labels, model="digits", version=version)
        assert counts.accepted == len(rows)
        wait_for(lambda: (client.calibration("digits", version).observed or _none).rows == len(rows), timeout=30)
        observed = client.calibration("digits", version).observed
    assert observed.nll == pytest.approx(nll(served.probabilities.astype(np.float64), labels), abs=1e-5)


class _none:
    rows = 0
