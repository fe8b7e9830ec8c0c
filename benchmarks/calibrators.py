"""Calibration methods side by side: each fitted on a model's validation logits and measured on
its test split (ECE with its 90% bootstrap interval, NLL, accuracy), one trained model per data
set and seed. Prints a markdown table for docs/calibration-results.md.

    python benchmarks/calibrators.py --seeds 0 --epochs 40
"""

from __future__ import annotations

import argparse

import numpy as np

from candor.calibration import calibration_report
from candor.calibration.calibrators import TemperatureScaling
from candor.calibration.selection import CHOICES, fit_method
from candor.trainer.loop import LoopOptions
from candor.trainer.options import DataOptions, TrainOptions
from candor.trainer.pipeline import fit

DATASETS = {
    "digits": DataOptions(dataset="digits"),
    "synthetic, 20% label noise": DataOptions(dataset="synthetic", label_noise=0.2),
    "synthetic, imbalanced (10:1)": DataOptions(dataset="synthetic", imbalance=10.0),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=40)
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    print("| data | method | ECE [90% interval] | NLL | accuracy |\n|---|---|---|---|---|")
    for name, data in DATASETS.items():
        results: dict[str, list[dict]] = {}
        for seed in seeds:
            t = fit(TrainOptions(data=data, loop=LoopOptions(max_epochs=a.epochs, progress=False, seed=seed)))
            s = t.sample
            for method in ("uncalibrated", *CHOICES):
                c = TemperatureScaling.of(1.0) if method == "uncalibrated" else \
                    fit_method(method, s.val_logits, s.val_labels, seed=seed).calibrator  # fmt: skip
                results.setdefault(method, []).append(calibration_report(c.probabilities(s.test_logits), s.test_labels))
        for method, reports in results.items():
            mean = {k: np.mean([r[k] for r in reports]) for k in ("ece", "ece_low", "ece_high", "nll", "accuracy")}
            print(f"| {name} | {method} | {mean['ece']:.4f} [{mean['ece_low']:.4f}, {mean['ece_high']:.4f}] | "
                  f"{mean['nll']:.4f} | {mean['accuracy']:.4f} |")


if __name__ == "__main__":
    main()
