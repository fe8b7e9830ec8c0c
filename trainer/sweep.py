"""``candor sweep``: accuracy, NLL and ECE over epsilon x convention, with and
without temperature scaling, as a table and a plot."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from candor.trainer.options import TrainOptions
from candor.trainer.pipeline import fit

DEFAULT_EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3)
DEFAULT_CONVENTIONS = ("uniform", "off_target")
COLUMNS = ("convention", "epsilon", "temperature_scaled", "temperature", "accuracy", "nll", "ece", "brier", "classwise_ece")


def sweep(base: TrainOptions, epsilons=DEFAULT_EPSILONS, conventions=DEFAULT_CONVENTIONS, log=print) -> list[dict]:
    """Train once per (convention, epsilon) and report test metrics before and
    after temperature scaling; epsilon 0 (hard labels) is trained once and
    listed as convention ``none``."""
    runs = [("none", 0.0)] if 0.0 in epsilons else []
    runs += [(c, e) for c in conventions for e in epsilons if e > 0]
    rows = []
    for n, (convention, eps) in enumerate(runs, start=1):
        smoothing = dataclasses.replace(base.smoothing, convention="uniform" if convention == "none" else convention, epsilon=eps)
        t = fit(dataclasses.replace(base, smoothing=smoothing))
        for scaled, metrics in ((False, t.test.before), (True, t.test.after)):
            rows.append({
                "convention": convention, "epsilon": eps, "temperature_scaled": scaled,
                "temperature": t.temperature.as_list()[0] if scaled else 1.0,
                **{k: metrics[k] for k in ("accuracy", "nll", "ece", "brier", "classwise_ece")},
            })  # fmt: skip
        log(f"[{n}/{len(runs)}] {convention} eps={eps}: acc {t.test.after['accuracy']:.4f} "
            f"ECE {t.test.before['ece']:.4f} -> {t.test.after['ece']:.4f} with T={t.temperature.as_list()[0]:.3f}")  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| convention | epsilon | TS | T | accuracy | NLL | ECE | Brier | classwise ECE |", "|---" * 9 + "|"]
    for r in rows:
        lines.append(
            f"| {r['convention']} | {r['epsilon']:g} | {'yes' if r['temperature_scaled'] else 'no'} | {r['temperature']:.3f} | "
            f"{r['accuracy']:.4f} | {r['nll']:.4f} | {r['ece']:.4f} | {r['brier']:.4f} | {r['classwise_ece']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def parse_floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise ValueError(f"--epsilons must be comma-separated numbers, got {text!r}") from e
    bad = [v for v in values if not 0 <= v < 1]
    if not values or bad:
        raise ValueError(f"--epsilons must be non-empty values in [0, 1), got {text!r}")
    return values

