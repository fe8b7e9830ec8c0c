"""A loaded model version: manifest, onnxruntime session and its batcher."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration.manifest import MANIFEST_FILE, MODEL_FILE, Manifest, read_manifest, sha256_file
from candor.server.batcher import BatchStats, DynamicBatcher
from candor.server.metrics import ServerMetrics
from candor.server.monitor import DriftWindow
from candor.server.sessions import create_session
from candor.server.settings import Settings


class LoadError(Exception):
    """A version could not be loaded; the message says why."""


@dataclass
class LoadedModel:
    manifest: Manifest
    folder: Path
    session: object
    provider: str
    batcher: DynamicBatcher | None = None
    monitor: DriftWindow | None = None

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

    def run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One onnxruntime run: (logits, probabilities) for rows ``X`` [N, F] float32."""
        logits, probs = self.session.run(["logits", "probabilities"], {"input": X})
        return logits, probs


def open_model(folder: Path, expected_name: str, expected_version: int, settings: Settings, providers: list[str]) -> LoadedModel:
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
    model = LoadedModel(manifest, folder, session, provider)
    warm = np.zeros((settings.warmup_rows, model.num_features), dtype=np.float32)
    try:
        logits, probs = model.run(warm)
    except Exception as e:
        raise LoadError(f"{model_path}: warm-up run failed: {e}") from e
    if probs.shape != (settings.warmup_rows, manifest.num_classes):
        raise LoadError(f"{model_path}: probabilities have shape {probs.shape}, expected [N, {manifest.num_classes}]")
    return model


def attach_batcher(model: LoadedModel, settings: Settings, executor: Executor, metrics: ServerMetrics) -> None:
    """Give ``model`` its batcher (needs the running event loop)."""
    labels = (model.name, model.version)

    def on_batch(stats: BatchStats) -> None:
        if stats.expired:
            metrics.dropped.labels(*labels, "deadline").inc(stats.expired)
        if stats.cancelled:
            metrics.dropped.labels(*labels, "cancelled").inc(stats.cancelled)
        if stats.rows:
            # Once per batch rather than per request: the statistics cost the same for 1 row or 256.
            metrics.observe_predictions(*labels, stats.probabilities, model.manifest.class_names, model.multilabel)
            model.monitor.add(stats.probabilities)
            metrics.batch_size.labels(*labels).observe(stats.rows)
            metrics.inference_duration.labels(*labels).observe(stats.run_seconds)
            for waited in stats.queue_seconds:
                metrics.queue_duration.labels(*labels).observe(waited)

    model.monitor = DriftWindow(model.manifest.reference, model.manifest.num_classes, model.multilabel,
                                settings.drift_window_rows, settings.drift_window_s)  # fmt: skip
    model.batcher = DynamicBatcher(
        model.run,
        executor,
        max_batch_size=settings.max_batch_size,
        max_queue_delay_s=settings.max_queue_delay_ms / 1000,
        max_queue_rows=settings.max_queue_rows,
        instances=settings.instances,
        on_batch=on_batch,
        on_queue=metrics.queue_rows.labels(*labels).set,
    )
