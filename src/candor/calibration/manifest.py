"""The model manifest ``candor.json``: schema, writer and validating reader.

The trainer writes one next to every ``model.onnx``; the server reads it and
refuses a model whose manifest is missing a field, has an unknown one, or does
not match the ONNX file's sha256.

>>> m = read_manifest("models/digits/1/candor.json")      # doctest: +SKIP
>>> m.temperature.value, m.metrics.after_temperature.ece  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from candor.calibration.calibrators.registry import REGISTRY
from candor.calibration.conformal.registry import METHODS as CONFORMAL_METHODS
from candor.schema import STRICT, SchemaError, json_schema, parse

SCHEMA_VERSION = 4  # 2: the calibrator, ECE intervals, the reference sample; 3: conformal scores; 4: label shift
# (1 to 3 are upgraded on read)
MANIFEST_FILE = "candor.json"
MODEL_FILE = "model.onnx"

Task = Literal["multiclass", "multilabel"]
Convention = Literal["none", "uniform", "off_target", "prior", "hierarchy", "teacher", "multilabel"]
ParamValue = str | int | float | bool | None
# Rules of one field are declared on it, so that the published JSON Schema carries them too.
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Share = Annotated[float, Field(gt=0, lt=1)]
Count = Annotated[int, Field(ge=0)]


@dataclass(frozen=True)
class InputSpec:
    name: str  # graph input name, "input"
    dtype: Literal["float32"]
    shape: list[int]  # [-1, F]: dynamic batch, F features
    image_shape: list[int] | None  # [C, H, W] when the features are a flattened image


@dataclass(frozen=True)
class TemperatureSpec:
    value: list[float]  # one shared T, or one per class (multi-label); 1 for the affine calibrators
    per_class: bool
    fitted_on: str  # what data the calibrator (whichever method) was fitted on
    clamped: bool  # the optimum hit the documented range [bounds]
    bounds: list[float]


@dataclass(frozen=True)
class CalibratorSpec:
    """The post-hoc calibrator folded into the graph after the temperature (see candor.calibration.calibrators)."""

    method: str  # a method of candor.calibration.calibrators.REGISTRY
    scale: list[float] | None  # vector: s = z * scale + bias
    weight: list[list[float]] | None  # matrix, dirichlet: s = x @ weight^T + bias
    bias: list[float] | None
    regularisation: float | None  # ODIR lambda = mu (matrix, dirichlet)
    selected_by: str | None  # how --method auto chose it, in words
    nll_improvement: list[float] | None  # [mean, low, high] held-out NLL decrease over the parent (90% paired bootstrap)


@dataclass(frozen=True)
class SmoothingSpec:
    convention: Convention
    epsilon: Annotated[float, Field(ge=0, lt=1)]
    distribution: list[float] | None  # u when one vector serves every row (uniform, prior)
    source: str | None  # hierarchy file or teacher model the targets came from
    teacher_temperature: float | None


@dataclass(frozen=True)
class TrainingSpec:
    architecture: Literal["mlp", "cnn"]
    width: int
    depth: int
    dropout: float
    max_epochs: int
    epochs_run: int
    best_epoch: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    seed: int
    world_size: int
    class_weights: list[float] | None


@dataclass(frozen=True)
class DataSpec:
    source: str  # "digits", "synthetic", or a file path
    params: dict[str, ParamValue]  # what the loader was given, to reproduce the set
    fingerprint: str  # sha256 of the loaded features and labels
    n_features: int
    n_train: int
    n_val: int
    n_test: int
    split_seed: int
    val_fraction: float
    test_fraction: float
    label_noise: dict[str, ParamValue] | None  # injected into the training split only


@dataclass(frozen=True)
class MetricSet:
    accuracy: float
    nll: float
    brier: float
    ece: float
    classwise_ece: float
    mce: float | None  # None for multi-label (no top label)
    rms_ece: float | None
    adaptive_ece: float | None
    ece_low: float | None  # 90% bootstrap interval of ece (candor.calibration.intervals)
    ece_high: float | None
    debiased_rms_ece: float | None  # Kumar et al. 2019; None for multi-label


@dataclass(frozen=True)
class Metrics:
    split: str  # the data the numbers were measured on
    n_bins: int
    before_temperature: MetricSet
    after_temperature: MetricSet


@dataclass(frozen=True)
class ReferenceSample:
    """Raw logits and labels the reference is derived from, stored next to the graph."""

    file: str  # in the version folder, "reference.npz"
    sha256: Sha256
    split: str  # the rows the reference statistics use, e.g. "test"
    rows: int
    stored_with: str  # "name/version" whose network produced the logits (children share it)


@dataclass(frozen=True)
class Reference:
    """What healthy traffic looks like: the served calibrator applied to held-out rows."""

    split: str
    source: str  # where the statistics came from, in words a CLI prints as is
    sample: ReferenceSample | None  # None: not re-derivable (made before schema 2)
    n_samples: int
    confidence_histogram: list[float]  # shares over equal-width (lo, hi] bins of [0, 1]
    class_frequencies: list[float]  # predicted-class mix (multi-label: P(predicted present))
    mean_confidence: float
    accuracy: float
    ece: float
    ece_interval: list[float] | None  # [low, high], 90% bootstrap; None before schema 2


@dataclass(frozen=True)
class ConformalResult:
    """How a conformal method's sets did on the test split at one promised coverage."""

    method: str  # a score's label: lac, aps, raps, aps_randomised, raps_randomised
    class_conditional: bool  # one threshold per class (Mondrian) instead of one for all
    coverage: float  # the promised level 1 - alpha
    observed: float  # share of test rows whose label is in their set
    observed_low: float  # 90% Clopper-Pearson interval of that share
    observed_high: float
    worst_class: float  # the lowest per-class share
    mean_size: float
    median_size: float
    empty_share: float
    singleton_share: float


