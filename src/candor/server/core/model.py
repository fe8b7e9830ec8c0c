"""A loaded model version: manifest, onnxruntime session, its batcher and its drift window,
all present from construction on.

Loading has a blocking half (read and check the files, create and warm up the session:
:func:`open_version`, run in a thread) and a half that needs the event loop (the batcher's
workers: :meth:`LoadedModel.start`).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration.calibrators import Calibrator
from candor.calibration.lineage import calibrator_of
from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, read_manifest, sha256_file
from candor.calibration.priors import VersionPriors, version_priors
from candor.server.core.batcher import BatchStats, DynamicBatcher
from candor.server.core.drift import DriftWindow
from candor.server.core.events import BatchRun, Events, NonFiniteRows, RowsDropped
from candor.server.core.sessions import create_session
from candor.server.core.sets import PredictionSets
from candor.server.core.settings import Settings
from candor.server.core.tensors import all_finite


class LoadError(Exception):
    """A version could not be loaded; the message says why."""


@dataclass(frozen=True)
class RunCost:
    """Seconds one run of ``rows`` rows takes, fitted at load as fixed + per_row * rows."""

    fixed_s: float
    per_row_s: float

    def __call__(self, rows: int) -> float:
        return self.fixed_s + self.per_row_s * rows


@dataclass(frozen=True)
class OpenedVersion:
    """A version's checked files and its warmed-up session, not yet serving."""

    manifest: Manifest
    folder: Path
    session: object
    provider: str
    cost: RunCost = RunCost(float("inf"), 0.0)  # unknown until measured: never cheap
    sets: PredictionSets | None = None  # None: the manifest has no conformal scores
    priors: VersionPriors | None = None  # None: no label-shift estimate (multi-label, or no stored sample)

    def run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One onnxruntime run: (logits, probabilities) for rows ``X`` [N, F] float32."""
        logits, probs = self.session.run(["logits", "probabilities"], {"input": X})
        return logits, probs


def measure_cost(opened: OpenedVersion, large_rows: int, inline_s: float, repeats: int = 3) -> RunCost:
    """Time runs of 1 and of ``large_rows`` rows (the fastest of ``repeats`` each: a busy machine only
    makes the estimate larger, which is the safe side) and fit a line through them. A model whose single
    row already takes longer than ``inline_s`` is never run inline, so its large run is not timed."""

    def fastest(rows: int) -> float:
        X = np.zeros((rows, opened.manifest.input.shape[1]), dtype=np.float32)
        best = float("inf")
        for _ in range(repeats):
            began = time.perf_counter()
            opened.run(X)
            best = min(best, time.perf_counter() - began)
        return best

    one = fastest(1)
    if one > inline_s:
        return RunCost(one, 0.0)
    large = fastest(large_rows)
    per_row = max(0.0, (large - one) / max(1, large_rows - 1))
    return RunCost(max(0.0, one - per_row), per_row)


@dataclass(frozen=True)
class LoadedModel:
    """A version that serves: every part exists for as long as the object does."""

    opened: OpenedVersion
    batcher: DynamicBatcher
    drift: DriftWindow

    @classmethod
    def start(cls, opened: OpenedVersion, settings: Settings, executor: Executor, events: Events) -> LoadedModel:
        """Give ``opened`` its drift window and batcher (needs the running event loop)."""
        m = opened.manifest
        name, version = m.name, str(m.version)
        multilabel = m.task == "multilabel"
        track_drift = not settings.skips("drift")
        drift = DriftWindow(m.reference, m.num_classes, multilabel, settings.drift_window_rows, settings.drift_window_s)

        def run(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """One run and its drift accounting, in the thread that runs it: for a large batch, the executor's,
            so the window's numpy work stays off the event loop. The window leaves non-finite rows out itself:
            a row whose outputs overflowed is refused to its caller (DataPlane.predict) and must not poison
            its sums."""
            logits, probs = opened.run(X)
            if track_drift:
                drift.add(probs)
            return logits, probs

        def on_batch(stats: BatchStats) -> None:
            if stats.expired:
                events.emit(RowsDropped(name, version, "deadline", stats.expired))
            if stats.cancelled:
                events.emit(RowsDropped(name, version, "cancelled", stats.cancelled))
            if stats.rows:
                probs = stats.probabilities
                if not all_finite(probs):  # counted here; run() kept them out of the drift window
                    finite = np.isfinite(probs).all(axis=1)
                    events.emit(NonFiniteRows(name, version, int((~finite).sum())))
                    probs = probs[finite]
                events.emit(BatchRun(name, version, stats.rows, probs, m.class_names, multilabel,
                                     tuple(stats.queue_seconds), stats.run_seconds))  # fmt: skip

        batcher = DynamicBatcher(
            run,
            executor,
            max_batch_size=settings.max_batch_size,
            max_queue_delay_s=settings.max_queue_delay_ms / 1000,
            max_queue_rows=settings.max_queue_rows,
            instances=settings.instances,
            on_batch=on_batch,
            inline=lambda rows: opened.cost(rows) <= settings.inline_run_us / 1e6,
        )
        return cls(opened, batcher, drift)

    @property
    def manifest(self) -> Manifest:
        return self.opened.manifest

    @property
    def folder(self) -> Path:
        return self.opened.folder

    @property
    def provider(self) -> str:
        return self.opened.provider

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return str(self.manifest.version)

    @property
    def num_features(self) -> int:
        return self.manifest.input.shape[1]

    @property
    def multilabel(self) -> bool:
        return self.manifest.task == "multilabel"

    @property
    def calibrator(self) -> Calibrator:
        return calibrator_of(self.manifest)


def open_version(folder: Path, expected_name: str, expected_version: int, settings: Settings,
                 providers: list[str]) -> OpenedVersion:  # fmt: skip
    """Check the manifest and the file's sha256, create the session and warm it up (blocking)."""
    try:
        manifest = read_manifest(folder / MANIFEST_FILE)
    except ValueError as e:
        raise LoadError(str(e)) from e
    if (manifest.name, manifest.version) != (expected_name, expected_version):
        raise LoadError(
            f"{folder}: manifest says {manifest.name}/{manifest.version}, the folder is {expected_name}/{expected_version}"
        )
    model_path = folder / MODEL_FILE
    try:
        digest = sha256_file(model_path)
    except OSError as e:
        raise LoadError(f"{model_path}: cannot read ({e.strerror or e})") from e
    if digest != manifest.model_sha256:
        raise LoadError(f"{model_path}: sha256 {digest[:12]}... does not match the manifest's {manifest.model_sha256[:12]}...")
    try:
        session, provider = create_session(str(model_path), providers, settings.intra_op_threads, settings.allow_spinning)
    except Exception as e:  # onnxruntime's own exception types for a bad graph
        raise LoadError(f"{model_path}: onnxruntime cannot load it: {e}") from e
    try:
        sets = PredictionSets.load(folder, manifest)
        priors = version_priors(folder, manifest)
    except ValueError as e:
        raise LoadError(str(e)) from e
    opened = OpenedVersion(manifest, folder, session, provider, sets=sets, priors=priors)
    warm = np.zeros((settings.warmup_rows, manifest.input.shape[1]), dtype=np.float32)
    try:
        _, probs = opened.run(warm)
    except Exception as e:
        raise LoadError(f"{model_path}: warm-up run failed: {e}") from e
    if probs.shape != (settings.warmup_rows, manifest.num_classes):
        raise LoadError(f"{model_path}: probabilities have shape {probs.shape}, expected [N, {manifest.num_classes}]")
    if settings.inline_run_us <= 0:
        return opened
    return dataclasses.replace(opened, cost=measure_cost(opened, settings.max_batch_size, settings.inline_run_us / 1e6))
