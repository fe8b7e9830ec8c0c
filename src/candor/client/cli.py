"""Client verbs of the ``candor`` command: predict, feedback, calibration, recalibrate, simulate, models, health."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import sys
from pathlib import Path

import numpy as np


def read_rows(source: str) -> np.ndarray:
    """Rows from a .npy file, a .csv file, or CSV text on stdin ("-"); a
    non-numeric first line is taken for a header and skipped."""
    if source.endswith(".npy"):
        try:
            rows = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{source}: not a readable .npy file ({e})") from e
    else:
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{source}: cannot read ({e})") from e
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            try:
                [float(v) for v in lines[0].split(",")]
            except ValueError:
                lines = lines[1:]
        try:
            rows = np.loadtxt(io.StringIO("\n".join(lines)), delimiter=",", ndmin=2, dtype=np.float32)
        except ValueError as e:
            raise ValueError(f"{source}: rows must be comma-separated numbers ({e})") from e
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2 or rows.size == 0:
        raise ValueError(f"{source}: expected rows [N, F] with at least one row, got shape {rows.shape}")
    return rows


def _client(a: argparse.Namespace):
    from candor.client import Client

    def read(path):
        return Path(path).read_bytes() if path else None

    return Client(a.target, timeout=a.timeout, token=a.token, tls=a.tls, root_certificates=read(a.ca_cert),
                  certificate_chain=read(a.client_cert), private_key=read(a.client_key))  # fmt: skip


def cmd_predict(a: argparse.Namespace) -> int:
    rows = read_rows(a.input)
    with _client(a) as client:
        r = client.predict(rows, model=a.model, version=a.version, top_k=a.top_k, return_logits=a.logits)
    if a.json:
        out = []
        for i in range(len(rows)):
            row = {"prediction_id": r.prediction_ids[i], "labels": r.labels[i], "confidence": float(r.confidences[i])}
            row |= {"top_k_probabilities": r.top_k_probabilities[i].tolist(), "probabilities": r.probabilities[i].tolist()}
            if r.logits is not None:
                row["logits"] = r.logits[i].tolist()
            out.append(row)
        print(json.dumps({"model": r.model, "version": r.version, "predictions": out}, indent=2))
        return 0
    print(f"{r.model} v{r.version}: {len(rows)} row(s)")
    print(f"{'row':>4}  {'prediction id':32}  {'confidence':>10}  top labels")
    for i in range(len(rows)):
        tops = ", ".join(f"{name} ({p:.3f})" for name, p in zip(r.labels[i], r.top_k_probabilities[i], strict=True))
        print(f"{i:>4}  {r.prediction_ids[i]:32}  {r.confidences[i]:>10.4f}  {tops}")
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    with _client(a) as client:
        models = client.models()
    if a.json:
        print(json.dumps([m.__dict__ for m in models], indent=2))
        return 0
    print(f"{'model':16} {'version':>7}  {'state':8} {'provider':24} {'T':>8} {'smoothing':>16} {'test ECE':>9}")
    for m in models:
        t = ",".join(f"{v:.3f}" for v in m.temperature) or "-"
        smoothing = f"{m.smoothing} {m.epsilon:g}" if m.smoothing else "-"
        print(f"{m.name:16} {m.version:>7}  {m.state:8} {m.provider or '-':24} {t:>8} {smoothing:>16} {m.test_ece:>9.4f}"
              + (f"  {m.message}" if m.message else ""))  # fmt: skip
    return 0


def cmd_health(a: argparse.Namespace) -> int:
    with _client(a) as client:
        status = client.health(a.model or "")
    print(f"{a.model or 'server'}: {status}")
    return 0 if status == "SERVING" else 1


def cmd_simulate(a: argparse.Namespace) -> int:
    import signal
    import threading

    from candor.client.simulate import SimulationPlan, load_labelled_rows, simulate, wait_until_serving

    plan = SimulationPlan(rate=a.rate, rows_per_request=a.rows_per_request, feedback_share=a.feedback_share,
                          feedback_delay_s=a.feedback_delay, drift_after_s=None if a.drift_after < 0 else a.drift_after,
                          drift_noise=a.drift_noise, duration_s=a.duration, report_every_s=a.report_every,
                          seed=a.seed).check()  # fmt: skip
    X, y = load_labelled_rows(a.data)
    stop = threading.Event()
    # In a container the simulator is PID 1, where SIGTERM has no default action: stop cleanly instead.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = lambda line: print(line, flush=True)  # noqa: E731
    with _client(a) as client:
        wait_until_serving(client, a.model, a.wait)  # TimeoutError: one line, exit 1 (candor.cli)
        log(f"simulating traffic for {a.model} at {a.target} from {len(X)} rows of {a.data}")
        simulate(client, a.model, X, y, plan, stop=stop, log=log)
    return 0


def read_feedback(source: str) -> tuple[list[str], list[int]]:
    """CSV rows of prediction_id,label (a header line is skipped), from a file or stdin ("-")."""
    import csv

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{source}: cannot read ({e})") from e
    ids, labels = [], []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (n == 1 and row[-1].strip().lower() == "label"):
            continue
        if len(row) != 2:
            raise ValueError(f"{source}: line {n}: expected prediction_id,label, got {len(row)} fields")
        try:
            labels.append(int(row[1]))
        except ValueError:
            raise ValueError(f"{source}: line {n}: label must be a whole number, got {row[1]!r}") from None
        ids.append(row[0].strip())
    if not ids:
        raise ValueError(f"{source}: no feedback rows (expected prediction_id,label lines)")
    return ids, labels


def cmd_feedback(a: argparse.Namespace) -> int:
    ids, labels = read_feedback(a.input)
    with _client(a) as client:
        result = client.feedback(ids, labels, model=a.model)
    print(f"accepted {result.accepted}, duplicate {result.duplicate}, unknown id {result.unknown_id}, expired {result.expired}")
    for pid, outcome in zip(ids, result.outcomes, strict=True):
        if outcome != "ACCEPTED":
            print(f"  {pid}: {outcome}")
    return 0


def cmd_calibration(a: argparse.Namespace) -> int:
    with _client(a) as client:
        report = client.calibration(a.model, a.version)
    if a.json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
        return 0
    ref = report.reference
    print(f"{report.model} v{report.version}, {report.calibration_method} calibrator, temperature {report.temperature}")
    print(f"reference: {ref.source}")
    print(f"  accuracy {ref.accuracy:.4f}, ECE {_with_interval(ref.ece, ref.ece_interval)}, "
          f"mean confidence {ref.mean_confidence:.4f}")  # fmt: skip
    d = report.drift
    if d is None:
        print("drift: no predictions in the window yet")
    else:
        print(f"drift over {d.rows} rows: confidence PSI {d.confidence_psi:.4f} ({d.confidence_state}), "
              f"JS {d.confidence_js_distance:.4f}, prediction PSI {d.prediction_psi:.4f} ({d.prediction_state}), "
              f"expected accuracy {d.expected_accuracy:.4f} (gap {d.expected_accuracy_gap:+.4f}), "
              f"mean entropy {d.mean_entropy:.4f}")  # fmt: skip
    o = report.observed
    if o is None:
        print("feedback: none joined yet")
        return 0
    print(f"feedback over {o.rows} rows: accuracy {o.accuracy:.4f}, ECE {_with_interval(o.ece, o.ece_interval)}, "
          f"debiased RMS ECE {o.debiased_rms_ece:.4f}, NLL {o.nll:.4f}, Brier {o.brier:.4f}, "
          f"expected - observed accuracy {_with_interval(o.accuracy_gap, o.accuracy_gap_interval, '+.4f')}")  # fmt: skip
    print(INTERVAL_NOTE)
    print(f"\n{'bin (upper edge)':>16} {'rows':>6} {'confidence':>10} {'accuracy':>9}")
    for b in o.reliability:
        if b.count:
            print(f"{b.upper_edge:>16.3f} {b.count:>6} {b.confidence:>10.4f} {b.accuracy:>9.4f}")
    if a.plot:
        plot_live_reliability(report, Path(a.plot))
        print(f"\nWrote {a.plot}")
    return 0


INTERVAL_NOTE = "[low, high]: 90% bootstrap interval (1,000 resamples of the rows, seed 0)"


def _with_interval(value: float, interval: tuple[float, float] | None, fmt: str = ".4f") -> str:
    return f"{value:{fmt}}" + ("" if interval is None else f" [{interval[0]:{fmt}}, {interval[1]:{fmt}}]")


def _when(text: str) -> float:
    """--since: unix seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected unix seconds or an ISO 8601 time, got {text!r}") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def cmd_recalibrate(a: argparse.Namespace) -> int:
    with _client(a) as client:
        r = client.recalibrate(a.model, a.version, holdout_share=a.holdout_share, min_rows=a.min_rows, dry_run=a.dry_run,
                               method=a.method, since=a.since, newest_rows=a.newest_rows,
                               include_client_recorded=a.include_client_recorded)  # fmt: skip
    if a.json:
        print(json.dumps(dataclasses.asdict(r), indent=2))
        return 0
    mix = ", ".join(str(n) for n in r.label_counts)
    print(f"window: {r.fit_rows + r.holdout_rows} rows received {_utc(r.window[0])} .. {_utc(r.window[1])}; "
          f"labels per class [{mix}]" + (f"; {r.rows_without_logits} rows without logits left out" if r.rows_without_logits
                                          else "")
          + ("; client-recorded rows included" if r.included_client_recorded else ""))  # fmt: skip
    print(f"{r.method} fitted on {r.fit_rows} rows (T {r.old_temperature:.4f} -> {r.new_temperature:.4f})"
          + (f"; {r.selected_by}" if r.selected_by else ""))  # fmt: skip
    gain = r.nll_improvement
    print(f"held out {r.holdout_rows}: NLL {r.holdout_nll_before:.4f} -> {r.holdout_nll_after:.4f} "
          f"(decrease {gain[0]:.4f} [{gain[1]:.4f}, {gain[2]:.4f}], 90% paired bootstrap), "
          f"ECE {r.holdout_ece_before:.4f} -> {r.holdout_ece_after:.4f}")
    if r.validation_nll != (0.0, 0.0):
        print(f"on the version's own validation rows: NLL {r.validation_nll[0]:.4f} -> {r.validation_nll[1]:.4f}")
    print(r.message)
    return 0


