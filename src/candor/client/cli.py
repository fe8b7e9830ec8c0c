"""Client verbs of the ``candor`` command: predict, feedback, calibration, recalibrate, simulate, models, health."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from candor.flags import add_input, add_json, add_renamed, add_seconds, version_number


def read_rows(source: str) -> np.ndarray:
    """Rows from a .npy file, an .npz file (its array X, as `candor split` writes), a .csv file, or CSV
    text on stdin ("-"); a non-numeric first line is taken for a header and skipped."""
    if source.endswith(".npy"):
        try:
            rows = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{source}: not a readable .npy file ({e})") from e
    elif source.endswith(".npz"):
        try:
            with np.load(source, allow_pickle=False) as archive:
                if "X" not in archive.files:
                    raise ValueError(f"{source}: expected an array X of rows [N, F], found {sorted(archive.files)}")
                rows = archive["X"]
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{source}: not a readable .npz file ({e})") from e
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


TOKEN_ENV = "CANDOR_TOKEN"


def bearer_token(a: argparse.Namespace) -> str | None:
    """--token, else --token-file, else $CANDOR_TOKEN: the last two keep the token out of `ps` and shell history."""
    if a.token and a.token_file:
        raise ValueError("give --token or --token-file, not both")
    if a.token_file:
        try:
            token = Path(a.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--token-file {a.token_file}: cannot read ({e})") from e
        if not token or any(c.isspace() for c in token):
            raise ValueError(f"--token-file {a.token_file}: expected one token on one line")
        return token
    return a.token or os.environ.get(TOKEN_ENV) or None


def _client(a: argparse.Namespace):
    from candor.client import Client

    def read(path):
        return Path(path).read_bytes() if path else None

    return Client(a.target, timeout=a.timeout, token=bearer_token(a), tls=a.tls, root_certificates=read(a.ca_cert),
                  certificate_chain=read(a.client_cert), private_key=read(a.client_key))  # fmt: skip


def hint_if_waiting_on_a_terminal(source: str, what: str) -> None:
    """Reading stdin from a terminal waits for typing: say so, rather than seem to hang."""
    if source == "-" and sys.stdin.isatty():
        print(f"reading {what} from stdin (type them, then Ctrl-D; or pass --input FILE)", file=sys.stderr, flush=True)


def cmd_predict(a: argparse.Namespace) -> int:
    hint_if_waiting_on_a_terminal(a.input, "rows as CSV")
    rows = read_rows(a.input)
    with _client(a) as client:
        r = client.predict(rows, model=a.model, version=a.version, top_k=a.top_k, return_logits=a.logits,
                           coverage=a.coverage, conformal_method=a.conformal_method)  # fmt: skip
    with_sets = r.set_sizes is not None
    if a.json:
        out = []
        for i in range(len(rows)):
            row = {"prediction_id": r.prediction_ids[i], "labels": r.labels[i], "confidence": float(r.confidences[i])}
            row |= {"top_k_probabilities": r.top_k_probabilities[i].tolist(), "probabilities": r.probabilities[i].tolist()}
            if r.logits is not None:
                row["logits"] = r.logits[i].tolist()
            if with_sets:
                row |= {"prediction_set": r.sets[i], "prediction_set_labels": r.set_labels[i]}
            out.append(row)
        answer = {"model": r.model, "version": r.version, "predictions": out}
        if with_sets:
            answer |= {"coverage": r.coverage, "conformal_method": r.conformal_method}
        print(json.dumps(answer, indent=2))
        return 0
    sets_note = f"; prediction sets at coverage {r.coverage:g} ({r.conformal_method})" if with_sets else ""
    print(f"{r.model} v{r.version}: {len(rows)} row(s){sets_note}")
    print(f"{'row':>4}  {'prediction id':32}  {'confidence':>10}  top labels" + ("  |  prediction set" if with_sets else ""))
    for i in range(len(rows)):
        tops = ", ".join(f"{name} ({p:.3f})" for name, p in zip(r.labels[i], r.top_k_probabilities[i], strict=True))
        chosen = ("  |  {" + ", ".join(r.set_labels[i]) + "}") if with_sets else ""
        print(f"{i:>4}  {r.prediction_ids[i]:32}  {r.confidences[i]:>10.4f}  {tops}{chosen}")
    return 0


def temperatures(values: list[float]) -> str:
    """One temperature as 0.5643; per-class ones as "per class 0.412..1.873 (K=10)"."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"per class {min(values):.3f}..{max(values):.3f} (K={len(values)})"


