"""``candor sweep``: accuracy, NLL and ECE over epsilon x convention, with and
without temperature scaling, as a table and a plot."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from candor.trainer.options import TrainOptions
from candor.trainer.pipeline import fit

DEFAULT_EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3)
DEFAULT_CONVENTIONS = ("uniform", "off_target")
METRICS = ("temperature", "accuracy", "nll", "ece", "brier", "classwise_ece")
COLUMNS = ("convention", "epsilon", "temperature_scaled", "seed", *METRICS)


def sweep(base: TrainOptions, epsilons=DEFAULT_EPSILONS, conventions=DEFAULT_CONVENTIONS, seeds=(0,), log=print) -> list[dict]:
    """Train once per (convention, epsilon, seed) and report test metrics
    before and after temperature scaling; epsilon 0 (hard labels) is trained
    once per seed and listed as convention ``none``. Each seed reseeds both
    the split and the training, so the spread covers both."""
    runs = [("none", 0.0)] if 0.0 in epsilons else []
    runs += [(c, e) for c in conventions for e in epsilons if e > 0]
    rows = []
    total = len(runs) * len(seeds)
    for n, (convention, eps, seed) in enumerate(((c, e, s) for c, e in runs for s in seeds), start=1):
        smoothing = dataclasses.replace(base.smoothing, convention="uniform" if convention == "none" else convention, epsilon=eps)
        options = dataclasses.replace(base, smoothing=smoothing, data=dataclasses.replace(base.data, split_seed=seed),
                                      loop=dataclasses.replace(base.loop, seed=seed))  # fmt: skip
        t = fit(options)
        for scaled, metrics in ((False, t.test.before), (True, t.test.after)):
            rows.append({
                "convention": convention, "epsilon": eps, "temperature_scaled": scaled, "seed": seed,
                "temperature": float(np.atleast_1d(t.calibrator.temperature)[0]) if scaled else 1.0,
                **{k: metrics[k] for k in METRICS[1:]},
            })  # fmt: skip
        log(f"[{n}/{total}] {convention} eps={eps} seed={seed}: acc {t.test.after['accuracy']:.4f} "
            f"ECE {t.test.before['ece']:.4f} -> {t.test.after['ece']:.4f} with {t.calibrator.describe()}")  # fmt: skip
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of each (convention, epsilon, TS) cell, in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["convention"], r["epsilon"], r["temperature_scaled"]), []).append(r)
    out = []
    for (conv, eps, scaled), members in groups.items():
        cell = {"convention": conv, "epsilon": eps, "temperature_scaled": scaled, "seeds": len(members)}
        for k in METRICS:
            values = np.array([m[k] for m in members])
            cell[k], cell[f"{k}_std"] = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(cell)
    return out


def markdown(rows: list[dict]) -> str:
    cells = aggregate(rows)
    spread = any(c["seeds"] > 1 for c in cells)

    def fmt(c: dict, k: str, digits: int = 4) -> str:
        return f"{c[k]:.{digits}f} ± {c[k + '_std']:.{digits}f}" if spread else f"{c[k]:.{digits}f}"

    note = f"mean ± std over {cells[0]['seeds']} seeds\n\n" if spread else ""
    lines = ["| convention | epsilon | TS | T | accuracy | NLL | ECE | Brier | classwise ECE |", "|---" * 9 + "|"]
    for c in cells:
        lines.append(
            f"| {c['convention']} | {c['epsilon']:g} | {'yes' if c['temperature_scaled'] else 'no'} | "
            f"{fmt(c, 'temperature', 3)} | " + " | ".join(fmt(c, k) for k in METRICS[1:]) + " |"
        )
    return note + "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = aggregate(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    hard = [r for r in rows if r["convention"] == "none"]
    conventions = sorted({r["convention"] for r in rows} - {"none"})
    for ax, metric in zip(axes, ("accuracy", "nll", "ece"), strict=True):
        for conv in conventions:
            for scaled, style in ((False, "--"), (True, "-")):
                pts = sorted((r["epsilon"], r[metric]) for r in hard + [r for r in rows if r["convention"] == conv]
                             if r["temperature_scaled"] == scaled)  # fmt: skip
                ax.plot(*zip(*pts, strict=True), style, marker="o", label=f"{conv}{' + TS' if scaled else ''}")
        ax.set(xlabel="epsilon", title=metric.upper() if metric != "accuracy" else "accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(rows: list[dict], folder: Path, title: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "sweep.csv", "md": folder / "sweep.md", "png": folder / "sweep.png"}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    paths["md"].write_text(f"# {title}\n\n" + markdown(rows), encoding="utf-8")
    plot(rows, paths["png"], title)
    return paths


def parse_list(text: str, convert, flag: str, valid, expected: str) -> tuple:
    """Parse a comma-separated flag value; ValueError names the flag and what it takes."""
    try:
        values = tuple(convert(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated {expected}, got {text!r}") from None
    if not values or not valid(values):
        raise ValueError(f"{flag} must be comma-separated {expected}, got {text!r}")
    return values
