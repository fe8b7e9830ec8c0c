"""The ``candor serve`` verb."""

from __future__ import annotations

import argparse
import asyncio
import logging

from candor.flags import add_renamed
from candor.server.core.settings import Settings, as_dict


def _workers(text: str) -> int:
    """``auto`` is 0 (the settings' spelling of it); otherwise a whole number."""
    if text.strip().lower() == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or auto, got {text!r}") from None


FLAGS = {
    "model_repository": ("--model-repository", str, "model repository folder"),
    "grpc_host": ("--grpc-host", str, "address to listen on for gRPC"),
    "grpc_port": ("--grpc-port", int, "gRPC port (0 picks a free one)"),
    "workers": ("--workers", _workers, "server processes sharing the gRPC port, each with its own "
                "batcher, behind one metrics endpoint; auto: the CPUs this process may use (its cgroup CPU limit "
                "included)"),
    "metrics_host": ("--metrics-host", str, "address of the Prometheus /metrics endpoint"),
    "metrics_port": ("--metrics-port", int, "Prometheus metrics port (0 picks a free one)"),
    "provider": ("--provider", str, "onnxruntime execution provider: auto, cpu or cuda"),
    "intra_op_threads": ("--intra-op-threads", int, "onnxruntime threads per run (0: one per core)"),
    "instances": ("--instances", int, "concurrent onnxruntime runs per model version"),
    "max_batch_size": ("--max-batch-size", int, "rows per onnxruntime run"),
    "max_queue_delay_ms": ("--max-queue-delay-ms", float, "extra wait for a batch to fill, in milliseconds"),
    "inline_run_us": ("--inline-run-us", float, "a run expected to take at most this many microseconds runs on the "
                      "event loop instead of a thread (0: always a thread)"),
    "max_queue_rows": ("--max-queue-rows", int, "rows queued per model version before RESOURCE_EXHAUSTED"),
    "max_rows_per_request": ("--max-rows-per-request", int, "rows one request may carry"),
    "max_message_bytes": ("--max-message-bytes", int, "largest gRPC message, sent or received (0: from the models)"),
    "max_health_watches": ("--max-health-watches", int, "health Watch streams open at once"),
    "max_connections": ("--max-connections", int, "client connections at once"),
    "connection_idle_s": ("--connection-idle-seconds", float, "seconds a connection without calls stays open"),
    "connection_age_s": ("--connection-age-seconds", float, "seconds any connection stays open (calls in flight finish first)"),
    "max_inflight_requests": ("--max-inflight-requests", int, "unary calls handled at once before RESOURCE_EXHAUSTED"),
    "max_concurrent_streams": ("--max-concurrent-streams", int, "calls at once per client connection (HTTP/2)"),
    "default_deadline_s": ("--default-deadline-seconds", float, "seconds a unary call without a deadline may take"),
    "max_deadline_s": ("--max-deadline-seconds", float, "longest deadline a call may have, in seconds"),
    "warmup_rows": ("--warmup-rows", int, "rows of the warm-up run at load"),
    "poll_interval_s": ("--poll-interval-seconds", float, "seconds between repository scans (0: no watching)"),
    "serve_latest": ("--serve-latest", int, "versions served per model: the newest N on disk (0: every version)"),
    "serve_versions": ("--serve-versions", str, "versions served besides the newest, as MODEL:VERSION,... (e.g. digits:3)"),
    "grace_period_s": ("--grace-period-seconds", float, "seconds calls in flight get on SIGTERM"),
    "log_level": ("--log-level", str, "DEBUG, INFO, WARNING or ERROR"),
    "data_dir": ("--data-dir", str, "folder of the embedded store (SQLite)"),
    "store": ("--store", str, "store URL: empty (SQLite in --data-dir), sqlite:///PATH or postgresql://... (env CANDOR_STORE)"),
    "store_timeout_s": ("--store-timeout-seconds", float, "seconds an operation waits for a store connection"),
    "feedback_store_max_bytes": ("--feedback-store-max-bytes", int, "cap on the SQLite database file (0: none)"),
    "feedback_store_max_rows": ("--feedback-store-max-rows", int, "feedback rows the store may hold"),
    "prediction_store_rows": ("--prediction-store-rows", int, "recent predictions cached in memory for feedback"),
    "prediction_ttl_s": ("--prediction-ttl-seconds", float, "seconds the prediction log keeps a prediction for its feedback"),
    "prediction_log_buffer_rows": ("--prediction-log-buffer-rows", int, "rows waiting for the log writer before drops"),
    "feedback_window_rows": ("--feedback-window-rows", int, "joined feedback rows in the label-based window"),
    "feedback_window_s": ("--feedback-window-seconds", float, "oldest feedback in the label-based window"),
    "drift_window_rows": ("--drift-window-rows", int, "rows in the label-free drift window"),
    "drift_window_s": ("--drift-window-seconds", float, "oldest age of a row in the drift window"),
    "label_shift_interval_s": ("--label-shift-interval-seconds", float,
                               "how often the candor_label_shift_* gauges' estimate is refreshed; 0: never"),
    "label_shift_significance": ("--label-shift-significance", float,
                                 "p-value below which Recalibrate's label_shift publishes a corrected version"),
    "idle_after_s": ("--idle-after-seconds", float, "seconds without a logged request after which a version is idle"),
    "psi_warn": ("--psi-warn", float, "PSI at which a drift signal warns"),
    "psi_drift": ("--psi-drift", float, "PSI at which a drift signal reports drift"),
    "tls_cert_file": ("--tls-cert", str, "PEM certificate chain: serve gRPC over TLS"),
    "tls_key_file": ("--tls-key", str, "PEM private key of --tls-cert"),
    "tls_client_ca_file": ("--tls-client-ca", str, "PEM CA: require client certificates it signed (mutual TLS)"),
    "auth_tokens_file": ("--auth-tokens-file", str, "bearer tokens, a line 'TOKEN [infer|admin]' each; empty: no auth"),
}