def table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Columns as wide as their widest cell, so long names and per-class cells never shift the others."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))  # noqa: E731
    return [fmt(header).rstrip(), *(fmt(r).rstrip() for r in rows)]


def cmd_models(a: argparse.Namespace) -> int:
    with _client(a) as client:
        models = client.models()
    if a.json:
        print(json.dumps([dataclasses.asdict(m) for m in models], indent=2))
        return 0
    rows = [[m.name, m.version, m.state, m.task or "-", m.provider or "-", temperatures(m.temperature),
             f"{m.smoothing} {m.epsilon:g}" if m.smoothing else "-", f"{m.test_ece:.4f}" if m.state == "READY" else "-",
             m.message] for m in models]  # fmt: skip
    header = ["model", "version", "state", "task", "provider", "temperature", "smoothing", "test ECE", "message"]
    print("\n".join(table(header, rows, right={1, 7})))
    return 0


def cmd_health(a: argparse.Namespace) -> int:
    from candor.client import NotFound

    service = a.model or ""
    with _client(a) as client:
        try:
            status = client.health(service)
        except NotFound:
            # The health service answers an unknown name with NOT_FOUND and no message: say what it knows.
            known = sorted({m.name for m in client.models()})
            raise ValueError(f"the server has no model {service!r}; it serves {', '.join(known) or 'no models'}") from None
    if a.json:
        print(json.dumps({"service": service or "server", "status": status}))
    else:
        print(f"{a.model or 'server'}: {status}")
    return 0 if status == "SERVING" else 1


def cmd_simulate(a: argparse.Namespace) -> int:
    import signal
    import threading

    from candor.client.simulate import SimulationPlan, load_labelled_rows, simulate, wait_until_serving

    plan = SimulationPlan(rate=a.rate, rows_per_request=a.rows_per_request, feedback_share=a.feedback_share,
                          feedback_delay_s=a.feedback_delay, drift_after_s=None if a.drift_after < 0 else a.drift_after,
                          drift_noise=a.drift_noise, duration_s=a.duration, report_every_s=a.report_every,
                          seed=a.seed, coverage=a.coverage).check()  # fmt: skip
    if a.input is None:
        raise ValueError("no labelled rows given: name the .npz file (X, y), e.g. `candor simulate rows.npz --model digits`")
    X, y = load_labelled_rows(a.input)
    stop = threading.Event()
    # In a container the simulator is PID 1, where SIGTERM has no default action: stop cleanly instead.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = lambda line: print(line, flush=True)  # noqa: E731
    with _client(a) as client:
        wait_until_serving(client, a.model, a.wait)  # TimeoutError: one line, exit 1 (candor.cli)
        log(f"simulating traffic for {a.model} at {a.target} from {len(X)} rows of {a.input}")
        simulate(client, a.model, X, y, plan, stop=stop, log=log)
    return 0


def read_feedback(source: str) -> tuple[list[str], list[str]]:
    """CSV rows of prediction_id,label (a header line is skipped), from a file or stdin ("-"); labels as
    written (class names or indices: :func:`class_indices` resolves them)."""
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
        labels.append(row[1].strip())
        ids.append(row[0].strip())
    if not ids:
        raise ValueError(f"{source}: no feedback rows (expected prediction_id,label lines)")
    return ids, labels


