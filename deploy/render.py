"""Render the deployment files that are derived from one source each.

- ``deploy/grafana/dashboards/candor.json``: the Grafana dashboard, described below
  in a few lines per panel (ids, grid positions and datasource references are
  filled in here so that they cannot disagree);
- ``deploy/k8s/base/generated/grafana-dashboard.yaml``: the same dashboard as a
  ConfigMap for the Grafana sidecar;
- ``deploy/k8s/base/generated/prometheusrule.yaml``: ``deploy/prometheus/recording.yml`` and ``alerts.yml``
  as a PrometheusRule for the Prometheus Operator.

``python deploy/render.py`` writes them (``make deploy-files``);
``python deploy/render.py --check`` exits 1 naming any that is stale (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_UID = "candor-calibration"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MV = 'model=~"$model", version=~"$version"'  # the dashboard's model and version variables
M = 'model=~"$model"'  # per-call series carry the model but no version ("" for calls that name none)
ROWS_PER_S = "suffix: rows/s"  # Grafana's custom unit: what a rate of rows is, so tooltips say it
RATE = "[$__rate_interval]"


def sel(metric: str) -> str:
    """``metric`` restricted to the dashboard's chosen model and version."""
    return f"{metric}{{{MV}}}"


def rate(metric: str, by: str = "version") -> str:
    """Per-second rate of a counter of the chosen versions, summed by ``by`` (all together when empty)."""
    return f"sum{f' by ({by})' if by else ''} (rate({sel(metric)}{RATE}))"


PSI_STEPS = [(None, "green"), (0.1, "orange"), (0.25, "red")]  # the server's --psi-warn / --psi-drift defaults


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    kind: str = "timeseries"
    unit: str = "none"
    description: str = ""
    width: int = 12
    height: int = 8
    steps: list[tuple[float | None, str]] = field(default_factory=list)  # threshold lines drawn on the panel
    instant: bool = False
    fmt: str = "time_series"
    extra: dict = field(default_factory=dict)  # panel options and field config beyond the defaults


def traffic() -> list[Panel]:
    q = "histogram_quantile({q}, sum by (le, rpc) (rate(candor_request_duration_seconds_bucket{{" + M + "}}" + RATE + ")))"
    def p99(name: str) -> str:
        return f"histogram_quantile(0.99, {rate(f'candor_{name}_duration_seconds_bucket', 'le, version')})"

    return [
        Panel("Requests per second by status code",
              [("sum by (code) (rate(candor_requests_total{" + M + "}" + RATE + "))", "{{code}}")], unit="reqps",
              description="Every RPC the server answered (both services), by gRPC status code; calls that name no "
                          "loaded model (health, ListModels) count under model \"\", which \"All\" includes."),
        # "or vector(0)": with no errors at all the numerator has no series, and the ratio should read 0, not "no data".
        Panel("Error ratio", [('(sum(rate(candor_requests_total{code!="OK", ' + M + "}" + RATE + ")) or vector(0)) / "
                               "sum(rate(candor_requests_total{" + M + "}" + RATE + "))", "errors / requests")],
              unit="percentunit", steps=[(None, "green"), (0.01, "red")]),
        Panel("Request latency", [(q.format(q=p), f"p{round(p * 100)} {{{{rpc}}}}") for p in (0.5, 0.95, 0.99)], unit="s",
              description="From receiving an RPC to answering it, from the candor_request_duration_seconds histogram."),
        Panel("Queue wait and inference time (p99)",
              [(p99("queue"), "queue v{{version}}"), (p99("inference"), "onnxruntime v{{version}}")], unit="s"),
        Panel("Rows per batch", [
            (f"{rate('candor_batch_size_rows_sum')} / {rate('candor_batch_size_rows_count')}", "mean v{{version}}"),
            (f"histogram_quantile(0.95, {rate('candor_batch_size_rows_bucket', 'le, version')})", "p95 v{{version}}"),
        ], description="Rows the dynamic batcher put into one onnxruntime run."),
        Panel("Queue depth and requests in flight", [(f"sum by (version) ({sel('candor_queue_rows')})", "queued v{{version}}"),
                                                     ("candor_inflight_requests", "RPCs in flight")]),
        Panel("Refused and dropped requests", [
            (rate("candor_dropped_requests_total", "reason"), "dropped: {{reason}}"),
            (rate("candor_rejected_requests_total", ""), "refused: queue full"),
        ], unit="reqps", description="Dropped: the deadline passed or the caller left while queued (never run). "
                                     "Refused: RESOURCE_EXHAUSTED because the queue was full."),
    ]  # fmt: skip


