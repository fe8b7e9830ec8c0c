"""Model versions derived from a parent: the one place a child manifest is built.

``candor calibrate`` (a new temperature fitted offline), ``candor export`` (the same
weights exported again) and the server's ``Recalibrate`` (a temperature refitted on
feedback) all publish a child of a served version. Each changes a little (the graph,
the temperature, the metrics, the reference) and everything else is inherited;
what is always set anew (version, creation time, Candor version, the graph's
sha256, the parent link) is set here and nowhere else.

>>> folder = publish_child(repo, parent, write_model=copy_with_new_t,             # doctest: +SKIP
...                        calibrator=Calibrator([1.4], "feedback of digits/3", False))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from candor import __version__
from candor.calibration.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    Manifest,
    Metrics,
    Reference,
    TemperatureSpec,
    sha256_file,
    write_manifest,
)
from candor.calibration.repository import publish


@dataclass(frozen=True)
class Calibrator:
    """A refitted temperature: one value, or one per class where the parent has per-class T."""

    value: list[float]
    fitted_on: str  # what data it was fitted on, in words
    clamped: bool  # the optimum hit a bound of the documented range


def utc_now() -> str:
    """Creation time as the manifest records it: ISO 8601, UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def derive_manifest(parent: Manifest, *, version: int, model_sha256: str, calibrator: Calibrator | None = None,
                    metrics: Metrics | None = None, reference: Reference | None = None) -> Manifest:  # fmt: skip
    """The manifest of ``version``, a child of ``parent``: what is not given is inherited."""
    changes: dict = {}
    if calibrator is not None:
        t = parent.temperature
        changes["temperature"] = TemperatureSpec(list(calibrator.value), t.per_class, calibrator.fitted_on, calibrator.clamped,
                                                 list(t.bounds))  # fmt: skip
    if metrics is not None:
        changes["metrics"] = metrics
    if reference is not None:
        changes["reference"] = reference
    return parent.replace(version=version, candor_version=__version__, created_at=utc_now(), model_sha256=model_sha256,
                          parent=f"{parent.name}/{parent.version}", **changes)  # fmt: skip


def publish_child(repository: str | Path, parent: Manifest, *, write_model: Callable[[Path], None],
                  calibrator: Calibrator | None = None, metrics: Metrics | None = None, reference: Reference | None = None,
                  extras: Callable[[Path, Manifest], None] | None = None) -> Path:  # fmt: skip
    """Publish the next version of ``parent.name``: ``write_model(path)`` writes its graph,
    the manifest is derived here, ``extras(folder, manifest)`` adds reports or a checkpoint.

    Staged and renamed into place (:func:`candor.calibration.repository.publish`), so a
    failure anywhere publishes nothing. Returns the new version's folder.
    """

    def write(folder: Path, version: int) -> None:
        write_model(folder / MODEL_FILE)
        manifest = derive_manifest(parent, version=version, model_sha256=sha256_file(folder / MODEL_FILE),
                                   calibrator=calibrator, metrics=metrics, reference=reference)  # fmt: skip
        write_manifest(manifest, folder / MANIFEST_FILE)
        if extras is not None:
            extras(folder, manifest)

    return publish(Path(repository), parent.name, write)