@dataclass(frozen=True)
class ConformalSpec:
    """The calibration split of the conformal scores, stored next to the graph (conformal.npz)."""

    file: str
    sha256: Sha256
    split: str  # where the rows came from, in words: "val, rows no fit has seen (...)"
    rows: Annotated[int, Field(ge=1)]
    fit_rows: Count  # validation rows the calibrator and early stopping used: disjoint from these
    seed: int  # drew the split of the validation rows and the uniforms of the randomised scores
    stored_with: str  # "name/version" whose network produced the stored logits
    source: str  # through which version's calibrator the stored scores were computed
    methods: list[str]  # the scores served per request
    recommended: str  # served when a request names none
    default_coverage: Share  # KServe's prediction_set output
    raps_penalty: float
    raps_k_reg: int
    class_conditional: bool  # served sets use one threshold per class
    test_split: list[ConformalResult]


@dataclass(frozen=True)
class LabelShiftSpec:
    """A version corrected to the class priors of its parent's unlabeled traffic (Recalibrate "label_shift").

    Its calibrator's bias is the uncorrected one plus log(priors / training_priors), so that a
    correction of a corrected version replaces the shift rather than adding to it."""

    priors: list[float]  # pi_new, estimated by EM: what this version's posteriors assume
    training_priors: list[float]  # pi_train: the original version's validation label mix, the same down the chain
    parent_priors: list[float]  # what the parent's posteriors assumed
    window: str  # the prediction-log rows estimated on, in words
    window_start: float  # unix seconds: the oldest and newest request of the window
    window_end: float
    rows: int
    em_iterations: int
    converged: bool
    p_value: float  # of the likelihood-ratio test of no shift from parent_priors
    total_variation: float  # between priors and parent_priors


