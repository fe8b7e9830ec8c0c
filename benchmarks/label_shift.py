"""Label shift without labels: how well the class priors of shifted traffic are estimated, and what the
correction buys, for EM on temperature scaling (TS), EM on BCTS, and BBSE (Lipton et al., 2018).

One model per data set (seed 0). Its test split is resampled to priors drawn from a symmetric
Dirichlet (alpha 1.0: moderate shifts; 0.1: a few classes dominate), 20 draws each, as many rows
as the test split holds (with replacement within each class). Per draw:

* prior error: mean absolute error of the estimated priors against the draw's label mix;
* accuracy and NLL of BCTS's posteriors before and after the EM correction (and of TS's after);
* expected-accuracy error: |label-free estimate - observed accuracy| of the served (uncorrected
  BCTS) predictions, for the corrected estimate and for the uncorrected mean confidence.

Cells are the mean over draws (± its standard error for the prior errors; the best in bold).
Prints the markdown for docs/calibration-results.md.

    python benchmarks/label_shift.py --epochs 40
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from candor.calibration.calibrators import fit_calibrator
from candor.calibration.label_shift import bbse_priors, corrected, em_priors, estimate
from candor.trainer.loop import LoopOptions
from candor.trainer.options import DataOptions, TrainOptions
from candor.trainer.pipeline import fit

DATASETS = {
    "digits": DataOptions(dataset="digits"),
    "synthetic, 10 classes": DataOptions(dataset="synthetic", n_classes=10, n_samples=6000),
    # asymmetric noise (each class's labels flipped to the next) leaves per-class offsets a single temperature
    # cannot remove: where Alexandari et al. found the bias terms matter
    "synthetic, 10 classes, 30% pair noise": DataOptions(dataset="synthetic", n_classes=10, n_samples=6000,
                                                         label_noise=0.3, noise_kind="pair"),
}
ALPHAS = (1.0, 0.1)
DRAWS = 20


def nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(p.argmax(axis=1) == y))


def draw(labels: np.ndarray, priors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices of the test split with class mix ``priors`` (classes absent from the split are skipped)."""
    k = len(priors)
    present = np.array([np.any(labels == c) for c in range(k)])
    p = priors * present
    classes = rng.choice(k, len(labels), p=p / p.sum())
    by_class = {c: np.flatnonzero(labels == c) for c in range(k) if present[c]}
    return np.array([rng.choice(by_class[c]) for c in classes])


def measure(name: str, data: DataOptions, epochs: int) -> list[str]:
    t = fit(TrainOptions(data=data, loop=LoopOptions(max_epochs=epochs, progress=False, seed=0)))
    s = t.sample
    ts, bcts = (fit_calibrator(m, s.val_logits, s.val_labels) for m in ("temperature", "bcts"))
    val = {"ts": ts.probabilities(s.val_logits), "bcts": bcts.probabilities(s.val_logits)}
    assumed = {m: v.mean(axis=0) for m, v in val.items()}  # what EM finds on unshifted rows (candor.calibration.priors)
    test = {"ts": ts.probabilities(s.test_logits), "bcts": bcts.probabilities(s.test_logits)}
    k = val["ts"].shape[1]
    rows = []
    for alpha in ALPHAS:
        rng = np.random.default_rng(int(alpha * 1000))
        cells: defaultdict[str, list[float]] = defaultdict(list)
        for _ in range(DRAWS):
            idx = draw(s.test_labels, rng.dirichlet(np.full(k, alpha)), rng)
            y = s.test_labels[idx]
            truth = np.bincount(y, minlength=k) / len(y)
            p_ts, p_bcts = test["ts"][idx], test["bcts"][idx]
            em_ts = em_priors(p_ts, assumed["ts"]).priors
            shift = estimate(p_bcts, assumed["bcts"], resamples=0)
            cells["EM + TS"].append(float(np.abs(em_ts - truth).mean()))
            cells["EM + BCTS"].append(float(np.abs(shift.priors - truth).mean()))
            cells["BBSE"].append(float(np.abs(bbse_priors(val["bcts"], s.val_labels, p_bcts) - truth).mean()))
            after = corrected(p_bcts, assumed["bcts"], shift.priors)
            cells["acc before"].append(accuracy(p_bcts, y))
            cells["acc after"].append(accuracy(after, y))
            cells["acc after TS"].append(accuracy(corrected(p_ts, assumed["ts"], em_ts), y))
            cells["nll before"].append(nll(p_bcts, y))
            cells["nll after"].append(nll(after, y))
            cells["nll after TS"].append(nll(corrected(p_ts, assumed["ts"], em_ts), y))
            served = accuracy(p_bcts, y)
            cells["expected err"].append(abs(shift.expected_accuracy - served))
            cells["naive err"].append(abs(float(p_bcts.max(axis=1).mean()) - served))
        m = {key: float(np.mean(v)) for key, v in cells.items()}
        estimators = ("EM + TS", "EM + BCTS", "BBSE")
        best = min(estimators, key=m.get)
        shown = {e: (f"**{m[e]:.4f}**" if e == best else f"{m[e]:.4f}") + f" ± {np.std(cells[e]) / np.sqrt(DRAWS):.4f}"
                 for e in estimators}  # fmt: skip
        rows.append(f"| {name} | {alpha:g} | {shown['EM + TS']} | {shown['EM + BCTS']} | {shown['BBSE']} | "
                    f"{m['acc before']:.4f} → {m['acc after']:.4f} ({m['acc after TS']:.4f}) | "
                    f"{m['nll before']:.4f} → {m['nll after']:.4f} ({m['nll after TS']:.4f}) | "
                    f"{m['expected err']:.4f} ({m['naive err']:.4f}) |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=40)
    a = p.parse_args()
    print("| data | Dirichlet alpha | prior MAE, EM + TS | EM + BCTS | BBSE | accuracy before → after EM + BCTS (EM + TS) "
          "| NLL before → after (EM + TS) | expected-accuracy error, corrected (uncorrected confidence) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, data in DATASETS.items():
        for row in measure(name, data, a.epochs):
            print(row)


if __name__ == "__main__":
    main()