def class_indices(labels: list[str], class_names: list[str], source: str) -> list[int]:
    """Each label as a class index: a class name as `candor predict` prints it, else a whole-number index.
    A name wins over an index, so that names which are numbers ("0".."9" of digits) mean themselves."""
    by_name = {name: i for i, name in enumerate(class_names)}
    out = []
    for n, label in enumerate(labels, start=1):
        if label in by_name:
            out.append(by_name[label])
        elif label.isascii() and label.isdigit() and int(label) < len(class_names):
            out.append(int(label))
        else:
            shown = ", ".join(class_names[:12]) + (", ..." if len(class_names) > 12 else "")
            raise ValueError(f"{source}: row {n}: label {label!r} is neither a class name ({shown}) nor an index "
                             f"0..{len(class_names) - 1}")  # fmt: skip
    return out


FEEDBACK_MEANING = {"DUPLICATE": "already labelled, kept the first label", "UNKNOWN_ID": "no such prediction id",
                    "EXPIRED": "prediction older than the server's --prediction-ttl"}  # fmt: skip


def cmd_feedback(a: argparse.Namespace) -> int:
    hint_if_waiting_on_a_terminal(a.input, "prediction_id,label lines")
    ids, raw = read_feedback(a.input)
    with _client(a) as client:
        labels = class_indices(raw, client.model(a.model).class_names, a.input)
        result = client.feedback(ids, labels, model=a.model)
    refused: dict[str, list[str]] = {}
    for pid, outcome in zip(ids, result.outcomes, strict=True):
        if outcome != "ACCEPTED":
            refused.setdefault(outcome, []).append(pid)
    if a.json:
        print(json.dumps({"accepted": result.accepted, "duplicate": result.duplicate, "unknown_id": result.unknown_id,
                          "expired": result.expired, "refused": refused}, indent=2))  # fmt: skip
    else:
        print(f"accepted {result.accepted}, duplicate {result.duplicate}, unknown id {result.unknown_id}, "
              f"expired {result.expired}")  # fmt: skip
        for outcome, pids in refused.items():  # one line per outcome, not per row
            examples = ", ".join(pids[:3]) + (", ..." if len(pids) > 3 else "")
            print(f"  {outcome} ({FEEDBACK_MEANING.get(outcome, outcome)}): {len(pids)} item(s), e.g. {examples}")
    if result.accepted == 0:
        print(f"candor feedback: none of the {len(ids)} item(s) was accepted", file=sys.stderr)
        return 1
    return 0


def cmd_calibration(a: argparse.Namespace) -> int:
    with _client(a) as client:
        report = client.calibration(a.model, a.version)
        names = client.model(a.model, report.version).class_names if report.prior_shift is not None else []
    if a.json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
        return 0
    ref = report.reference
    print(f"{report.model} v{report.version}, {report.calibration_method} calibrator, "
          f"temperature {temperatures(report.temperature)}")  # fmt: skip
    if report.idle:
        since = ("no request logged yet" if report.last_prediction_at is None else
                 f"last request at {_utc(report.last_prediction_at)}")
        print(f"idle: {since}; the signals below describe traffic that stopped, and its alerts stay quiet")
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
    if report.prior_shift is None:
        print(f"class priors: no estimate ({report.prior_shift_reason})")
    else:
        print_prior_shift(report.prior_shift, names, ref.class_frequencies)
    o = report.observed
    if o is None:
        print("feedback: none joined yet")
        return 0
    print(f"feedback over {o.rows} rows: accuracy {o.accuracy:.4f}, ECE {_with_interval(o.ece, o.ece_interval)}, "
          f"debiased RMS ECE {o.debiased_rms_ece:.4f}, NLL {o.nll:.4f}, Brier {o.brier:.4f}, "
          f"expected - observed accuracy {_with_interval(o.accuracy_gap, o.accuracy_gap_interval, '+.4f')}")  # fmt: skip
    for c in o.set_coverage:
        print(f"prediction sets {c.method} at {c.coverage:g}: covered {_with_interval(c.covered, c.interval)} "
              f"(90% Clopper-Pearson) of {c.rows} rows, mean size {c.mean_size:.2f}")  # fmt: skip
    print(INTERVAL_NOTE)
    print(f"\n{'bin (upper edge)':>16} {'rows':>6} {'confidence':>10} {'accuracy':>9}")
    for b in o.reliability:
        if b.count:
            print(f"{b.upper_edge:>16.3f} {b.count:>6} {b.confidence:>10.4f} {b.accuracy:>9.4f}")
    if a.plot:
        plot_live_reliability(report, Path(a.plot))
        print(f"\nWrote {a.plot}")
    return 0


