"""Seeded, stratified train / validation / test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from candor.trainer.data import Dataset


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray

    def indices(self, name: str) -> np.ndarray:
        if name == "all":
            return np.sort(np.concatenate([self.train, self.val, self.test]))
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val, test or all, got {name!r}")
        return getattr(self, name)


def split_dataset(ds: Dataset, *, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Stratified by class for multiclass (plain shuffle for multi-label); the
    same ``seed`` always gives the same indices."""
    from sklearn.model_selection import train_test_split

    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < frac < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {frac}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1 to leave training rows, got {val_fraction + test_fraction}")
    n = ds.X.shape[0]
    rows = np.arange(n)
    strat = ds.y if ds.task == "multiclass" else None
    try:
        rest, test = train_test_split(rows, test_size=test_fraction, random_state=seed, stratify=strat)
        rel_val = val_fraction / (1 - test_fraction)
        train, val = train_test_split(rest, test_size=rel_val, random_state=seed, stratify=None if strat is None else strat[rest])
    except ValueError as e:
        counts = np.bincount(ds.y, minlength=ds.num_classes) if strat is not None else None
        raise ValueError(
            f"{ds.source}: cannot split {n} rows into train/val/test ({e}); every class needs a few rows"
            + (f", smallest class has {counts.min()}" if counts is not None else "")
        ) from e
    return Split(np.sort(train), np.sort(val), np.sort(test))


def conformal_split(val: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The validation rows every fit uses, and a ``share`` of them that no fit sees (for the conformal scores)."""
    held = int(round(share * len(val)))
    if held == 0:
        return val, None
    if held >= len(val):
        raise ValueError(f"--conformal-share {share} leaves no validation rows to fit on ({len(val)} in all)")
    return split_off(val, held, seed)


def split_off(val: np.ndarray, held: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept for fitting, the ``held`` rows kept from every fit), each in their original order."""
    order = np.random.default_rng([seed, 1]).permutation(len(val))
    return val[np.sort(order[held:])], val[np.sort(order[:held])]
