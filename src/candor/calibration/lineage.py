"""Model versions derived from a parent: the one place a child manifest is built.

``candor calibrate`` (a calibrator fitted offline), ``candor export`` (the same weights
exported again) and the server's ``Recalibrate`` (a calibrator refitted on feedback) all
publish a child of a served version. Each changes a little (the graph, the calibrator,
the metrics) and everything else is inherited; what is always set anew (version,
creation time, Candor version, the graph's sha256, the parent link) is set here and
nowhere else.

The child's drift reference is never the data its calibrator was fitted on: the parent's
stored reference sample (raw logits of held-out rows; the network is the same) is copied
and the child's own calibrator is applied to it, so clean traffic looks the same to the
child as it did to the parent.

>>> folder = publish_child(repo, parent, write_model=copy_with_new_head,            # doctest: +SKIP
...                        refit=Refit(TemperatureScaling.of(1.4), "feedback of digits/3"))
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor import __version__
from candor.calibration.calibrators import T_MAX, T_MIN, Calibrator, method_class
from candor.calibration.conformal.split import rederive as rederive_conformal
from candor.calibration.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    CalibratorSpec,
    ConformalSpec,
    LabelShiftSpec,
    Manifest,
    Metrics,
    Reference,
    TemperatureSpec,
    sha256_file,
    write_manifest,
)
from candor.calibration.reference import derive_reference, read_sample
from candor.calibration.repository import publish


@dataclass(frozen=True)
class Refit:
    """A newly fitted calibrator and what the manifest says about it."""

    calibrator: Calibrator
    fitted_on: str  # what data it was fitted on, in words
    nll_improvement: list[float] | None = None  # [mean, low, high] held-out NLL decrease over the parent
    selected_by: str | None = None  # how "auto" chose the method


def utc_now() -> str:
    """Creation time as the manifest records it: ISO 8601, UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _listed(a: np.ndarray | None) -> list | None:
    return None if a is None else np.asarray(a, dtype=np.float64).tolist()


def calibrator_specs(c: Calibrator, fitted_on: str, *, per_class: bool = False, nll_improvement: list[float] | None = None,
                     selected_by: str | None = None) -> tuple[TemperatureSpec, CalibratorSpec]:  # fmt: skip
    """The manifest's view of a fitted calibrator."""
    t = TemperatureSpec(np.atleast_1d(c.temperature).astype(float).tolist(), per_class, fitted_on, c.clamped, [T_MIN, T_MAX])
    spec = CalibratorSpec(c.method, _listed(c.scale), _listed(c.weight), _listed(c.bias), c.regularisation, selected_by,
                          nll_improvement)  # fmt: skip
    return t, spec


def calibrator_of(m: Manifest) -> Calibrator:
    """The calibrator a manifest describes (what its graph's head applies)."""
    t = np.asarray(m.temperature.value, dtype=np.float64)
    c = m.calibrator
    arrays = {part: np.asarray(getattr(c, part), dtype=np.float64) for part in method_class(c.method).parameter_names()}
    return method_class(c.method)(t if m.temperature.per_class else t.reshape(()), **arrays, regularisation=c.regularisation,
                                  clamped=m.temperature.clamped)  # fmt: skip


def child_reference(parent_folder: Path, parent: Manifest, child: str, calibrator: Calibrator | None) -> Reference:
    """The child's reference: re-derived from the parent's stored sample through the child's
    calibrator, or the parent's own reference (said so in its source) when there is no sample."""
    ref = parent.reference
    if ref.sample is None:
        if calibrator is None:
            return ref
        kept = f"{parent.name}/{parent.version}'s reference, kept as is: no stored sample to re-derive it from ({ref.source})"
        return dataclasses.replace(ref, source=kept)
    sample = read_sample(parent_folder, ref.sample)
    return derive_reference(sample, ref.sample, calibrator or calibrator_of(parent), parent.task == "multilabel", child)


