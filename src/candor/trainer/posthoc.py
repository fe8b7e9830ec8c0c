"""Work on published versions: evaluate, refit the calibrator, re-export.

Evaluation and recalibration run the exported ONNX graph (what the server
serves), not the torch model, so their numbers are the served model's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration import repository
from candor.calibration.calibrators import Calibrator, TemperatureScaling
from candor.calibration.intervals import Interval, paired_improvement
from candor.calibration.lineage import Refit, calibrator_of, publish_child
from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, read_manifest, sha256_file
from candor.calibration.multilabel import row_binary_nll
from candor.calibration.selection import fit_method, improvement
from candor.graph import read_calibrator, set_calibrator
from candor.trainer.export import DEFAULT_OPSET, export_model, run_onnx
from candor.trainer.measure import Measurement, measure
from candor.trainer.options import DataOptions
from candor.trainer.report import write_reports
from candor.trainer.split import split_dataset, split_off


@dataclass(frozen=True)
class Version:
    folder: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def multilabel(self) -> bool:
        return self.manifest.task == "multilabel"

    @property
    def calibrator(self) -> Calibrator:
        return calibrator_of(self.manifest)


def open_version(repo: str | Path, name: str, version: int | None = None) -> Version:
    """Read a version's manifest and check that model.onnx is the file it describes."""
    folder = repository.version_dir(Path(repo), name, version)
    manifest = read_manifest(folder / MANIFEST_FILE)
    if not (folder / MODEL_FILE).is_file():
        raise ValueError(f"{folder}: {MODEL_FILE} is missing")
    if sha256_file(folder / MODEL_FILE) != manifest.model_sha256:
        raise ValueError(f"{folder / MODEL_FILE}: sha256 does not match the manifest; the file was changed or corrupted")
    graph, described = read_calibrator(folder / MODEL_FILE), calibrator_of(manifest)
    if not graph.close_to(described):
        raise ValueError(f"{folder}: the graph's calibrator ({graph.describe()}) differs from the manifest's "
                         f"({described.describe()})")  # fmt: skip
    return Version(folder, manifest)


def labelled_rows(v: Version, data: DataOptions | None, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y, description) of ``split`` of ``data``, or of the version's own data set
    (rebuilt from its manifest, and checked unchanged by fingerprint) when ``data`` is None."""
    own = data is None
    opts = DataOptions.from_manifest(v.manifest.data) if own else data
    ds = opts.load()
    if own and ds.fingerprint != v.manifest.data.fingerprint:
        raise ValueError(
            f"the data set {opts.dataset!r} differs from the one this model was trained on (fingerprint changed); pass --dataset"
        )
    if ds.class_names != v.manifest.class_names or ds.X.shape[1] != v.manifest.input.shape[1]:
        raise ValueError(
            f"{opts.dataset}: data has {ds.X.shape[1]} features and classes {ds.class_names[:5]}..., "
            f"the model expects {v.manifest.input.shape[1]} features and classes {v.manifest.class_names[:5]}..."
        )
    if split != "all":
        rows = split_dataset(ds, val_fraction=opts.val_fraction, test_fraction=opts.test_fraction, seed=opts.split_seed).indices(
            split
        )
        if own and split == "val" and v.manifest.conformal is not None:
            # the rows kept for the conformal scores stay out of every fit, a refit's too
            rows = split_off(rows, v.manifest.conformal.rows, opts.split_seed)[0]
        ds = ds.subset(rows)
    return ds.X, ds.y, f"{opts.dataset}:{split}"


def evaluate(v: Version, X: np.ndarray, y: np.ndarray, split: str) -> Measurement:
    """Metrics of the served graph uncalibrated (T = 1) and through its own calibrator."""
    logits, _ = run_onnx(v.model_path, X)
    return measure(logits.astype(np.float64), y, TemperatureScaling.of(1.0), v.calibrator, v.multilabel, split)


def _reports(m: Measurement) -> Callable[[Path, Manifest], None]:
    """Write a published child's report files from its measurement."""

    def write(folder: Path, manifest: Manifest) -> None:
        write_reports(folder, manifest, m.panels(), {"parent": manifest.parent})

    return write


@dataclass(frozen=True)
class Recalibrated:
    calibrator: Calibrator
    fitted_on: str
    selected_by: str | None
    improvement: Interval  # held-out NLL decrease from the version's calibrator to the refit
    measurement: Measurement  # before: the version's calibrator; after: the refit
    folder: Path | None  # the published child; None when unchanged
    reason: str  # why it was (not) published