def drift() -> list[Panel]:
    return [
        Panel("Confidence over time", [(f"sum by (le) (increase({sel('candor_confidence_bucket')}{RATE}))", "{{le}}")],
              kind="heatmap", fmt="heatmap", width=24,
              description="Top-label confidence of every predicted row: a shift to the left is the model growing unsure.",
              extra={"options": {"calculate": False, "yAxis": {"unit": "percentunit"}, "color": {"scheme": "Oranges"},
                                 "cellGap": 1, "tooltip": {"mode": "single", "yHistogram": True}}}),
        Panel("Confidence drift, fleet (PSI vs training reference, 1h)",
              [(sel("candor:confidence_psi:fleet_1h"), "PSI v{{version}}")],
              steps=PSI_STEPS, description="Population stability index of the whole fleet's top-label confidence over the "
                                           "last hour (every replica's rows added up) against the histogram recorded at "
                                           "training time. Lines: warn 0.1, drift 0.25."),
        Panel("Prediction drift, fleet (PSI of predicted-class mix, 1h)",
              [(sel("candor:prediction_psi:fleet_1h"), "PSI v{{version}}")], steps=PSI_STEPS),
        Panel("Confidence PSI per replica (its own window)",
              [(sel("candor_confidence_psi"), "{{instance}} v{{version}}")], steps=PSI_STEPS,
              description="Each replica's own drift window: a breakdown to find a pod that sees different traffic. "
                          "Alerts use the fleet series, never these."),
        # Stacked to 100%: the axis shows each class's share, the tooltip its rows per second.
        Panel("Predicted class mix", [(rate("candor_predictions_total", "class_name"), "{{class_name}}")],
              unit=ROWS_PER_S, extra={"fieldConfig": {"custom": {"stacking": {"mode": "percent"}, "fillOpacity": 60}}}),
        Panel("Drift state", [(sel("candor_drift_state"), "{{signal}} v{{version}}")], kind="state-timeline",
              steps=[(None, "green"), (1, "orange"), (2, "red")],
              extra={"fieldConfig": {"mappings": [{"type": "value", "options": {"0": {"text": "ok"}, "1": {"text": "warn"},
                                                                                 "2": {"text": "drift"}}}]}}),
        Panel("Rows behind the fleet signals", [(sel("candor:drift_rows:fleet_1h"), "predicted, 1h v{{version}}"),
                                                (sel("candor:feedback_rows:fleet_1d"), "labelled, 1d v{{version}}")],
              description="Alerts wait for 200 rows (drift) and 100 labelled rows (calibration) in the whole fleet."),
    ]  # fmt: skip


def calibration() -> list[Panel]:
    return [
        Panel("Expected vs observed accuracy, fleet", [
            (sel("candor:expected_accuracy:fleet_1h"), "expected (mean confidence, 1h) v{{version}}"),
            (sel("candor:observed_accuracy:fleet_1d"), "observed (feedback, 1d) v{{version}}"),
            (sel("candor_reference_accuracy"), "at training (test split) v{{version}}"),
        ], unit="percentunit", description="A calibrated model's mean confidence equals its accuracy."),
        Panel("Live ECE, fleet (1d of feedback)", [(sel("candor:observed_ece:fleet_1d"), "ECE v{{version}}"),
                                                   (sel("candor:observed_ece_low:fleet_1d"), "90% band low v{{version}}"),
                                                   (sel("candor:observed_ece_high:fleet_1d"), "90% band high v{{version}}")],
              steps=[(None, "green"), (0.1, "red")],
              description="15 equal-width bins on top-label confidence over every replica's joined feedback of the last "
                          "day, computed from summed counters: the ECE of the pooled rows, with a 90% band (per-bin "
                          "normal bound). The alert fires when the band's low end is above 0.1."),
        Panel("Expected minus observed accuracy, fleet", [(sel("candor:observed_accuracy_gap:fleet_1d"), "gap v{{version}}")],
              unit="percentunit", steps=[(None, "red"), (-0.05, "green"), (0.05, "red")],
              description="On the same labelled rows. Positive: overconfident. Alert when the gap exceeds 0.05 either way "
                          "(lines at -0.05 and +0.05)."),
        Panel("NLL and Brier on feedback, fleet", [(sel("candor:observed_nll:fleet_1d"), "NLL v{{version}}"),
                                                   (sel("candor:observed_brier:fleet_1d"), "Brier v{{version}}")]),
        Panel("Live reliability diagram, fleet", [
            (f'{sel("candor:reliability_correct:fleet_1d")} / ({sel("candor:reliability_rows:fleet_1d")} > 0)',
             "accuracy at confidence <= {{bin}}")],
              kind="bargauge", instant=True, unit="percentunit",
              description="Observed accuracy per confidence bin (upper edge) over the fleet's feedback of the last day; "
                          "calibrated bins sit near their edge.",
              extra={"options": {"displayMode": "gradient", "orientation": "horizontal"},
                     "fieldConfig": {"min": 0, "max": 1}}),
        Panel("Feedback joined per replica", [
            (f'sum by (instance) (rate(candor_feedback_rows_total{{{MV}}}{RATE}))', "{{instance}}")],
              unit=ROWS_PER_S, description="Labelled rows each replica joined: labels may reach any replica."),
        Panel("Feedback received", [(f'sum by (outcome) (rate(candor_feedback_total{{model=~"$model"}}{RATE}))', "{{outcome}}")],
              unit="suffix: items/s", description="Feedback items per second: ACCEPTED joins a logged prediction."),
    ]  # fmt: skip


