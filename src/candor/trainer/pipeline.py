"""One training run from data to a published model version.

``fit`` does the work in memory (load, split, noise, smooth, train, fit T,
measure); ``publish`` exports it into a model repository. ``candor sweep``
calls ``fit`` alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from candor import __version__
from candor.calibration import repository
from candor.calibration.calibrators import Calibrator, TemperatureScaling
from candor.calibration.conformal.split import build as build_conformal
from candor.calibration.lineage import calibrator_specs, utc_now
from candor.calibration.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    ConformalSpec,
    DataSpec,
    InputSpec,
    Manifest,
    Reference,
    SmoothingSpec,
    TrainingSpec,
    sha256_file,
    write_manifest,
)
from candor.calibration.reference import Sample, write_sample
from candor.calibration.selection import fit_method
from candor.trainer.data import Dataset
from candor.trainer.distributed import DistContext
from candor.trainer.export import DEFAULT_OPSET, export_model
from candor.trainer.loop import LoopResult, train_loop
from candor.trainer.measure import Measurement, measure
from candor.trainer.models import ModelSpec, build_model
from candor.trainer.noise import add_label_noise, flip_multilabel, transition_matrix
from candor.trainer.options import TrainOptions
from candor.trainer.smoothing import build_targets, class_weights
from candor.trainer.split import Split, conformal_split, split_dataset

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class Trained:
    """A trained, calibrated model and everything measured about it."""

    options: TrainOptions
    data: Dataset
    split: Split
    model: nn.Module
    spec: ModelSpec
    loop: LoopResult
    smoothing: SmoothingSpec
    calibrator: Calibrator
    selected_by: str | None  # how --calibrator auto chose the method
    sample: Sample  # raw logits of the test (reference) and validation rows
    conformal_rows: tuple[np.ndarray, np.ndarray] | None  # raw logits and labels no fit has seen; None: no sets
    test: Measurement
    label_noise: dict | None
    world_size: int
    class_weights: np.ndarray | None  # per class, as the loss used them (from the training split's labels)

    @property
    def multilabel(self) -> bool:
        return self.data.task == "multilabel"


def predict_logits(model: nn.Module, X: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(X, dtype=torch.float32)).double().numpy()


def _noisy_training_labels(train: Dataset, options: TrainOptions) -> tuple[Dataset, dict | None]:
    d = options.data
    if not d.noisy:
        return train, None
    seed = d.split_seed + 7919  # independent of the split's draws, still reproducible
    if train.task == "multilabel":
        y = flip_multilabel(train.y, d.label_noise, seed)
    else:
        matrix = transition_matrix(d.noise_kind, d.label_noise, train.num_classes, d.noise_matrix)
        y = add_label_noise(train.y, matrix, seed)
    changed = float(np.mean(np.any((y != train.y).reshape(len(y), -1), axis=1)))
    info = {"kind": "flip" if train.task == "multilabel" else d.noise_kind, "rate": d.label_noise,
            "matrix_file": d.noise_matrix, "seed": seed, "changed_share": round(changed, 6)}  # fmt: skip
    noisy = Dataset(train.X, y, train.class_names, train.task, train.source, train.params, train.image_shape)
    return noisy, info


def fit(options: TrainOptions, ctx: DistContext | None = None) -> Trained:
    """Load, split, train with smoothing, fit the calibrator on validation, measure on test."""
    ctx = ctx or DistContext()
    data = options.data.load()
    split = split_dataset(data, val_fraction=options.data.val_fraction, test_fraction=options.data.test_fraction,
                          seed=options.data.split_seed)  # fmt: skip
    multilabel = data.task == "multilabel"
    val_rows, conformal_rows = conformal_split(split.val, 0.0 if multilabel else options.conformal_share, options.data.split_seed)
    train, val, test = data.subset(split.train), data.subset(val_rows), data.subset(split.test)
    train, noise_info = _noisy_training_labels(train, options)
    if options.per_class_temperature and not multilabel:
        raise ValueError("--per-class-temperature is for multi-label models; multiclass shares one temperature")

    q, smoothing = build_targets(options.smoothing, train)
    cw = class_weights(train.y, data.num_classes, options.class_weights, multilabel)
    weights = cw if cw is None or multilabel else cw[train.y]

    torch.manual_seed(options.loop.seed)
    m = options.model
    spec = ModelSpec(m.architecture, data.X.shape[1], data.num_classes, m.width, m.depth, m.dropout, data.image_shape)
    model = build_model(spec, train.X.mean(axis=0), train.X.std(axis=0))
    loop = train_loop(model, train.X, q, val.X, val.y, multilabel=multilabel, weights=weights, options=options.loop, ctx=ctx)

    task = "multilabel" if multilabel else "multiclass"
    val_logits, test_logits = predict_logits(model, val.X), predict_logits(model, test.X)
    held = None if conformal_rows is None else (predict_logits(model, data.X[conformal_rows]), data.y[conformal_rows])
    chosen = fit_method(options.calibrator, val_logits, val.y, task, options.per_class_temperature, seed=options.loop.seed)
    identity = TemperatureScaling.of(1.0)
    return Trained(
        options=options, data=data, split=split, model=model, spec=spec, loop=loop, smoothing=smoothing,
        calibrator=chosen.calibrator, selected_by=chosen.summary, sample=Sample(test_logits, test.y, val_logits, val.y),
        conformal_rows=held,
        test=measure(test_logits, test.y, identity, chosen.calibrator, multilabel, "test"),
        label_noise=noise_info, world_size=ctx.world_size, class_weights=cw,
    )  # fmt: skip


def build_manifest(t: Trained, name: str, version: int, model_sha256: str, reference: Reference,
                   conformal: ConformalSpec | None = None) -> Manifest:  # fmt: skip
    """The manifest of a freshly trained version, from the options and values the run actually used."""
    o, d, loop = t.options, t.options.data, t.options.loop
    fitted_on = "val" if t.conformal_rows is None else (
        f"val ({len(t.sample.val_labels)} rows; {len(t.conformal_rows[1])} more kept from every fit for the conformal scores)")
    temperature, calibrator = calibrator_specs(t.calibrator, fitted_on, per_class=o.per_class_temperature,
                                               selected_by=t.selected_by)  # fmt: skip
    return Manifest(
        schema_version=SCHEMA_VERSION,
        candor_version=__version__,
        name=name,
        version=version,
        created_at=utc_now(),
        task=t.data.task,
        class_names=list(t.data.class_names),
        input=InputSpec(name="input", dtype="float32", shape=[-1, t.spec.n_features],
                        image_shape=list(t.data.image_shape) if t.data.image_shape else None),  # fmt: skip
        outputs=["logits", "probabilities"],
        temperature=temperature,
        calibrator=calibrator,
        smoothing=t.smoothing,
        training=TrainingSpec(
            architecture=t.spec.architecture, width=t.spec.width, depth=t.spec.depth, dropout=t.spec.dropout,
            max_epochs=loop.max_epochs, epochs_run=t.loop.epochs_run, best_epoch=t.loop.best_epoch,
            batch_size=loop.batch_size, learning_rate=loop.learning_rate, weight_decay=loop.weight_decay,
            patience=loop.patience, seed=loop.seed, world_size=t.world_size,
            class_weights=None if t.class_weights is None else t.class_weights.tolist(),
        ),  # fmt: skip
        data=DataSpec(
            source=d.dataset, params=d.loader_params(), fingerprint=t.data.fingerprint, n_features=t.spec.n_features,
            n_train=len(t.split.train), n_val=len(t.split.val), n_test=len(t.split.test), split_seed=d.split_seed,
            val_fraction=d.val_fraction, test_fraction=d.test_fraction, label_noise=t.label_noise,
        ),  # fmt: skip
        metrics=t.test.metrics(),
        reference=reference,
        model_sha256=model_sha256,
        parent=None,
        conformal=conformal,
        label_shift=None,
    )


def publish(t: Trained, repo: str | Path, name: str, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``t`` as the next version of ``name`` in ``repo``; returns its folder."""
    from candor.trainer.report import write_reports

    def write(folder: Path, version: int) -> None:
        check_rows = t.data.X[t.split.test]
        export_model(t.model, folder / MODEL_FILE, check_rows, t.calibrator, t.multilabel, opset)
        sample = write_sample(folder, t.sample, "test", f"{name}/{version}")
        reference = dataclasses.replace(t.test.reference, sample=sample, source=(
            f"test split of {t.options.data.dataset} ({len(t.split.test)} rows) through {name}/{version}'s "
            f"{t.calibrator.method} calibrator, at training time"))  # fmt: skip
        conformal = None
        if t.conformal_rows is not None:
            conformal = build_conformal(
                folder, t.calibrator, *t.conformal_rows, fit_rows=len(t.sample.val_labels), seed=t.options.data.split_seed,
                who=f"{name}/{version}", test_logits=t.sample.test_logits, test_labels=t.sample.test_labels,
                class_conditional=t.options.conformal_class_conditional)  # fmt: skip
        manifest = build_manifest(t, name, version, sha256_file(folder / MODEL_FILE), reference, conformal)
        write_manifest(manifest, folder / MANIFEST_FILE)
        torch.save({"spec": t.spec.to_dict(), "state_dict": t.model.state_dict()}, folder / CHECKPOINT_FILE)
        write_reports(folder, manifest, t.test.panels(), {"history": t.loop.history})

    return repository.publish(Path(repo), name, write)