# Durations end in -seconds (candor.flags); the spellings before that stay one release as hidden aliases.
RENAMED = {old: f"{old}-seconds" for old in ("--connection-idle", "--connection-age", "--default-deadline", "--max-deadline",
                                             "--poll-interval", "--grace-period", "--store-timeout", "--prediction-ttl")}


def cmd_serve(a: argparse.Namespace) -> int:
    from candor.server.app import serve

    cli = {name: getattr(a, name) for name in FLAGS}
    if a.no_reflection:
        cli["reflection"] = False
    if a.allow_spinning:
        cli["allow_spinning"] = True
    if a.auth_lock_health:
        cli["auth_open_health"] = False
    if a.auth_open_reflection:
        cli["auth_open_reflection"] = True
    if a.store_optional:
        cli["store_optional"] = True
    if a.reuse_port:
        cli["reuse_port"] = True
    if a.allow_empty:
        cli["allow_empty"] = True
    settings = Settings.load(cli=cli, file=a.settings, flags={name: flag for name, (flag, _, _) in FLAGS.items()})
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("candor.server").debug("settings: %s", as_dict(settings))
    workers = settings.worker_count()
    if workers > 1:
        from candor.server.workers import run_workers

        return run_workers(settings, workers)
    asyncio.run(serve(settings))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    defaults = Settings()
    p = sub.add_parser(
        "serve",
        help="serve a model repository over gRPC (candor.v1 and KServe v2)",
        description="Every flag also reads from CANDOR_<NAME> (e.g. CANDOR_GRPC_PORT) and a settings file.",
    )
    for name, (flag, kind, text) in FLAGS.items():
        default = getattr(defaults, name)
        shown = default if default != "" else "none"  # an empty setting (no TLS, no tokens file) means off
        metavar = "SECONDS" if flag.endswith("-seconds") else None
        p.add_argument(flag, dest=name, type=kind, default=None, metavar=metavar, help=f"{text} (default: {shown})")
    for old, new in RENAMED.items():
        name = next(name for name, (flag, _, _) in FLAGS.items() if flag == new)
        add_renamed(p, old, new, dest=name, type=FLAGS[name][1])
    p.add_argument("--settings", help="settings file (.toml or .json) with the same names as the flags, e.g. grpc_port = 9001")
    p.add_argument("--no-reflection", action="store_true", help="turn gRPC server reflection off")
    p.add_argument(
        "--allow-spinning", action="store_true", help="let onnxruntime threads busy-wait between runs (many-core hosts)"
    )
    p.add_argument("--store-optional", action="store_true",
                   help="start degraded when the store cannot be reached (Feedback UNAVAILABLE until it answers)")  # fmt: skip
    p.add_argument("--auth-lock-health", action="store_true", help="with auth on, health checks need a token too")
    p.add_argument("--auth-open-reflection", action="store_true", help="with auth on, reflection answers without a token")
    p.add_argument("--allow-empty", action="store_true",
                   help="report overall health SERVING even with no model ready (by default it waits for one)")  # fmt: skip
    p.add_argument("--reuse-port", action="store_true",
                   help="let other processes bind the same gRPC port (SO_REUSEPORT); --workers sets it for its own")  # fmt: skip
    p.set_defaults(handler=cmd_serve)