def prediction_sets() -> list[Panel]:
    by = "method, coverage"
    return [
        Panel("Prediction-set coverage vs promise, fleet (1d of feedback)", [
            (sel("candor:set_coverage:fleet_1d"), "{{method}} at {{coverage}}: covered"),
            (sel("candor:set_coverage_high:fleet_1d"), "{{method}} at {{coverage}}: 90% band high"),
            (f"max by ({by}) ({sel('candor_prediction_set_level')})", "{{method}} at {{coverage}}: promised"),
        ], unit="percentunit",
              description="Share of the fleet's labelled rows whose label was in their prediction set (recomputed from "
                          "the logged logits at each promised level), with the top of its 90% band. The alert fires "
                          "when the band's top is under the promise: the traffic no longer looks like the calibration "
                          "rows."),
        Panel("Served prediction-set size (label-free)", [
            (f"sum by ({by}) (rate({sel('candor_prediction_set_size_sum')}{RATE})) / "
             f"sum by ({by}) (rate({sel('candor_prediction_set_size_count')}{RATE}))", "{{method}} at {{coverage}}: mean"),
            (f"histogram_quantile(0.9, sum by ({by}, le) (rate({sel('candor_prediction_set_size_bucket')}{RATE})))",
             "{{method}} at {{coverage}}: p90"),
        ], unit="suffix: classes",
              description="Classes per served set, per method and level asked. Growing sets are the model saying it is "
                          "less sure, with no labels needed."),
    ]  # fmt: skip


def label_shift() -> list[Panel]:
    return [
        Panel("Class mix: mean posterior (fleet, 1h) vs assumed priors", [
            (sel("candor:mean_posterior:fleet_1h"), "{{class_name}}: mean posterior"),
            (sel("candor:reference_prior:fleet"), "{{class_name}}: assumed"),
        ], unit="percentunit",
              description="Each class's calibrated probability averaged over the fleet's predictions of the last hour "
                          "(EM's first step: summed posteriors over rows, exact across pods), beside the priors the "
                          "version's posteriors assume. A class whose mean moves away from its prior is a change in the "
                          "class mix, visible before any label arrives."),
        Panel("Label shift: EM estimate from the prediction log", [
            (f"max by (class_name) ({sel('candor_label_shift_prior')})", "{{class_name}}: EM prior"),
            (f"min by (model, version) ({sel('candor_label_shift_total_variation')})", "total variation from assumed"),
        ], unit="percentunit",
              description="The store-side EM estimate of the class priors on the fleet's logged window (drift window's span "
                          "and rows) and its total-variation distance from the assumed priors. The alert fires when the "
                          "test of no shift is significant (p < 0.01) and the distance exceeds 0.1; "
                          "`candor recalibrate --method label-shift` then corrects the calibrator."),
    ]  # fmt: skip


