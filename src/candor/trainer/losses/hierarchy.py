"""Smoothing toward classes that resemble the true one.

Two file forms give a [K, K] row matrix (row y = u for true class y, zero on
the diagonal so the true class still gets exactly 1 - eps):

* a JSON class tree: nested objects and lists whose leaves are the class
  names, e.g. ``{"round": ["0", "6", "8", "9"], "straight": ["1", "4", "7"]}``.
  Class j's weight for true class y is 2 ** (ancestors shared with y): every
  level closer doubles the share.
* a similarity matrix (.csv or .npy, [K, K], non-negative, rows in class
  order): row y's off-diagonal entries, normalised.

A row with no off-diagonal weight falls back to the off-target uniform row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from candor.trainer.losses.targets import off_target_rows


def _leaf_paths(node, prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Leaf name -> tuple of the groups above it (root excluded)."""
    if isinstance(node, str | int):
        return {str(node): prefix}
    if isinstance(node, list):
        out: dict[str, tuple[str, ...]] = {}
        for i, child in enumerate(node):
            group = () if isinstance(child, str | int) else (f"{'/'.join(prefix)}[{i}]",)
            for leaf, path in _leaf_paths(child, prefix + group).items():
                if leaf in out:
                    raise ValueError(f"class {leaf!r} appears twice in the class tree")
                out[leaf] = path
        return out
    if isinstance(node, dict):
        out = {}
        for name, child in node.items():
            for leaf, path in _leaf_paths(child, prefix + (str(name),)).items():
                if leaf in out:
                    raise ValueError(f"class {leaf!r} appears twice in the class tree")
                out[leaf] = path
        return out
    raise ValueError(f"class tree nodes must be objects, lists or class names, got {type(node).__name__}")


def tree_similarity(tree, class_names: list[str]) -> np.ndarray:
    paths = _leaf_paths(tree)
    missing = [c for c in class_names if c not in paths]
    extra = sorted(set(paths) - set(class_names))
    if missing or extra:
        raise ValueError(f"class tree leaves must be exactly the class names; missing {missing}, unknown {extra}")
    k = len(class_names)
    sim = np.empty((k, k))
    for i, a in enumerate(class_names):
        for j, b in enumerate(class_names):
            pa, pb = paths[a], paths[b]
            shared = next((n for n, (x, y) in enumerate(zip(pa, pb, strict=False)) if x != y), min(len(pa), len(pb)))
            sim[i, j] = 2.0**shared
    return sim


def rows_from_similarity(sim: np.ndarray) -> np.ndarray:
    k = sim.shape[0]
    if sim.shape != (k, k) or not np.all(np.isfinite(sim)) or np.any(sim < 0):
        raise ValueError(f"a similarity matrix must be square, finite and non-negative, got shape {sim.shape}")
    rows = np.array(sim, dtype=np.float64)
    np.fill_diagonal(rows, 0.0)
    totals = rows.sum(axis=1, keepdims=True)
    fallback = off_target_rows(k)
    return np.where(totals > 0, rows / np.where(totals > 0, totals, 1.0), fallback)


def hierarchy_rows(path: str | Path, class_names: list[str]) -> np.ndarray:
    """Read a class tree (.json) or similarity matrix (.csv/.npy) into [K, K] rows."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            sim = tree_similarity(json.loads(path.read_text(encoding="utf-8")), class_names)
        elif path.suffix in (".csv", ".npy"):
            sim = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",", ndmin=2)
        else:
            raise ValueError("use a .json class tree or a .csv/.npy similarity matrix")
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read hierarchy ({e})") from e
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    if np.shape(sim) != (len(class_names), len(class_names)):
        raise ValueError(f"{path}: similarity matrix must be [{len(class_names)}, {len(class_names)}], got {np.shape(sim)}")
    return rows_from_similarity(np.asarray(sim, dtype=np.float64))
