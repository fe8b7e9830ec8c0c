"""Per-version reports: ``metrics.json``, ``report.md`` and ``reliability.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from candor.calibration.binning import ReliabilityBins
from candor.calibration.intervals import LEVEL, RESAMPLES, SEED
from candor.calibration.lineage import calibrator_of
from candor.calibration.manifest import Manifest, MetricSet
from candor.calibration.report import METRIC_NAMES

INTERVAL_NOTE = (f"ece [low, high]: {LEVEL:.0%} bootstrap interval ({RESAMPLES:,} resamples of the rows, seed {SEED}); "
                 "debiased_rms_ece: Kumar et al. 2019, 0 when the error is within noise")  # fmt: skip
# Bins with fewer rows than this are drawn hatched: their accuracy is mostly noise.
SPARSE_BIN_ROWS = 10


def _cell(values: dict, metric: str) -> str:
    v = values[metric]
    if v is None:
        return "n/a"
    if metric == "ece" and values.get("ece_low") is not None:
        return f"{v:.4f} [{values['ece_low']:.4f}, {values['ece_high']:.4f}]"
    return f"{v:.4f}"


def metrics_table(rows: dict[str, MetricSet | dict]) -> str:
    """A markdown table, one row per named metric set, one column per metric; ECE with its interval."""
    head = "| | " + " | ".join(METRIC_NAMES) + " |"
    lines = [head, "|---" * (len(METRIC_NAMES) + 1) + "|"]
    for label, ms in rows.items():
        values = ms if isinstance(ms, dict) else ms.__dict__
        lines.append(f"| {label} | " + " | ".join(_cell(values, m) for m in METRIC_NAMES) + " |")
    return "\n".join(lines)


def describe_noise(noise: dict | None) -> str:
    """The label noise a manifest records, in words: "symmetric, rate 0.2 (19.8% of training labels changed, seed 0)"."""
    if not noise:
        return "none"
    kind = str(noise.get("kind", "?")) + (f" from {noise['matrix_file']}" if noise.get("matrix_file") else "")
    changed = noise.get("changed_share")
    share = f"{float(changed):.1%} of training labels changed, " if changed is not None else ""
    return f"{kind}, rate {noise.get('rate', '?')} ({share}seed {noise.get('seed', '?')})"


def render_report(m: Manifest, path: Path | None = None) -> str:
    t = m.temperature
    c = m.calibrator
    method = calibrator_of(m).describe()
    s = m.smoothing
    lines = [
        f"# {m.name} version {m.version}",
        "",
        f"- task: {m.task}, {m.num_classes} classes, {m.input.shape[1]} features",
        f"- data: {m.data.source} (train {m.data.n_train} / val {m.data.n_val} / test {m.data.n_test}, "
        f"split seed {m.data.split_seed})",
        f"- label noise in training split: {describe_noise(m.data.label_noise)}",
        f"- model: {m.training.architecture} width {m.training.width} depth {m.training.depth} dropout {m.training.dropout}; "
        f"{m.training.epochs_run} epochs, best {m.training.best_epoch}, world size {m.training.world_size}",
        f"- smoothing: {s.convention}, epsilon {s.epsilon}" + (f", source {s.source}" if s.source else ""),
        f"- calibrator: {method} (fitted on {t.fitted_on}" + (", clamped to range" if t.clamped else "") + ")",
        *([f"- chosen by {c.selected_by}"] if c.selected_by else []),
        *([f"- held-out NLL decrease over the parent: {c.nll_improvement[0]:.4f} "
           f"[{c.nll_improvement[1]:.4f}, {c.nll_improvement[2]:.4f}]"] if c.nll_improvement else []),  # fmt: skip
        f"- drift reference: {m.reference.source}",
        "",
        f"## Calibration on {m.metrics.split} ({m.metrics.n_bins} equal-width bins)",
        "",
        metrics_table({"before calibration": m.metrics.before_temperature, "after calibration": m.metrics.after_temperature}),
        "",
        INTERVAL_NOTE + ("; multi-label ece is the mean of the per-class ECEs (the diagram pools every class's "
                         "entries)" if m.task == "multilabel" else ""),  # fmt: skip
        "",
    ]
    lines += conformal_lines(m)
    if path is not None:
        lines.append(f"Model: `{path / 'model.onnx'}`")
    return "\n".join(lines) + "\n"


def conformal_lines(m: Manifest) -> list[str]:
    """The prediction sets' test-split table: coverage with its interval, the worst class, sizes."""
    c = m.conformal
    if c is None:
        return []
    lines = [f"## Prediction sets on {m.metrics.split}", "",
             f"Conformal scores of {c.rows} validation rows no fit has seen ({c.source}); served by default: "
             f"{c.recommended} at {c.default_coverage:g}. Coverage interval: 90% Clopper-Pearson.", "",
             "| method | promised | covered [low, high] | worst class | mean size | median size | empty | singletons |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in c.test_split:
        name = r.method + (" (per class)" if r.class_conditional else "")
        lines.append(f"| {name} | {r.coverage:g} | {r.observed:.3f} [{r.observed_low:.3f}, {r.observed_high:.3f}] | "
                     f"{r.worst_class:.3f} | {r.mean_size:.2f} | {r.median_size:g} | {r.empty_share:.1%} | "
                     f"{r.singleton_share:.1%} |")  # fmt: skip
    return [*lines, ""]


def plot_reliability(panels: dict[str, ReliabilityBins], path: Path, title: str, pooled: bool = False) -> None:
    """One reliability diagram per panel: per-bin accuracy (bars) and mean confidence
    (diamonds) against the diagonal, and under it a strip with each bin's row count.
    Bins with fewer than :data:`SPARSE_BIN_ROWS` rows are hatched and pale: their accuracy is
    mostly noise. ``pooled``: the bins pool every class's entries (multi-label), and the
    title says so, because the report's table shows the per-class mean instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(panels), figsize=(5 * len(panels), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": [4, 1]}, sharex="col")  # fmt: skip
    for i, (label, bins) in enumerate(panels.items()):
        ax, strip = axes[0][i], axes[1][i]
        width = np.diff(bins.edges)
        centers = bins.edges[:-1] + width / 2
        filled = bins.count > 0
        sparse = filled & (bins.count < SPARSE_BIN_ROWS)
        dense = filled & ~sparse
        ax.bar(centers[dense], bins.accuracy[dense], width=width[dense], edgecolor="black", color="#4c72b0", label="accuracy")
        ax.bar(centers[sparse], bins.accuracy[sparse], width=width[sparse], edgecolor="black", color="#4c72b0", alpha=0.3,
               hatch="//", label=f"accuracy, < {SPARSE_BIN_ROWS} rows")  # fmt: skip
        ax.plot(centers[filled], bins.confidence[filled], "D", color="#dd8452", markersize=5, label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ece = float(np.sum(bins.weight * bins.gap))
        name = "pooled ECE" if pooled else "ECE"
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"{label}\n{name} {ece:.4f} ({int(bins.count.sum())} rows)")
        ax.legend(loc="upper left", fontsize=8)
        strip.bar(centers[filled], bins.count[filled], width=width[filled], color="#8c8c8c", edgecolor="black")
        for x, n in zip(centers[filled], bins.count[filled], strict=True):
            strip.annotate(str(int(n)), (x, n), ha="center", va="bottom", fontsize=6)
        strip.set(xlim=(0, 1), xlabel="confidence", ylabel="rows")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(folder: Path, m: Manifest, panels: dict[str, ReliabilityBins], extra: dict | None = None) -> None:
    metrics = {
        "split": m.metrics.split,
        "n_bins": m.metrics.n_bins,
        "calibrator": m.calibrator.method,
        "temperature": m.temperature.value,
        "interval": {"level": LEVEL, "resamples": RESAMPLES, "seed": SEED, "kind": "basic bootstrap over rows (ece)"},
        "before_temperature": m.metrics.before_temperature.__dict__,
        "after_temperature": m.metrics.after_temperature.__dict__,
        "reliability": {label: bins.to_dict() for label, bins in panels.items()},
        **(extra or {}),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(render_report(m) + "\n![reliability](reliability.png)\n", encoding="utf-8")
    plot_reliability(panels, folder / "reliability.png", f"{m.name} v{m.version} on {m.metrics.split}", m.task == "multilabel")
