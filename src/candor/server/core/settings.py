"""Server settings: defaults < settings file < ``CANDOR_*`` environment < command-line flags.

Every field is validated at start-up by pydantic against its annotation (types and the bounds
declared on it); an error names the setting, where it came from, and what is expected. Rules that
span settings are in :meth:`Settings.check`.

>>> Settings.load(cli={"grpc_port": 9001}).grpc_port  # doctest: +SKIP
9001
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator

from candor.schema import STRICT, SchemaError, parse, parse_strings

ENV_PREFIX = "CANDOR_"


def _auto_is_zero(value: Any) -> Any:
    return 0 if isinstance(value, str) and value.strip().lower() == "auto" else value


Port = Annotated[int, Ge(0), Le(65535)]
AtLeastOne = Annotated[int, Ge(1)]
Count = Annotated[int, Ge(0)]
NonNegative = Annotated[float, Ge(0)]
Positive = Annotated[float, Gt(0)]
Workers = Annotated[int, BeforeValidator(_auto_is_zero), Ge(0)]  # "auto" in every source is 0


@dataclass(frozen=True)
class Settings:
    __pydantic_config__ = STRICT

    model_repository: str = "models"
    grpc_host: str = "0.0.0.0"
    grpc_port: Port = 8001  # Triton's default gRPC port
    # Server processes sharing the gRPC port (SO_REUSEPORT), each with its own batcher, behind one metrics
    # endpoint; 0 ("auto" on the command line, in the environment or a settings file): the CPUs this process
    # may use, cgroup quota included (candor.server.cpus).
    workers: Workers = 1
    reuse_port: bool = False  # let other processes bind the same gRPC port (what each of several workers does)
    metrics_host: str = "127.0.0.1"  # loopback: compose and Kubernetes set 0.0.0.0 where Prometheus scrapes
    metrics_port: Port = 8002  # Triton's default metrics port
    provider: Literal["auto", "cpu", "cuda"] = "auto"  # auto | cpu | cuda
    intra_op_threads: Count = 1  # onnxruntime threads per run; 0 lets onnxruntime use every core
    allow_spinning: bool = False  # let onnxruntime's threads busy-wait between runs
    instances: AtLeastOne = 1  # concurrent onnxruntime runs per model version
    max_batch_size: AtLeastOne = 256  # rows per onnxruntime run
    max_queue_delay_ms: NonNegative = 0.0  # extra wait to fill a batch; 0 batches whatever queued meanwhile
    # A batch whose run is expected (from timings at load) to take at most this long runs on the event loop:
    # on a busy host, handing it to a thread and back costs about 400 us of CPU (the GIL changing hands
    # twice against the loop; docs/benchmarks.md), more than a 256-row run of a small model. Runs longer
    # than this (a large model, a 4,096-row batch) go to a thread, so the loop keeps admitting requests
    # while they run. 0: every run goes to a thread.
    inline_run_us: NonNegative = 1000.0
    max_queue_rows: AtLeastOne = 8192  # rows waiting per model version before RESOURCE_EXHAUSTED
    max_rows_per_request: AtLeastOne = 4096
    max_message_bytes: Count = 0  # largest gRPC message; 0: derived from the loaded models (see message_limit)
    max_inflight_requests: AtLeastOne = 1024  # unary calls being handled at once; more are RESOURCE_EXHAUSTED
    max_concurrent_streams: AtLeastOne = 128  # calls at once per client connection (HTTP/2); more wait (or get UNAVAILABLE)
    max_health_watches: AtLeastOne = 64  # health Watch streams open at once (probes use Check)
    max_connections: AtLeastOne = 4096  # client connections at once; more are refused at accept
    connection_idle_s: Positive = 300.0  # a connection with no call for this long is closed (GOAWAY)
    connection_age_s: Positive = 3600.0  # any connection is closed after this long, calls in flight first finish
    default_deadline_s: float = 60.0  # how long a unary call without a deadline may take
    max_deadline_s: float = 600.0  # a longer deadline from the caller is cut to this
    warmup_rows: AtLeastOne = 8
    poll_interval_s: NonNegative = 5.0  # model repository watch; 0 turns it off
    # The version policy: each model serves its newest N versions on disk (0: every one), plus those
    # named in serve_versions ("MODEL:VERSION,..."). Recalibration adds a version each time; without a
    # bound every one would keep an onnxruntime session and its series forever.
    serve_latest: Count = 2
    serve_versions: str = ""
    allow_empty: bool = False  # report SERVING with no model ready (otherwise overall health waits for one)
    grace_period_s: NonNegative = 10.0  # time calls in flight get to finish on SIGTERM
    reflection: bool = True
    data_dir: str = "data"  # where the embedded store (SQLite) keeps the prediction log and feedback
    store: str = ""  # empty: SQLite under data_dir; sqlite:///PATH; or postgresql://USER:PASSWORD@HOST:PORT/DB (fleets)
    store_optional: bool = False  # start even when the store cannot be reached (degraded) instead of exiting
    store_timeout_s: Positive = 5.0  # how long an operation waits for a store connection
    feedback_store_max_bytes: Count = 0  # cap on the SQLite database; 0: the disk is the limit
    feedback_store_max_rows: AtLeastOne = 10_000_000  # feedback rows the store may hold; more are RESOURCE_EXHAUSTED
    prediction_store_rows: int = 100_000  # recent predictions cached in memory, in front of the store's log
    prediction_ttl_s: NonNegative = 86_400.0  # how long the prediction log keeps a prediction for its feedback
    prediction_log_buffer_rows: AtLeastOne = 100_000  # rows waiting for the log writer; more are dropped and counted
    feedback_window_rows: int = 5000  # label-based signals cover at most this many joined rows ...
    feedback_window_s: NonNegative = 7 * 86_400.0  # ... received no longer ago than this
    drift_window_rows: AtLeastOne = 5000  # label-free drift signals cover at most this many recent rows ...
    drift_window_s: NonNegative = 3600.0  # ... no older than this
    # A version no replica has logged a request of for this long is idle: GetCalibration says so (the
    # alert rules' guard, candor:predicted_rows:fleet_15m, uses the same 15 minutes).
    idle_after_s: Positive = 900.0
    psi_warn: float = 0.1
    psi_drift: float = 0.25
    # Label shift: the store-side EM estimate behind the candor_label_shift_* gauges is refreshed this often
    # (0: never), on the newest drift_window_rows logged rows no older than drift_window_s; Recalibrate's
    # label_shift publishes only when the test of no shift has a p-value below label_shift_significance.
    label_shift_interval_s: NonNegative = 60.0
    label_shift_significance: Annotated[float, Gt(0), Lt(1)] = 0.01
    log_level: str = "INFO"
    tls_cert_file: str = ""  # PEM certificate chain of the gRPC port; empty: plaintext
    tls_key_file: str = ""  # PEM private key of that certificate
    tls_client_ca_file: str = ""  # PEM CA bundle; set, clients must present a certificate it signed (mutual TLS)
    auth_tokens_file: str = ""  # one bearer token per line with an optional role; empty: no authentication (warned)
    auth_open_health: bool = True  # health answers without a token (Kubernetes' gRPC probes cannot send one)
    auth_open_reflection: bool = False  # reflection answers without a token
    # For make bench's tables only (environment or settings file; no flag): "log", "drift" or "log,drift" turns the
    # prediction log (and with it Feedback's join) or the drift window off; "native" serves prediction sets through
    # the numpy path even where the compiled kernel is built (benchmarks/prediction_sets.py compares the two).
    benchmark_skip: str = ""

    def check(self) -> Settings:
        """Every field against its annotation, then the rules that span fields; ValueError naming them."""
        try:
            parse(Settings, dataclasses.asdict(self))
        except SchemaError as e:
            raise ValueError(f"invalid settings: {e}") from None
        problems = []
        if self.store and not self.store.startswith(("postgresql://", "postgres://", "sqlite://")):
            scheme = self.store.split("://")[0] if "://" in self.store else self.store[:12]  # never echo a password
            problems.append(f"store must be empty (SQLite under data_dir), sqlite:///PATH or "
                            f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE, got one starting {scheme!r}")  # fmt: skip
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        if not 0 < self.psi_warn < self.psi_drift:
            problems.append(f"need 0 < psi_warn < psi_drift, got {self.psi_warn} and {self.psi_drift}")
        if not 0 < self.default_deadline_s <= self.max_deadline_s:
            got = f"{self.default_deadline_s} and {self.max_deadline_s}"
            problems.append(f"need 0 < default_deadline_s <= max_deadline_s, got {got}")
        if self.max_queue_rows < self.max_rows_per_request:
            problems.append("max_queue_rows must be >= max_rows_per_request, or a full-size request could never queue")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("tls_cert_file and tls_key_file go together: set both for TLS, or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            problems.append("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file too")
        unknown_skips = set(filter(None, self.benchmark_skip.split(","))) - {"log", "drift", "native"}
        if unknown_skips:
            problems.append(f"benchmark_skip takes log, drift and/or native, separated by a comma, got "
                            f"{self.benchmark_skip!r}")  # fmt: skip
        try:
            self.pinned_versions()
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))
        return self

    def worker_count(self) -> int:
        """Processes to run: ``workers``, or for 0 (auto) the CPUs this process may use."""
        from candor.server.cpus import usable_cpus

        return self.workers or usable_cpus()

    def skips(self, part: str) -> bool:
        """Whether benchmark_skip turns ``part`` (log, drift or native) off."""
        return part in self.benchmark_skip.split(",")

    def pinned_versions(self) -> frozenset[tuple[str, int]]:
        """serve_versions as (model, version) pairs; ValueError naming the entry that is not MODEL:VERSION."""
        pinned = set()
        for item in filter(None, (part.strip() for part in self.serve_versions.split(","))):
            name, _, version = item.rpartition(":")
            if not name or not version.isascii() or not version.isdigit() or int(version) < 1:
                raise ValueError(f"serve_versions must be MODEL:VERSION entries separated by commas (e.g. digits:3,iris:1), "
                                 f"got {item!r}")  # fmt: skip
            pinned.add((name, int(version)))
        return frozenset(pinned)

    @classmethod
    def load(cls, cli: dict[str, Any] | None = None, env: dict[str, str] | None = None, file: str | None = None,
             flags: dict[str, str] | None = None) -> Settings:  # fmt: skip
        """Merge the sources (later wins) and validate; each source's values are checked on their own first, so
        that an error can say where the value came from (``flags``: the command-line flag of each setting)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        file = file or env.get(f"{ENV_PREFIX}SETTINGS_FILE")
        if file:
            values.update(_from_file(Path(file)))
        values.update(_from_env(env))
        given = {k: v for k, v in (cli or {}).items() if v is not None}
        values.update(_checked(given, lambda name: (flags or {}).get(name, "command line")))
        return cls(**values).check()


def _checked(values: dict[str, Any], source: Callable[[str], str], strings: bool = False) -> dict[str, Any]:
    """``values`` as the settings' types, or ValueError naming each wrong one with ``source(name)``."""
    try:
        parsed = (parse_strings if strings else parse)(Settings, values)
    except SchemaError as e:
        raise ValueError("; ".join(f"{source(name)}: {message}" for name, message in e.problems)) from None
    return {name: getattr(parsed, name) for name in values}


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    names = {ENV_PREFIX + f.name.upper(): f.name for f in fields(Settings)}
    found = {names[key]: value for key, value in env.items() if key in names}
    return _checked(found, lambda name: f"environment variable {ENV_PREFIX}{name.upper()}", strings=True)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as e:
        raise ValueError(f"settings file {path}: cannot read ({e.strerror or e})") from e
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"settings file {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"settings file {path}: expected a table of settings")
    return _checked(data, lambda name: f"settings file {path}")


def as_dict(settings: Settings) -> dict[str, Any]:
    """The settings for a log line: a password in the store URL is masked."""
    values = dataclasses.asdict(settings)
    values["store"] = re.sub(r"(://[^:/@]*):.*@", r"\1:***@", settings.store)
    return values
