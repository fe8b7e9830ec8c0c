"""Turn the smoothing options into the training split's soft targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from candor.calibration.manifest import SmoothingSpec
from candor.trainer.conventions import MULTICLASS_CONVENTIONS
from candor.trainer.data import Dataset
from candor.trainer.losses import (
    off_target_rows,
    prior_rows,
    smoothed_binary_targets,
    smoothed_targets,
    uniform_rows,
)
from candor.trainer.losses.distillation import teacher_probabilities
from candor.trainer.losses.hierarchy import hierarchy_rows


@dataclass(frozen=True)
class SmoothingOptions:
    convention: str = "uniform"  # one of MULTICLASS_CONVENTIONS; multi-label has its own
    epsilon: float = 0.0  # 0 means hard labels, whatever the convention
    hierarchy: str | None = None  # class tree (.json) or similarity matrix (.csv/.npy)
    teacher: str | None = None  # teacher ONNX model
    teacher_temperature: float = 1.0

    def check(self) -> None:
        if not 0 <= self.epsilon < 1:
            raise ValueError(f"--epsilon must lie in [0, 1), got {self.epsilon}")
        if self.convention not in MULTICLASS_CONVENTIONS:
            raise ValueError(f"--smoothing must be one of {', '.join(MULTICLASS_CONVENTIONS)}, got {self.convention!r}")
        if self.convention == "hierarchy" and not self.hierarchy:
            raise ValueError("--smoothing hierarchy needs --hierarchy FILE (a .json class tree or .csv/.npy similarity matrix)")
        if self.convention == "teacher" and not self.teacher:
            raise ValueError("--smoothing teacher needs --teacher MODEL.onnx")


def build_targets(opts: SmoothingOptions, train: Dataset) -> tuple[np.ndarray, SmoothingSpec]:
    """Soft targets [N, K] for the training rows, and what to record in the manifest."""
    opts.check()
    k, eps = train.num_classes, opts.epsilon
    if train.task == "multilabel":
        if opts.convention != "uniform":
            raise ValueError("multi-label data smooths each class toward eps (y(1-eps) + (1-y)eps); leave --smoothing at uniform")
        q = smoothed_binary_targets(torch.as_tensor(train.y, dtype=torch.float32), eps).numpy()
        return q, SmoothingSpec("multilabel" if eps else "none", eps, None, None, None)
    labels = train.y
    source, distribution, t_teacher = None, None, None
    if opts.convention == "teacher":
        u = teacher_probabilities(opts.teacher, train.X, opts.teacher_temperature, k)
        source, t_teacher = opts.teacher, opts.teacher_temperature
    else:
        if opts.convention == "uniform":
            rows = uniform_rows(k)
        elif opts.convention == "off_target":
            rows = off_target_rows(k)
        elif opts.convention == "prior":
            rows = prior_rows(labels, k)
        else:
            rows = hierarchy_rows(opts.hierarchy, train.class_names)
            source = opts.hierarchy
        if opts.convention in ("uniform", "prior"):
            distribution = rows[0].tolist()
        u = rows[labels]
    q = smoothed_targets(torch.as_tensor(labels), eps, torch.as_tensor(u, dtype=torch.float64)).numpy()
    convention = opts.convention if eps > 0 else "none"
    spec = SmoothingSpec(
        convention, eps, distribution if eps > 0 else None, source if eps > 0 else None, t_teacher if eps > 0 else None
    )
    return q.astype(np.float32), spec


def class_weights(labels: np.ndarray, k: int, mode: str, multilabel: bool) -> np.ndarray | None:
    """``balanced`` gives each class N / (K * count) (per positive count for
    multi-label), so that rare classes weigh as much in total as common ones."""
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"--class-weights must be none or balanced, got {mode!r}")
    counts = labels.sum(axis=0) if multilabel else np.bincount(labels, minlength=k)
    return (len(labels) / (k * np.maximum(counts, 1))).astype(np.float32)
