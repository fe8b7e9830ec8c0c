"""Per-version reports: ``metrics.json``, ``report.md`` and ``reliability.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from candor.calibration.binning import ReliabilityBins
from candor.calibration.manifest import Manifest, MetricSet
from candor.calibration.report import METRIC_NAMES


def metrics_table(rows: dict[str, MetricSet | dict]) -> str:
    """A markdown table, one row per named metric set, one column per metric."""
    head = "| | " + " | ".join(METRIC_NAMES) + " |"
    lines = [head, "|---" * (len(METRIC_NAMES) + 1) + "|"]
    for label, ms in rows.items():
        values = ms if isinstance(ms, dict) else ms.__dict__
        cells = ["n/a" if values[m] is None else f"{values[m]:.4f}" for m in METRIC_NAMES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_report(m: Manifest, path: Path | None = None) -> str:
    t = m.temperature
    temp = f"{t.value[0]:.4f}" if not t.per_class else ", ".join(f"{v:.3f}" for v in t.value)
    s = m.smoothing
    lines = [
        f"# {m.name} version {m.version}",
        "",
        f"- task: {m.task}, {m.num_classes} classes, {m.input.shape[1]} features",
        f"- data: {m.data.source} (train {m.data.n_train} / val {m.data.n_val} / test {m.data.n_test}, "
        f"split seed {m.data.split_seed})",
        f"- label noise in training split: {m.data.label_noise or 'none'}",
        f"- model: {m.training.architecture} width {m.training.width} depth {m.training.depth} dropout {m.training.dropout}; "
        f"{m.training.epochs_run} epochs, best {m.training.best_epoch}, world size {m.training.world_size}",
        f"- smoothing: {s.convention}, epsilon {s.epsilon}" + (f", source {s.source}" if s.source else ""),
        f"- temperature: {temp} (fitted on {t.fitted_on}" + (", clamped to range" if t.clamped else "") + ")",
        "",
        f"## Calibration on {m.metrics.split} ({m.metrics.n_bins} equal-width bins)",
        "",
        metrics_table({"before temperature": m.metrics.before_temperature, "after temperature": m.metrics.after_temperature}),
        "",
    ]
    if path is not None:
        lines.append(f"Model: `{path / 'model.onnx'}`")
    return "\n".join(lines) + "\n"


def plot_reliability(panels: dict[str, ReliabilityBins], path: Path, title: str) -> None:
    """One reliability diagram per panel: per-bin accuracy (bars) and mean confidence
    (diamonds) against the diagonal; the vertical distance is that bin's gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    for ax, (label, bins) in zip(axes[0], panels.items(), strict=True):
        width = np.diff(bins.edges)
        centers = bins.edges[:-1] + width / 2
        filled = bins.count > 0
        ax.bar(centers[filled], bins.accuracy[filled], width=width[filled], edgecolor="black", color="#4c72b0", label="accuracy")
        ax.plot(centers[filled], bins.confidence[filled], "D", color="#dd8452", markersize=5, label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ece = float(np.sum(bins.weight * bins.gap))
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{label}\nECE {ece:.4f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(folder: Path, m: Manifest, panels: dict[str, ReliabilityBins], extra: dict | None = None) -> None:
    metrics = {
        "split": m.metrics.split,
        "n_bins": m.metrics.n_bins,
        "temperature": m.temperature.value,
        "before_temperature": m.metrics.before_temperature.__dict__,
        "after_temperature": m.metrics.after_temperature.__dict__,
        "reliability": {label: bins.to_dict() for label, bins in panels.items()},
        **(extra or {}),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(render_report(m) + "\n![reliability](reliability.png)\n", encoding="utf-8")
    plot_reliability(panels, folder / "reliability.png", f"{m.name} v{m.version} on {m.metrics.split}")