def plot_live_reliability(report, path: Path) -> None:
    """Live reliability diagram beside the reference confidence histogram (matplotlib, imported only here)."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in report.observed.reliability if b.count]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    width = 1 / len(report.observed.reliability)
    left.bar(
        [b.upper_edge - width / 2 for b in bins],
        [b.accuracy for b in bins],
        width=width,
        edgecolor="black",
        label="accuracy",
    )
    left.plot(
        [b.upper_edge - width / 2 for b in bins],
        [b.confidence for b in bins],
        "D",
        color="#dd8452",
        label="mean confidence",
    )
    left.plot([0, 1], [0, 1], "k--", linewidth=1)
    left.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
             title=f"live: ECE {report.observed.ece:.4f} on {report.observed.rows} rows")  # fmt: skip
    left.legend(loc="upper left", fontsize=8)
    hist = report.reference.confidence_histogram
    right.bar([(i + 0.5) / len(hist) for i in range(len(hist))], hist, width=1 / len(hist), color="#55a868")
    right.set(xlim=(0, 1), xlabel="confidence", ylabel="share of rows",
              title=f"reference confidence histogram (ECE {report.reference.ece:.4f})")  # fmt: skip
    for b in bins:  # each bar's row count, so that a bin of 2 rows is not read like one of 200
        left.annotate(str(b.count), (b.upper_edge - width / 2, b.accuracy), ha="center", va="bottom", fontsize=7)
    fig.suptitle(f"{report.model} v{report.version}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="127.0.0.1:8001", help="server address host:port (default: 127.0.0.1:8001)")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline per call in seconds (default: 10)")
    p.add_argument("--token", help="bearer token sent as 'authorization: Bearer ...'")
    p.add_argument("--tls", action="store_true", help="connect with TLS using the system's root certificates")
    p.add_argument("--ca-cert", help="PEM file of the CA that signed the server's certificate (implies --tls)")
    p.add_argument("--client-cert", help="PEM client certificate for mutual TLS")
    p.add_argument("--client-key", help="PEM private key of --client-cert")


def _model_args(p: argparse.ArgumentParser, version: bool = True) -> None:
    """Connection flags plus the model (and version) a verb acts on."""
    _connection_args(p)
    p.add_argument("--model", required=True, help="model name")
    if version:
        p.add_argument("--version", help="model version (default: the newest ready one)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="send rows to a server and print calibrated predictions")
    _model_args(p)
    p.add_argument("--input", default="-", help="rows as .npy, .csv, or CSV on stdin with '-' (default: -)")
    p.add_argument("--top-k", type=int, default=3, help="top labels per row (default: 3)")
    p.add_argument("--logits", action="store_true", help="also return raw logits (with --json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("feedback", help="send true labels for earlier predictions (CSV prediction_id,label)")
    _model_args(p, version=False)
    p.add_argument("--input", default="-", help="CSV of prediction_id,label lines, or '-' for stdin (default: -)")
    p.set_defaults(handler=cmd_feedback)

    p = sub.add_parser("calibration", help="print a model version's live calibration: drift and feedback signals")
    _model_args(p)
    p.add_argument("--plot", help="also draw the live reliability diagram next to the reference to this PNG")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=cmd_calibration)

    p = sub.add_parser("recalibrate", help="refit a version's calibrator on a window of its feedback; publish it when "
                                           "held-out NLL improves significantly")  # fmt: skip
    _model_args(p)
    p.add_argument("--holdout-share", type=float, default=0.3, help="feedback share held out to verify (default: 0.3)")
    p.add_argument("--min-rows", type=int, default=100, help="fewest feedback rows to act on (default: 100)")
    p.add_argument("--dry-run", action="store_true", help="fit and report, publish nothing")
    p.add_argument("--method", default="temperature",
                   help="temperature, vector, matrix, dirichlet or auto (default: temperature)")  # fmt: skip
    p.add_argument("--since", type=_when, default=0.0,
                   help="fit on feedback received at or after this time: unix seconds or ISO 8601 "
                        "(default: the server's feedback window)")  # fmt: skip
    p.add_argument("--newest-rows", type=int, default=0, help="fit on at most the newest this many rows (default: the "
                                                                 "server's --feedback-window-rows)")  # fmt: skip
    p.add_argument("--include-client-recorded", action="store_true",
                   help="also fit on feedback that carried its own probabilities or logits (any Feedback caller can "
                        "write such rows: only for records you trust)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=cmd_recalibrate)

    p = sub.add_parser("simulate", help="send Predict and Feedback traffic from labelled rows, drifting after a while",
                       description="Predict rows drawn from a labelled .npz (X, y; `candor split` writes one), send their "
                                   "true labels back as feedback after a delay, and after --drift-after seconds add "
                                   "noise to the inputs, so that drift and calibration alerts have a cause.")  # fmt: skip
    _model_args(p, version=False)
    p.add_argument("--data", required=True, help=".npz file with X [N, F] rows and y [N] class indices")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second; 0 means back to back (default: 20)")
    p.add_argument("--rows-per-request", type=int, default=8, help="rows in each Predict (default: 8)")
    p.add_argument("--feedback-share", type=float, default=1.0, help="share of rows whose label is sent back (default: 1)")
    p.add_argument("--feedback-delay", type=float, default=5.0, help="seconds before a row's label is sent (default: 5)")
    p.add_argument("--drift-after", type=float, default=300.0, help="seconds before drift starts; negative: never (default: 300)")
    p.add_argument("--drift-noise", type=float, default=1.0,
                   help="drift noise standard deviation in units of the data's standard deviation (default: 1)")  # fmt: skip
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 runs until stopped (default: 0)")
    p.add_argument("--report-every", type=float, default=30.0, help="seconds between progress lines (default: 30)")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the model to be SERVING (default: 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of row choice, feedback and noise (default: 0)")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("models", help="list the model versions a server knows")
    _connection_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("health", help="ask a server (or one model) whether it is SERVING; exit 0 if so")
    _connection_args(p)
    p.add_argument("--model", help="a model name; default: the server as a whole")
    p.set_defaults(handler=cmd_health)