def child_conformal(parent_folder: Path, parent: Manifest, folder: Path, calibrator: Calibrator | None,
                    child: str) -> ConformalSpec | None:  # fmt: skip
    """The child's conformal scores: the parent's calibration rows through the child's calibrator, with the
    test report re-measured on the stored reference rows (None when the parent has no scores)."""
    if parent.conformal is None:
        return None
    test = None if parent.reference.sample is None else read_sample(parent_folder, parent.reference.sample)
    return rederive_conformal(parent_folder, parent.conformal, folder, calibrator or calibrator_of(parent), child,
                              None if test is None else test.test_logits, None if test is None else test.test_labels)  # fmt: skip


def derive_manifest(parent: Manifest, *, version: int, model_sha256: str, refit: Refit | None = None,
                    metrics: Metrics | None = None, reference: Reference | None = None,
                    conformal: ConformalSpec | None = None, label_shift: LabelShiftSpec | None = None) -> Manifest:  # fmt: skip
    """The manifest of ``version``, a child of ``parent``: what is not given is inherited, except that a
    new calibrator drops the parent's prior correction unless ``label_shift`` gives the child's own."""
    changes: dict = {"label_shift": label_shift if label_shift is not None or refit is not None else parent.label_shift}
    if refit is not None:
        changes["temperature"], changes["calibrator"] = calibrator_specs(
            refit.calibrator, refit.fitted_on, per_class=parent.temperature.per_class,
            nll_improvement=refit.nll_improvement, selected_by=refit.selected_by)  # fmt: skip
    if metrics is not None:
        changes["metrics"] = metrics
    if reference is not None:
        changes["reference"] = reference
    if conformal is not None:
        changes["conformal"] = conformal
    return parent.replace(version=version, candor_version=__version__, created_at=utc_now(), model_sha256=model_sha256,
                          parent=f"{parent.name}/{parent.version}", **changes)  # fmt: skip


def publish_child(repository: str | Path, parent: Manifest, *, write_model: Callable[[Path], None], refit: Refit | None = None,
                  metrics: Metrics | None = None, extras: Callable[[Path, Manifest], None] | None = None,
                  conformal: Callable[[Path, str], ConformalSpec] | None = None,
                  reference: Callable[[str], Reference] | None = None,
                  label_shift: LabelShiftSpec | None = None) -> Path:  # fmt: skip
    """Publish the next version of ``parent.name``: ``write_model(path)`` writes its graph,
    the manifest and the reference are derived here, ``extras(folder, manifest)`` adds
    reports or a checkpoint. ``conformal(folder, "name/version")`` writes the child's own conformal
    scores and returns their spec; without it the parent's rows are re-scored through the child's calibrator.
    ``reference("name/version")`` gives the child's drift reference in place of the re-derived one, and
    ``label_shift`` the prior correction the child's calibrator carries.

    Staged and renamed into place (:func:`candor.calibration.repository.publish`), so a
    failure anywhere publishes nothing. Returns the new version's folder.
    """
    repository = Path(repository)
    parent_folder = repository / parent.name / str(parent.version)  # read only when it holds a reference sample

    def write(folder: Path, version: int) -> None:
        write_model(folder / MODEL_FILE)
        calibrator = None if refit is None else refit.calibrator
        who = f"{parent.name}/{version}"
        derived = reference(who) if reference is not None else child_reference(parent_folder, parent, who, calibrator)
        if derived.sample is not None:
            shutil.copy2(parent_folder / derived.sample.file, folder / derived.sample.file)
        scores = conformal(folder, who) if conformal is not None else child_conformal(parent_folder, parent, folder,
                                                                                       calibrator, who)  # fmt: skip
        manifest = derive_manifest(parent, version=version, model_sha256=sha256_file(folder / MODEL_FILE), refit=refit,
                                   metrics=metrics, reference=derived, conformal=scores,
                                   label_shift=label_shift)  # fmt: skip
        write_manifest(manifest, folder / MANIFEST_FILE)
        if extras is not None:
            extras(folder, manifest)

    return publish(repository, parent.name, write)
