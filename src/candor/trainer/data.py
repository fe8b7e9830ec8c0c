"""Data sets: scikit-learn's bundled ones, synthetic ones, and the user's files.

Every loader returns a :class:`Dataset` that has passed :func:`validate`, so
the rest of the trainer can trust shapes, label ranges and finiteness.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Task = Literal["multiclass", "multilabel"]
BUNDLED = ("digits", "iris", "wine", "breast_cancer")
SYNTHETIC = ("synthetic", "synthetic_multilabel")


@dataclass
class Dataset:
    """Features ``X`` [N, F] float32 and labels: ``y`` int64 [N] (multiclass)
    or 0/1 float32 [N, K] (multi-label)."""

    X: np.ndarray
    y: np.ndarray
    class_names: list[str]
    task: Task
    source: str
    params: dict = field(default_factory=dict)
    image_shape: tuple[int, int, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def fingerprint(self) -> str:
        """sha256 over features, labels and class names: the same data gives the same digest."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.X, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(self.y).tobytes())
        h.update("\0".join(self.class_names).encode())
        return h.hexdigest()

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.X[index], self.y[index], self.class_names, self.task, self.source, self.params, self.image_shape)


def validate(ds: Dataset) -> Dataset:
    """Refuse data the trainer cannot learn from, with a message saying what is wrong."""
    X, y = ds.X, ds.y
    if X.ndim != 2:
        raise ValueError(f"{ds.source}: features must be a 2-D array [N, F], got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{ds.source}: the data set is empty (shape {X.shape})")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{ds.source}: {X.shape[0]} rows of features but {y.shape[0]} labels")
    if not np.all(np.isfinite(X)):
        bad = int(np.argwhere(~np.isfinite(X))[0][0])
        raise ValueError(f"{ds.source}: features contain NaN or infinite values (first at row {bad})")
    k = ds.num_classes
    if ds.task == "multiclass":
        if y.ndim != 1:
            raise ValueError(f"{ds.source}: multiclass labels must be 1-D, got shape {y.shape}")
        if y.min() < 0 or y.max() >= k:
            raise ValueError(f"{ds.source}: labels must lie in [0, {k}), got values from {y.min()} to {y.max()}")
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"{ds.source}: only one class ({ds.class_names[int(y[0])]!r}) is present; a classifier needs at least 2"
            )
    else:
        if y.ndim != 2 or y.shape[1] != k:
            raise ValueError(f"{ds.source}: multi-label targets must be [N, {k}], got shape {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{ds.source}: multi-label targets must be 0 or 1")
    if ds.image_shape is not None and int(np.prod(ds.image_shape)) != X.shape[1]:
        raise ValueError(f"{ds.source}: image shape {ds.image_shape} does not hold {X.shape[1]} features")
    return ds


def _integer_labels(raw: np.ndarray, source: str) -> np.ndarray:
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise ValueError(f"{source}: labels must be whole numbers")
    elif raw.dtype.kind not in "iu":
        raise ValueError(f"{source}: labels must be integers, got dtype {raw.dtype}")
    return raw.astype(np.int64)


def load_bundled(name: str) -> Dataset:
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    bunch = loader()
    names = [str(n) for n in getattr(bunch, "target_names", np.unique(bunch.target))]
    image_shape = (1, 8, 8) if name == "digits" else None
    return Dataset(bunch.data.astype(np.float32), bunch.target.astype(np.int64), names, "multiclass", name, {}, image_shape)


def load_synthetic(
    *,
    n_samples: int = 3000,
    n_classes: int = 5,
    n_features: int = 20,
    imbalance: float = 1.0,
    seed: int = 0,
    multilabel: bool = False,
) -> Dataset:
    """A seeded synthetic set. ``imbalance`` r >= 1 makes class k's share
    proportional to r ** (-k / (K - 1)): the largest class is r times the smallest."""
    from sklearn.datasets import make_classification, make_multilabel_classification

    if n_samples < 10 or n_classes < 2 or n_features < 2:
        raise ValueError("synthetic data needs --n-samples >= 10, --n-classes >= 2 and --n-features >= 2")
    if imbalance < 1:
        raise ValueError(f"--imbalance must be >= 1 (largest/smallest class ratio), got {imbalance}")
    params = {"n_samples": n_samples, "n_classes": n_classes, "n_features": n_features, "imbalance": imbalance, "seed": seed}
    names = [f"class_{k}" for k in range(n_classes)]
    if multilabel:
        X, Y = make_multilabel_classification(n_samples=n_samples, n_features=n_features, n_classes=n_classes, random_state=seed)
        return Dataset(X.astype(np.float32), Y.astype(np.float32), names, "multilabel", "synthetic_multilabel", params)
    shares = imbalance ** (-np.arange(n_classes) / (n_classes - 1))
    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=max(2, min(n_features, n_classes * 2)),
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        weights=(shares / shares.sum()).tolist(),
        class_sep=1.0,
        flip_y=0.0,
        random_state=seed,
    )
    return Dataset(X.astype(np.float32), y.astype(np.int64), names, "multiclass", "synthetic", params)


