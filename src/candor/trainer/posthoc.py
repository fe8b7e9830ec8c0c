"""Work on published versions: evaluate, refit the temperature, re-export.

Evaluation and recalibration run the exported ONNX graph (what the server
serves), not the torch model, so their numbers are the served model's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration import fit_temperature, repository
from candor.calibration.lineage import Calibrator, publish_child
from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, read_manifest, sha256_file
from candor.graph import read_temperature, set_temperature
from candor.trainer.export import DEFAULT_OPSET, export_model, run_onnx
from candor.trainer.measure import Measurement, measure
from candor.trainer.options import DataOptions
from candor.trainer.report import write_reports
from candor.trainer.split import split_dataset


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
    def temperature(self) -> float | np.ndarray:
        t = np.asarray(self.manifest.temperature.value)
        return t if self.manifest.temperature.per_class else float(t[0])


def open_version(repo: str | Path, name: str, version: int | None = None) -> Version:
    """Read a version's manifest and check that model.onnx is the file it describes."""
    folder = repository.version_dir(Path(repo), name, version)
    manifest = read_manifest(folder / MANIFEST_FILE)
    if not (folder / MODEL_FILE).is_file():
        raise ValueError(f"{folder}: {MODEL_FILE} is missing")
    if sha256_file(folder / MODEL_FILE) != manifest.model_sha256:
        raise ValueError(f"{folder / MODEL_FILE}: sha256 does not match the manifest; the file was changed or corrupted")
    graph_t = read_temperature(folder / MODEL_FILE)
    if not np.allclose(np.atleast_1d(graph_t), manifest.temperature.value, rtol=1e-6):
        raise ValueError(f"{folder}: the graph's temperature {graph_t.tolist()} differs from the manifest's")
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
        ds = ds.subset(rows)
    return ds.X, ds.y, f"{opts.dataset}:{split}"


def evaluate(v: Version, X: np.ndarray, y: np.ndarray, split: str) -> Measurement:
    """Metrics of the served graph at T = 1 and at its own temperature."""
    logits, _ = run_onnx(v.model_path, X)
    return measure(logits.astype(np.float64), y, 1.0, v.temperature, v.multilabel, split)


def _reports(m: Measurement) -> Callable[[Path, Manifest], None]:
    """Write a published child's report files from its measurement."""

    def write(folder: Path, manifest: Manifest) -> None:
        write_reports(folder, manifest, m.panels(), {"parent": manifest.parent})

    return write


def recalibrate(
    repo: str | Path, v: Version, fit_rows: tuple[np.ndarray, np.ndarray, str], eval_rows: tuple[np.ndarray, np.ndarray, str]
) -> tuple[Path, Measurement]:
    """Refit T on ``fit_rows``, measure old T vs new T on ``eval_rows``, and
    publish the same graph with the new T as the next version."""
    X_fit, y_fit, fit_desc = fit_rows
    X_eval, y_eval, eval_desc = eval_rows
    logits, _ = run_onnx(v.model_path, X_fit)
    task = "multilabel" if v.multilabel else "multiclass"
    fitted = fit_temperature(logits.astype(np.float64), y_fit, task, per_class=v.manifest.temperature.per_class)
    eval_logits, _ = run_onnx(v.model_path, X_eval)
    m = measure(eval_logits.astype(np.float64), y_eval, v.temperature, fitted.value, v.multilabel, eval_desc)
    folder = publish_child(repo, v.manifest, write_model=lambda path: set_temperature(v.model_path, path, fitted.value),
                           calibrator=Calibrator(fitted.as_list(), fit_desc, fitted.clamped), metrics=m.metrics(),
                           reference=m.reference, extras=_reports(m))  # fmt: skip
    return folder, m


def reexport(repo: str | Path, v: Version, opset: int = DEFAULT_OPSET) -> Path:
    """Export the version's saved torch weights again (e.g. at another opset) as a new version."""
    import torch

    from candor.trainer.models import ModelSpec, build_model
    from candor.trainer.pipeline import CHECKPOINT_FILE

    ckpt_path = v.folder / CHECKPOINT_FILE
    if not ckpt_path.is_file():
        raise ValueError(f"{v.folder}: no {CHECKPOINT_FILE} to export from")
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
        export_model(model, path, X, v.temperature, v.multilabel, opset)

    return publish_child(repo, v.manifest, write_model=write_model, extras=extras)