@dataclass(frozen=True)
class Manifest:
    __pydantic_config__ = STRICT

    schema_version: int
    candor_version: str
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    version: Annotated[int, Field(ge=1)]
    created_at: str  # ISO 8601, UTC
    task: Task
    class_names: list[str]
    input: InputSpec
    outputs: list[str]
    temperature: TemperatureSpec
    calibrator: CalibratorSpec
    smoothing: SmoothingSpec
    training: TrainingSpec
    data: DataSpec
    metrics: Metrics
    reference: Reference
    model_sha256: Sha256
    parent: str | None  # "name/version" this one was derived from (recalibration)
    conformal: ConformalSpec | None  # None for multi-label models and versions made before schema 3
    label_shift: LabelShiftSpec | None  # None unless the version was corrected to new class priors

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> Manifest:
        return dataclasses.replace(self, **changes)


def _check_semantics(m: Manifest) -> None:
    """Cross-field rules the types alone cannot say."""
    k = m.num_classes
    if m.schema_version != SCHEMA_VERSION:
        raise SchemaError(f"field 'schema_version' is {m.schema_version}; this Candor reads {SCHEMA_VERSION}")
    if k < 2 and m.task == "multiclass":
        raise SchemaError(f"field 'class_names' needs at least 2 classes for multiclass, got {k}")
    if len(set(m.class_names)) != k:
        raise SchemaError("field 'class_names' has duplicates")
    if len(m.input.shape) != 2 or m.input.shape[0] != -1 or m.input.shape[1] < 1:
        raise SchemaError(f"field 'input.shape' must be [-1, F] with F >= 1, got {m.input.shape}")
    if m.input.image_shape is not None and math.prod(m.input.image_shape) != m.input.shape[1]:
        raise SchemaError(f"field 'input.image_shape' {m.input.image_shape} does not hold {m.input.shape[1]} features")
    t = m.temperature.value
    if len(t) not in (1, k) or (len(t) != 1) != m.temperature.per_class:
        raise SchemaError(f"field 'temperature.value' must hold 1 value, or {k} when per_class, got {len(t)}")
    if not all(math.isfinite(v) and v > 0 for v in t):
        raise SchemaError(f"field 'temperature.value' must be finite and > 0, got {t}")
    c = m.calibrator
    if c.method not in REGISTRY:
        raise SchemaError(f"field 'calibrator.method' must be one of {', '.join(REGISTRY)}, got {c.method!r}")
    method = REGISTRY[c.method]
    shapes = {"scale": [k], "weight": [k, k], "bias": [k]}
    wanted = method.parameter_names()
    for part, shape in shapes.items():
        value = getattr(c, part)
        if (value is not None) != (part in wanted):
            raise SchemaError(f"field 'calibrator.{part}' must be {'set' if part in wanted else 'null'} "
                              f"for method {c.method!r}")  # fmt: skip
        if value is not None and [len(value)] + ([len(value[0])] if part == "weight" else []) != shape:
            raise SchemaError(f"field 'calibrator.{part}' must have shape {shape}")
    if m.task not in method.tasks:
        raise SchemaError(f"calibrator {c.method!r} needs a multiclass model")
    if not method.fits_temperature and m.temperature.value != [1.0]:
        raise SchemaError(f"calibrator {c.method!r} fits no temperature: it needs temperature [1.0]")
    if len(m.reference.class_frequencies) != k:
        raise SchemaError(f"field 'reference.class_frequencies' must have {k} entries, got {len(m.reference.class_frequencies)}")
    if abs(sum(m.reference.confidence_histogram) - 1) > 1e-6:
        raise SchemaError("field 'reference.confidence_histogram' must sum to 1")
    if m.conformal is not None:
        _check_conformal(m.conformal, m.task)
    if m.label_shift is not None:
        _check_label_shift(m.label_shift, m)