def print_prior_shift(p, names: list[str], reference_mix: list[float] | None = None) -> None:
    """The EM estimate beside the priors the version assumes (and its reference's predicted-class mix)."""
    state = f"converged in {p.em_iterations} iterations" if p.converged else f"NOT converged after {p.em_iterations} iterations"
    observed = (f"; observed on {p.labelled_rows} labelled rows of the window {p.observed_accuracy:.4f}"
                if p.observed_accuracy is not None else "; no labels for the window yet")  # fmt: skip
    e, lo, hi = p.expected_accuracy
    print(f"class priors over {p.rows} logged rows ({_utc(p.window[0])} .. {_utc(p.window[1])}), EM {state}: "
          f"no-shift test p = {p.p_value:.3g} (LR {p.log_likelihood_ratio:.2f}), total variation {p.total_variation:.4f}; "
          f"label-free accuracy {e:.4f} [{lo:.4f}, {hi:.4f}]{observed}")  # fmt: skip
    print(f"  {'class':>12} {'estimated':>9} {'90% interval':>17} {'assumed':>8} {'training':>8}"
          + (f" {'ref. predicted':>14}" if reference_mix else ""))  # fmt: skip
    for i, (est, (low, high), assumed, train) in enumerate(zip(p.priors, p.interval, p.assumed_priors, p.training_priors,
                                                                strict=True)):  # fmt: skip
        name = names[i] if i < len(names) else str(i)
        print(f"  {name:>12} {est:>9.4f} [{low:.4f}, {high:.4f}] {assumed:>8.4f} {train:>8.4f}"
              + (f" {reference_mix[i]:>14.4f}" if reference_mix else ""))  # fmt: skip


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


