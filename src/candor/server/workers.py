"""``candor serve --workers N|auto``: N server processes on one gRPC port, one metrics endpoint.

Each worker is a whole ``candor serve`` (its own event loop, batcher per model version,
onnxruntime sessions); the kernel spreads new connections over them (SO_REUSEPORT). What they
share goes through the store, exactly as between replicas of a fleet: the prediction log
(feedback sent to any worker joins a prediction made on another), feedback, and the
recalibration lock. ``auto`` is the CPUs this process may use (affinity and cgroup quota,
:mod:`candor.server.cpus`).

The parent supervises. It holds the port for as long as it runs, starts the workers from one
settings file, serves **one** ``/metrics`` on ``--metrics-port`` that merges the workers'
own (each on a loopback port of its own; :mod:`candor.server.observability.merge`), prints the
ready line once all of them listen, and forwards SIGTERM and SIGINT.

A worker that exits on its own is started again after a backoff (0.5 s, doubling to 30 s;
``candor_worker_restarts_total``, and a log line). A worker whose new process dies before it
is ready :data:`MAX_START_FAILURES` times in a row stops the set (exit 1): something that a
restart does not mend (the repository, the store, the port) is for the orchestrator to see.
So is a worker that cannot start the first time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from candor.server.core.settings import Settings
from candor.server.launch import ServerProcess, ready_line
from candor.server.observability.http import MetricsEndpoint
from candor.server.observability.merge import WorkersCollector

log = logging.getLogger("candor.server")
STOP_MARGIN_S = 15.0  # on top of the grace period, before a worker that does not stop is killed
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
MAX_START_FAILURES = 3  # a worker's new process dying before it is ready this many times in a row stops the set
TICK_S = 0.2


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT, so workers can bind the same port
    and no other program takes it meanwhile, a worker's restart included. OSError when the port is taken
    without SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_command(settings_file: Path, grpc_port: int) -> list[str]:
    """One worker: the parent's settings, then flags (which win over the file and the environment, so a
    CANDOR_WORKERS=auto meant for the parent is not read by the workers): one process each on the shared
    port, metrics on a free loopback port that only the supervisor scrapes."""
    return [sys.executable, "-m", "candor", "serve", "--settings", str(settings_file), "--grpc-port", str(grpc_port),
            "--workers", "1", "--reuse-port", "--metrics-host", "127.0.0.1", "--metrics-port", "0"]  # fmt: skip


@dataclass
class Worker:
    """One worker position and the process serving it now."""

    index: int
    process: ServerProcess | None = None
    ready: bool = False
    start_failures: int = 0  # processes in a row that died before they were ready
    restart_at: float | None = None  # time.monotonic() of the next start, while it waits for one

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.process.ports[1]}/metrics"


class Supervisor:
    def __init__(self, settings: Settings, n: int, settings_file: Path, grpc_port: int):
        self.settings = settings
        self.command = worker_command(settings_file, grpc_port)
        self.workers = [Worker(i) for i in range(n)]
        self.merged = WorkersCollector(n)
        self.registry = CollectorRegistry()
        self.registry.register(self.merged)
        self.restarts = Counter("candor_worker_restarts", "Worker processes started again after one exited, per worker "
                                "position (this host's supervisor)", ["worker"], registry=self.registry)  # fmt: skip
        for w in self.workers:
            self.restarts.labels(str(w.index))
        Gauge("candor_workers", "Server processes this host's supervisor runs (--workers)",
              registry=self.registry).set(n)  # fmt: skip
        self.endpoint: MetricsEndpoint | None = None

    def spawn(self, w: Worker) -> None:
        w.process = ServerProcess(self.command, echo=f"[worker {w.index}] ", block=False, wait=600)
        w.ready, w.restart_at = False, None

    def became_ready(self, w: Worker) -> None:
        w.ready, w.start_failures = True, 0
        self.merged.started(w.index, w.metrics_url)
        log.info("worker %d (pid %d) serving; its own metrics on 127.0.0.1:%d", w.index, w.process.proc.pid,
                 w.process.ports[1])  # fmt: skip

    def start_all(self) -> bool:
        """Start every worker and wait for all to be ready; False (all stopped) when one cannot start."""
        for w in self.workers:
            self.spawn(w)
        try:
            for w in self.workers:
                w.process.wait_ready()
                self.became_ready(w)
        except RuntimeError as e:
            print(f"candor serve: a worker did not start: {e}", file=sys.stderr)
            self.stop()
            return False
        return True

    def check(self, now: float) -> bool:
        """One supervision step: notice exits, schedule and start restarts. False: stop the set."""
        for w in self.workers:
            if w.restart_at is not None:
                if now >= w.restart_at:
                    self.spawn(w)
                continue
            p = w.process
            if not w.ready and p.poll_ready():
                self.became_ready(w)
            code = p.proc.poll()
            if code is None:
                continue
            if w.ready:
                self.merged.ended(w.index)
            else:
                w.start_failures += 1
                if w.start_failures >= MAX_START_FAILURES:
                    log.error("worker %d died before it was ready %d times in a row (last exit code %s); stopping "
                              "the other workers", w.index, w.start_failures, code)  # fmt: skip
                    return False
            delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2**w.start_failures)
            log.error("worker %d (pid %d) exited with code %s; starting it again in %.1f s", w.index, p.proc.pid, code,
                      delay)  # fmt: skip
            self.restarts.labels(str(w.index)).inc()
            w.ready, w.restart_at = False, now + delay
        return True

    def stop(self) -> list[int]:
        return stop([w.process for w in self.workers if w.process is not None], self.settings.grace_period_s)


def run_workers(settings: Settings, n: int) -> int:
    try:
        reserved = reserve_port(settings.grpc_host, settings.grpc_port)
    except OSError as e:
        print(f"candor serve: cannot listen on {settings.grpc_host}:{settings.grpc_port} (--grpc-port): {e.strerror or e}",
              file=sys.stderr)  # fmt: skip
        return 2
    port = reserved.getsockname()[1]
    try:
        with tempfile.TemporaryDirectory(prefix="candor-workers-") as tmp:
            # Every resolved setting for the workers, in a file only this user can read (it may hold the store's password).
            settings_file = Path(tmp) / "settings.json"
            fd = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(dataclasses.asdict(settings), f)
            supervisor = Supervisor(settings, n, settings_file, port)
            try:
                supervisor.endpoint = MetricsEndpoint(supervisor.registry, settings.metrics_host, settings.metrics_port)
            except OSError as e:
                print(f"candor serve: cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
                      f"(--metrics-port): {e.strerror or e}", file=sys.stderr)  # fmt: skip
                return 2
            try:
                if not supervisor.start_all():
                    return 1
                return supervise(supervisor, port)
            finally:
                supervisor.endpoint.shutdown()
                supervisor.merged.close()
    finally:
        reserved.close()


def supervise(supervisor: Supervisor, port: int) -> int:
    """Announce, then watch the workers until a signal (stop all; exit 0 when they stopped cleanly) or until
    a worker cannot be brought back (stop the rest; exit 1)."""
    s = supervisor.settings
    print(ready_line(s.grpc_host, port, s.metrics_host, supervisor.endpoint.port), flush=True)
    log.info("%d workers on port %d; one metrics endpoint for all of them on %s:%d", len(supervisor.workers), port,
             s.metrics_host, supervisor.endpoint.port)  # fmt: skip
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(TICK_S):
        if not supervisor.check(time.monotonic()):
            supervisor.stop()
            return 1
    codes = supervisor.stop()
    if any(c != 0 for c in codes):
        log.error("workers exited with codes %s", codes)
        return 1
    return 0


def stop(workers: list[ServerProcess], grace_s: float) -> list[int]:
    """SIGTERM every running worker once, all at the same time (each drains for its grace period), then wait
    for them; one still running after the grace period and a margin is killed. Exactly one signal: a second
    one, arriving after a worker's event loop closed, would kill it mid-exit. The exit codes of the workers
    signalled (one that had already exited, waiting to be started again, is not part of this stop)."""
    running = [w for w in workers if w.proc.poll() is None]
    for w in running:
        w.proc.send_signal(signal.SIGTERM)
    codes = []
    for w in running:
        try:
            codes.append(w.proc.wait(grace_s + STOP_MARGIN_S))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            codes.append(w.proc.wait())
    return codes