def _check_label_shift(s: LabelShiftSpec, m: Manifest) -> None:
    if "bias" not in REGISTRY[m.calibrator.method].parameter_names():
        raise SchemaError(f"field 'label_shift' needs a calibrator with a bias (bcts, vector), got {m.calibrator.method!r}")
    for name in ("priors", "training_priors", "parent_priors"):
        values = getattr(s, name)
        if len(values) != m.num_classes or not all(math.isfinite(v) and v > 0 for v in values) or abs(sum(values) - 1) > 1e-6:
            raise SchemaError(f"field 'label_shift.{name}' must be {m.num_classes} positive shares summing to 1")


def _check_conformal(c: ConformalSpec, task: str) -> None:
    if task != "multiclass":
        raise SchemaError("field 'conformal' is for multiclass models; a multi-label model has none")
    unknown = [name for name in c.methods if name not in CONFORMAL_METHODS]
    if unknown or not c.methods:
        raise SchemaError(f"field 'conformal.methods' must list some of {', '.join(CONFORMAL_METHODS)}, got {c.methods}")
    if c.recommended not in c.methods:
        raise SchemaError(f"field 'conformal.recommended' must be one of conformal.methods {c.methods}, got {c.recommended!r}")


def upgrade(data: dict) -> dict:
    """An older manifest in the current schema: 1 -> 2 (temperature scaling, no intervals, no
    stored sample), 2 -> 3 (no conformal scores), 3 -> 4 (no label-shift correction)."""
    data = _upgrade_from_1(data)
    if isinstance(data, dict) and data.get("schema_version") == 2:
        data = {**data, "schema_version": 3, "conformal": None}
    if isinstance(data, dict) and data.get("schema_version") == 3:
        data = {**data, "schema_version": 4, "label_shift": None}
    return data


def _upgrade_from_1(data: dict) -> dict:
    if not isinstance(data, dict) or data.get("schema_version") != 1:
        return data
    data = {**data, "schema_version": 2,
            "calibrator": {"method": "temperature", "scale": None, "weight": None, "bias": None, "regularisation": None,
                           "selected_by": None, "nll_improvement": None}}  # fmt: skip
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        extra = {"ece_low": None, "ece_high": None, "debiased_rms_ece": None}
        data["metrics"] = {**metrics, **{key: {**v, **extra} if isinstance(v, dict) else v for key, v in metrics.items()
                                         if key in ("before_temperature", "after_temperature")}}  # fmt: skip
    ref = data.get("reference")
    if isinstance(ref, dict):
        data["reference"] = {**ref, "source": f"{ref.get('split')} split at training time (not re-derivable: made before "
                                               "reference samples were stored)", "sample": None,
                             "ece_interval": None}  # fmt: skip
    return data


def manifest_from_dict(data: dict) -> Manifest:
    """Validate ``data`` (schema 1 is upgraded first) and build a :class:`Manifest`; raises :class:`SchemaError`."""
    manifest = parse(Manifest, upgrade(data))
    _check_semantics(manifest)
    return manifest


def manifest_json_schema() -> dict:
    """The JSON Schema of ``candor.json`` (types and one-field rules; the cross-field rules of
    :func:`manifest_from_dict` are in its prose), published as ``docs/manifest.schema.json``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **json_schema(Manifest),
        "title": f"Candor model manifest (candor.json), schema_version {SCHEMA_VERSION}",
        "description": "Written by the trainer next to every model.onnx, read and checked by the server. Beyond "
        "these types, the server checks that the lists agree with class_names, the calibrator's parameters "
        "with its method, and model_sha256 with the ONNX file (candor.calibration.manifest).",
    }


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a ``candor.json``; every error names the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SchemaError(f"{path}: cannot read manifest: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SchemaError(f"{path}: not valid JSON: {e}") from e
    try:
        return manifest_from_dict(data)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from e


def write_json_atomic(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON so that readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """Validate, then write atomically; an invalid manifest is never written."""
    data = manifest.to_dict()
    manifest_from_dict(data)
    write_json_atomic(data, path)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