def _coverage(text: str) -> float:
    """--coverage: a level in (0, 1); whether the version's split supports it is the server's to say."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a coverage level in (0, 1), e.g. 0.9, got {text!r}")
    return value


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def cmd_recalibrate(a: argparse.Namespace) -> int:
    with _client(a) as client:
        r = client.recalibrate(a.model, a.version, holdout_share=a.holdout_share, min_rows=a.min_rows, dry_run=a.dry_run,
                               method=a.method.replace("-", "_"), since=a.since, newest_rows=a.newest_rows,
                               include_client_recorded=a.include_client_recorded)  # fmt: skip
        names = client.model(a.model, a.version).class_names if r.prior_shift is not None else []
    if a.json:
        print(json.dumps(dataclasses.asdict(r), indent=2))
        return 0
    if r.prior_shift is not None:  # --method label-shift: the unlabeled window's priors, not feedback
        print_prior_shift(r.prior_shift, names)
        print(r.message)
        return 0
    mix = ", ".join(str(n) for n in r.label_counts)
    print(f"window: {r.fit_rows + r.holdout_rows} rows received {_utc(r.window[0])} .. {_utc(r.window[1])}; "
          f"labels per class [{mix}]" + (f"; {r.rows_without_logits} rows without logits left out" if r.rows_without_logits
                                          else "")
          + ("; client-recorded rows included" if r.included_client_recorded else ""))  # fmt: skip
    if r.coverage_target:  # --method conformal: coverage, not NLL, decides
        (b, bl, bh), (a_, al, ah) = r.holdout_coverage_before, r.holdout_coverage_after
        print(f"conformal scores from {r.fit_rows} rows; held out {r.holdout_rows}: coverage at {r.coverage_target:g} "
              f"{b:.4f} [{bl:.4f}, {bh:.4f}] -> {a_:.4f} [{al:.4f}, {ah:.4f}] (90% Clopper-Pearson)")  # fmt: skip
        print(r.message)
        return 0
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
    p.add_argument("--target", default="127.0.0.1:8001",
                   help="server address host[:port]; the port defaults to 8001 (default: 127.0.0.1:8001)")  # fmt: skip
    add_seconds(p, "timeout", "timeout", 10.0, "deadline per call", old="--timeout")
    p.add_argument("--token", help=f"bearer token sent as 'authorization: Bearer ...' (visible in `ps`: prefer "
                                   f"--token-file or ${TOKEN_ENV})")  # fmt: skip
    p.add_argument("--token-file", help=f"file holding the bearer token (default: ${TOKEN_ENV} when set)")
    p.add_argument("--tls", action="store_true", help="connect with TLS using the system's root certificates")
    p.add_argument("--ca-cert", help="PEM file of the CA that signed the server's certificate (implies --tls)")
    p.add_argument("--client-cert", help="PEM client certificate for mutual TLS")
    p.add_argument("--client-key", help="PEM private key of --client-cert")


def add_coverage(p: argparse.ArgumentParser, default: float | None) -> None:
    p.add_argument("--coverage", type=_coverage, default=default,
                   help="also ask for conformal prediction sets that hold the true label with this probability, e.g. "
                        "0.9 (the version's calibration split bounds how fine; `candor models` shows it)")  # fmt: skip


def _model_args(p: argparse.ArgumentParser, version: bool = True) -> None:
    """Connection flags plus the model (and version) a verb acts on."""
    _connection_args(p)
    p.add_argument("--model", required=True, help="model name")
    if version:
        p.add_argument("--version", type=version_number, help="model version (default: the newest ready one)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="send rows to a server and print calibrated predictions",
                       description="Send rows to a model and print, per row, its prediction id (for feedback), its "
                                   "calibrated confidence and the top labels. More rows than the server takes at once "
                                   "go in several requests.")  # fmt: skip
    _model_args(p)
    add_input(p, "rows as .npy, .npz (its X, as `candor split` writes), .csv, or CSV on stdin with '-'")
    p.add_argument("--top-k", type=int, default=3, help="top labels per row (default: 3)")
    p.add_argument("--logits", action="store_true", help="also return raw logits (with --json)")
    add_coverage(p, default=None)
    p.add_argument("--conformal-method", default="",
                   help="score of the sets: one the version lists (lac, aps, raps); default: its recommended one")
    add_json(p)
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("feedback", help="send true labels for earlier predictions (CSV prediction_id,label)",
                       description="Send the true label of earlier predictions, by the prediction ids `candor predict` "
                                   "printed. A label is a class name as predict prints it, or a class index. Prints "
                                   "how many were accepted and why others were not; exits 1 when none was.")  # fmt: skip
    _model_args(p, version=False)
    add_input(p, "CSV of prediction_id,label lines, or '-' for stdin")
    add_json(p)
    p.set_defaults(handler=cmd_feedback)

    p = sub.add_parser("calibration", help="print a model version's live calibration: drift and feedback signals",
                       description="Ask the server for a version's live calibration: its reference at training time, "
                                   "label-free drift of recent predictions, and, from joined feedback, observed "
                                   "accuracy, ECE and a reliability table.")  # fmt: skip
    _model_args(p)
    p.add_argument("--plot", help="also draw the live reliability diagram next to the reference to this PNG")
    add_json(p)
    p.set_defaults(handler=cmd_calibration)

    p = sub.add_parser("recalibrate", help="refit a version's calibrator on a window of its feedback; publish it when "
                                           "held-out NLL improves significantly",
                       description="Refit the calibrator of a served version on its joined feedback (a share held out), "
                                   "and publish the result as the next version only when the held-out NLL decrease is "
                                   "significant. --dry-run reports without publishing. Needs the admin role when "
                                   "authentication is on.")  # fmt: skip
    _model_args(p)
    p.add_argument("--holdout-share", type=float, default=0.3, help="feedback share held out to verify (default: 0.3)")
    p.add_argument("--min-rows", type=int, default=100, help="fewest feedback rows to act on (default: 100)")
    p.add_argument("--dry-run", action="store_true", help="fit and report, publish nothing")
    p.add_argument("--method", default="temperature",
                   help="a calibration method the server offers, or auto to choose by cross-validated NLL, or conformal "
                        "to refresh only the prediction sets' scores from the window, or label-shift to correct the "
                        "calibrator to the class priors of the unlabeled logged traffic (--since and --newest-rows then "
                        "select logged rows; default: the drift window); an unknown name is answered with the server's "
                        "list (default: temperature)")  # fmt: skip
    p.add_argument("--since", type=_when, default=0.0,
                   help="fit on feedback received at or after this time: unix seconds or ISO 8601 "
                        "(default: the server's feedback window)")  # fmt: skip
    p.add_argument("--newest-rows", type=int, default=0, help="fit on at most the newest this many rows (default: the "
                                                                 "server's --feedback-window-rows)")  # fmt: skip
    p.add_argument("--include-client-recorded", action="store_true",
                   help="also fit on feedback that carried its own probabilities or logits (any Feedback caller can "
                        "write such rows: only for records you trust)")  # fmt: skip
    add_json(p)
    p.set_defaults(handler=cmd_recalibrate)

    p = sub.add_parser("simulate", help="send Predict and Feedback traffic from labelled rows, drifting after a while",
                       description="Predict rows drawn from a labelled .npz (X, y; `candor split` writes one), send their "
                                   "true labels back as feedback after a delay, and after --drift-after-seconds add "
                                   "noise to the inputs, so that drift and calibration alerts have a cause.")  # fmt: skip
    _model_args(p, version=False)
    add_input(p, ".npz file with X [N, F] rows and y [N] class indices", default=None)
    add_renamed(p, "--data", "INPUT (or --input)", dest="input")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second; 0 means back to back (default: 20)")
    p.add_argument("--rows-per-request", type=int, default=8, help="rows in each Predict (default: 8)")
    p.add_argument("--feedback-share", type=float, default=1.0, help="share of rows whose label is sent back (default: 1)")
    add_seconds(p, "feedback-delay", "feedback_delay", 5.0, "wait before a row's label is sent", old="--feedback-delay")
    add_seconds(p, "drift-after", "drift_after", 300.0, "wait before drift starts; negative: never", old="--drift-after")
    p.add_argument("--drift-noise", type=float, default=1.0,
                   help="drift noise standard deviation in units of the data's standard deviation (default: 1)")  # fmt: skip
    add_seconds(p, "duration", "duration", 0.0, "how long to run; 0 runs until stopped", old="--duration")
    add_coverage(p, default=0.0)
    add_seconds(p, "report-every", "report_every", 30.0, "time between progress lines", old="--report-every")
    add_seconds(p, "wait", "wait", 300.0, "how long to wait for the model to be SERVING", old="--wait")
    p.add_argument("--seed", type=int, default=0, help="seed of row choice, feedback and noise (default: 0)")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("models", help="list the model versions a server knows",
                       description="List every model version the server knows, its state, provider, calibrator "
                                   "temperature, smoothing and test ECE.")  # fmt: skip
    _connection_args(p)
    add_json(p)
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("health", help="ask a server (or one model) whether it is SERVING; exit 0 if so",
                       description="Ask the gRPC health service. The server as a whole is SERVING once a model "
                                   "version is ready; a model is SERVING while one of its versions is. Exit 0 when "
                                   "SERVING, 1 otherwise, 2 for a model the server does not know.")  # fmt: skip
    _connection_args(p)
    p.add_argument("--model", help="model name (default: the server as a whole)")
    add_json(p)
    p.set_defaults(handler=cmd_health)