def load_npz(path: Path) -> Dataset:
    """``X`` [N, F] and either ``y`` or ``Y``: 1-D integer labels (multiclass) or a 0/1 matrix [N, K]
    (multi-label), whichever the letter (`candor split` writes ``y`` for the first and ``Y`` for the
    second); optional ``class_names``. Without names, K is the largest label plus one."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    if "X" not in arrays or ("y" in arrays) == ("Y" in arrays):
        raise ValueError(
            f"{path}: an .npz needs an array 'X' and exactly one of 'y' (labels) or 'Y' (multi-label 0/1), found {sorted(arrays)}"
        )
    X = arrays["X"]
    if X.dtype.kind not in "iuf":
        raise ValueError(f"{path}: 'X' must be numeric, got dtype {X.dtype}")
    labels = arrays["Y"] if "Y" in arrays else arrays["y"]
    multilabel = labels.ndim == 2
    y = labels if multilabel else _integer_labels(labels, str(path))
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"].tolist()]
    elif multilabel:
        names = [f"class_{k}" for k in range(y.shape[1] if y.ndim == 2 else 0)]
    else:
        if y.size and y.min() < 0:
            raise ValueError(f"{path}: labels must be >= 0, got {y.min()}")
        names = [str(k) for k in range(int(y.max()) + 1 if y.size else 0)]
    task: Task = "multilabel" if multilabel else "multiclass"
    return Dataset(X.astype(np.float32), y.astype(np.float32) if multilabel else y, names, task, str(path), {})


def load_csv(path: Path, label_column: str) -> Dataset:
    """A header row, numeric feature columns and one label column (any text);
    classes are the sorted distinct labels (numerically when all are integers)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read CSV ({e})") from e
    if not rows:
        raise ValueError(f"{path}: the file is empty; expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise ValueError(f"{path}: no label column {label_column!r}; columns are {header} (choose one with --label-column)")
    li = header.index(label_column)
    features, labels = [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}: line {n} has {len(row)} fields, the header has {len(header)}")
        labels.append(row[li].strip())
        try:
            features.append([float(v) for i, v in enumerate(row) if i != li])
        except ValueError as e:
            raise ValueError(f"{path}: line {n}: feature values must be numbers ({e})") from e
    distinct = sorted(set(labels))
    try:
        distinct = sorted(distinct, key=int)
    except ValueError:
        pass
    index = {name: k for k, name in enumerate(distinct)}
    X = np.asarray(features, dtype=np.float32).reshape(len(features), len(header) - 1)
    y = np.asarray([index[v] for v in labels], dtype=np.int64)
    return Dataset(X, y, distinct, "multiclass", str(path), {"label_column": label_column})


def load_dataset(source: str, *, label_column: str = "label", **synthetic) -> Dataset:
    """Load ``source``: a bundled name (digits, iris, wine, breast_cancer),
    ``synthetic`` / ``synthetic_multilabel`` (keyword options as
    :func:`load_synthetic`), or a ``.npz`` / ``.csv`` path."""
    if source in BUNDLED:
        return validate(load_bundled(source))
    if source in SYNTHETIC:
        return validate(load_synthetic(multilabel=source == "synthetic_multilabel", **synthetic))
    path = Path(source)
    if path.suffix not in (".npz", ".csv"):
        raise ValueError(f"unknown data set {source!r}: use one of {', '.join(BUNDLED + SYNTHETIC)} or a .npz/.csv file")
    if not path.is_file():
        raise ValueError(f"{source}: no such file")
    ds = load_npz(path) if path.suffix == ".npz" else load_csv(path, label_column)
    return validate(ds)