def recalibrate(repo: str | Path, v: Version, fit_rows: tuple[np.ndarray, np.ndarray, str],
                eval_rows: tuple[np.ndarray, np.ndarray, str], method: str = "temperature") -> Recalibrated:  # fmt: skip
    """Fit ``method`` on ``fit_rows`` and compare it with the version's calibrator on ``eval_rows``.

    The refit is published as the next version only when its mean held-out NLL decrease
    has a 90% paired-bootstrap interval above 0 (and a temperature is not at a clamp
    bound); otherwise nothing is written and the result says why."""
    X_fit, y_fit, fit_desc = fit_rows
    X_eval, y_eval, eval_desc = eval_rows
    logits, _ = run_onnx(v.model_path, X_fit)
    task = "multilabel" if v.multilabel else "multiclass"
    chosen = fit_method(method, logits.astype(np.float64), y_fit, task, per_class=v.manifest.temperature.per_class)
    eval_logits, _ = run_onnx(v.model_path, X_eval)
    eval_logits = eval_logits.astype(np.float64)
    m = measure(eval_logits, y_eval, v.calibrator, chosen.calibrator, v.multilabel, eval_desc)
    if v.multilabel:
        gain = paired_improvement(row_binary_nll(v.calibrator.probabilities(eval_logits, task), y_eval),
                                  row_binary_nll(chosen.calibrator.probabilities(eval_logits, task), y_eval))  # fmt: skip
    else:
        gain = improvement(v.calibrator, chosen.calibrator, eval_logits, y_eval)
    common = dict(calibrator=chosen.calibrator, fitted_on=fit_desc, selected_by=chosen.summary, improvement=gain, measurement=m)
    if chosen.calibrator.clamped:
        return Recalibrated(folder=None, reason="the fitted temperature lies at a bound of its range", **common)
    if gain.low <= 0:
        return Recalibrated(folder=None, reason=f"the held-out NLL decrease {gain} is not significantly above 0", **common)
    folder = publish_child(repo, v.manifest, write_model=lambda path: set_calibrator(v.model_path, path, chosen.calibrator),
                           refit=Refit(chosen.calibrator, fit_desc, gain.as_list(), chosen.summary), metrics=m.metrics(),
                           extras=_reports(m))  # fmt: skip
    return Recalibrated(folder=folder, reason="the held-out NLL decrease is significantly above 0", **common)


def checkpoint_of(repo: Path, v: Version) -> Path:
    """The torch checkpoint of ``v``'s network: its own, or its nearest ancestor's
    (a refit changes only the calibrator, so the parent's weights are the same)."""
    from candor.trainer.pipeline import CHECKPOINT_FILE

    folder, manifest = v.folder, v.manifest
    while not (folder / CHECKPOINT_FILE).is_file():
        if manifest.parent is None:
            raise ValueError(f"{v.folder}: no {CHECKPOINT_FILE} in it or in any version it was derived from")
        name, version = manifest.parent.rsplit("/", 1)
        folder = repository.version_dir(repo, name, int(version))
        manifest = read_manifest(folder / MANIFEST_FILE)
    return folder / CHECKPOINT_FILE


def reexport(repo: str | Path, v: Version, opset: int = DEFAULT_OPSET) -> Path:
    """Export the version's saved torch weights again (e.g. at another opset) as a new version."""
    import torch

    from candor.trainer.models import ModelSpec, build_model
    from candor.trainer.pipeline import CHECKPOINT_FILE

    ckpt_path = checkpoint_of(Path(repo), v)
    ckpt = torch.load(ckpt_path, weights_only=True)
    spec = ModelSpec(
        **{**ckpt["spec"], "image_shape": tuple(ckpt["spec"]["image_shape"]) if ckpt["spec"]["image_shape"] else None}
    )
    model = build_model(spec, np.zeros(spec.n_features), np.ones(spec.n_features))
    model.load_state_dict(ckpt["state_dict"])
    X, y, desc = labelled_rows(v, None, "test")

    def extras(folder: Path, manifest: Manifest) -> None:
        shutil.copy2(ckpt_path, folder / CHECKPOINT_FILE)
        _reports(evaluate(Version(folder, manifest), X, y, desc))(folder, manifest)

    def write_model(path: Path) -> None:
        export_model(model, path, X, v.calibrator, v.multilabel, opset)

    return publish_child(repo, v.manifest, write_model=write_model, extras=extras)
