"""Typed, validated options of a training run (the CLI fills them from flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from candor.calibration.manifest import DataSpec
from candor.trainer.data import SYNTHETIC, Dataset, load_dataset
from candor.trainer.loop import LoopOptions
from candor.trainer.models import Architecture
from candor.trainer.smoothing import SmoothingOptions


@dataclass(frozen=True)
class DataOptions:
    dataset: str = "digits"
    label_column: str = "label"
    # synthetic sets only
    n_samples: int = 3000
    n_classes: int = 5
    n_features: int = 20
    imbalance: float = 1.0
    data_seed: int = 0
    # injected into the training split only
    label_noise: float = 0.0
    noise_kind: str = "symmetric"
    noise_matrix: str | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0

    def loader_params(self) -> dict:
        """What :func:`load_dataset` needs to rebuild the same set (stored in the manifest)."""
        if self.dataset in SYNTHETIC:
            return {"n_samples": self.n_samples, "n_classes": self.n_classes, "n_features": self.n_features,
                    "imbalance": self.imbalance, "seed": self.data_seed}  # fmt: skip
        if self.dataset.endswith(".csv"):
            return {"label_column": self.label_column}
        return {}

    def load(self) -> Dataset:
        return load_dataset(self.dataset, **self.loader_params())

    @classmethod
    def from_manifest(cls, spec: DataSpec) -> DataOptions:
        """The options that rebuild a manifest's data set and split (without its noise)."""
        params = dict(spec.params)
        if "seed" in params:
            params["data_seed"] = params.pop("seed")
        return cls(dataset=spec.source, val_fraction=spec.val_fraction, test_fraction=spec.test_fraction,
                   split_seed=spec.split_seed, **params)  # fmt: skip

    @property
    def noisy(self) -> bool:
        return self.label_noise > 0 or self.noise_kind == "matrix"


@dataclass(frozen=True)
class ModelOptions:
    architecture: Architecture = "mlp"
    width: int = 128
    depth: int = 2
    dropout: float = 0.1


@dataclass(frozen=True)
class TrainOptions:
    data: DataOptions = field(default_factory=DataOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    loop: LoopOptions = field(default_factory=LoopOptions)
    class_weights: str = "none"  # none | balanced
    per_class_temperature: bool = False  # multi-label only
    calibrator: str = "temperature"  # a method of candor.calibration.calibrators, or "auto"
    # Share of the validation rows kept from every fit (early stopping, the calibrator) for the
    # conformal scores, so that the sets' guarantee holds (multiclass; 0: no prediction sets).
    conformal_share: float = 0.5
    conformal_class_conditional: bool = False  # served sets use one threshold per class