def models() -> list[Panel]:
    return [
        Panel("Model versions and provider", [(sel("candor_model_info"), "")], kind="table", instant=True, fmt="table",
              extra={"transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True,
                                                                                         "__name__": True}}}]}),
        Panel("Ready", [(sel("candor_model_ready"), "v{{version}}")], kind="stat", width=6,
              steps=[(None, "red"), (1, "green")]),
        Panel("Load failures (last hour)", [('sum by (model) (increase(candor_model_load_failures_total{model=~"$model"}[1h]))',
                                             "{{model}}")], kind="stat", width=6, steps=[(None, "green"), (1, "red")]),
        Panel("Serving or idle (rows in the fleet's last 15 minutes)", [(sel("candor:predicted_rows:fleet_15m"), "v{{version}}")],
              kind="stat", width=24, height=4, steps=[(None, "text"), (1, "green")],
              extra={"fieldConfig": {"mappings": [{"type": "value", "options": {"0": {"text": "idle"}}}]}},
              description="A version with no row in the last 15 minutes is idle: its 1h drift and 1d feedback signals "
                          "describe traffic that stopped, and its calibration alerts stay quiet "
                          "(GetCalibration's idle says the same)."),
        Panel("Alerts (pending and firing)", [('ALERTS{alertname=~"Candor.*"}', "")], kind="table", instant=True, fmt="table",
              width=24, extra={"transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True,
                                                                                                    "__name__": True}}}]}),
    ]  # fmt: skip


SECTIONS = [("Traffic", traffic), ("Confidence and drift", drift), ("Calibration from feedback", calibration),
            ("Prediction sets", prediction_sets), ("Class mix and label shift", label_shift),
            ("Models and alerts", models)]  # fmt: skip


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict:
    defaults: dict = {"unit": p.unit}
    if p.steps:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in p.steps]}
        if p.kind == "timeseries":
            defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    extra = dict(p.extra)
    for key, value in extra.pop("fieldConfig", {}).items():
        defaults[key] = {**defaults.get(key, {}), **value} if isinstance(value, dict) else value
    targets = [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto",
         "instant": p.instant, "range": not p.instant, "format": p.fmt}
        for i, (expr, legend) in enumerate(p.targets)
    ]  # fmt: skip
    return {"id": pid, "type": p.kind, "title": p.title, "description": p.description, "datasource": DATASOURCE,
            "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y}, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": extra.pop("options", {}), **extra}  # fmt: skip


def _variable(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "definition": query,
            "query": {"query": query, "refId": name}, "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 3, "hide": 0}  # fmt: skip


def dashboard() -> dict:
    panels, pid, y = [], 1, 0
    for title, section in SECTIONS:
        panels.append({"id": pid, "type": "row", "title": title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})  # fmt: skip
        pid, y, x, row_height = pid + 1, y + 1, 0, 0
        for p in section():
            if x + p.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(p, pid, x, y))
            pid, x, row_height = pid + 1, x + p.width, max(row_height, p.height)
        y += row_height
    datasource = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "hide": 0,
                  "current": {"selected": False, "text": "Prometheus", "value": "prometheus"}}  # fmt: skip
    return {
        "uid": DASHBOARD_UID, "title": "Candor: calibration and serving", "tags": ["candor", "calibration"],
        "description": "Traffic, latency, batching, confidence drift and live calibration of Candor model versions.",
        "editable": True, "graphTooltip": 1, "refresh": "10s", "schemaVersion": 39, "version": 1, "timezone": "browser",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [datasource, _variable("model", "Model", "label_values(candor_model_ready, model)"),
                                _variable("version", "Version", 'label_values(candor_model_ready{model=~"$model"}, version)')]},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                                  "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                                  "type": "dashboard"}]},
        "panels": panels,
    }  # fmt: skip


def _yaml(doc: dict, source: str) -> str:
    header = f"# Generated by deploy/render.py from {source}; edit the source and run `make deploy-files`.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=120)


def outputs(root: Path = ROOT) -> dict[Path, str]:
    board = json.dumps(dashboard(), indent=2) + "\n"
    groups = [g for name in ("recording.yml", "alerts.yml")
              for g in yaml.safe_load((root / "deploy/prometheus" / name).read_text(encoding="utf-8"))["groups"]]  # fmt: skip
    labels = {"app.kubernetes.io/name": "candor", "app.kubernetes.io/part-of": "candor"}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "candor-grafana-dashboard", "labels": {**labels, "grafana_dashboard": "1"}},
                 "data": {"candor.json": board}}  # fmt: skip
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "candor-calibration", "labels": {**labels, "release": "prometheus"}},
            "spec": {"groups": groups}}  # fmt: skip
    return {
        root / "deploy/grafana/dashboards/candor.json": board,
        root / "deploy/k8s/base/generated/grafana-dashboard.yaml": _yaml(configmap, "deploy/render.py (the dashboard)"),
        root / "deploy/k8s/base/generated/prometheusrule.yaml": _yaml(rule, "deploy/prometheus/recording.yml and alerts.yml"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a rendered file differs")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    a = parser.parse_args(argv)
    stale = []
    for path, text in outputs(a.root).items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not a.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if a.check else 'wrote'}: {path.relative_to(a.root)}")
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
