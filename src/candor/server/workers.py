"""``candor serve --workers N``: N server processes on one gRPC port.

Each worker is a whole ``candor serve`` (its own event loop, batcher per model version,
onnxruntime sessions and metrics endpoint); the kernel spreads new connections over them
(SO_REUSEPORT). What they share goes through the store, exactly as between replicas of a
fleet: the prediction log (feedback sent to any worker joins a prediction made on another),
feedback, and the recalibration lock. Metrics are per worker: worker i serves them on
``metrics_port + i`` (free ports when it is 0), one Prometheus scrape target each, and the
counters add up across targets as they do across replicas.

The parent only supervises. It reserves the port when it is 0, starts the workers from one
settings file, prints the ready line once all of them listen, forwards SIGTERM and SIGINT,
and when a worker exits on its own it stops the others and exits 1, so that the
orchestrator (Kubernetes, compose, systemd) restarts the whole set.
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
from pathlib import Path

from candor.server.core.settings import Settings
from candor.server.launch import ServerProcess, ready_line

log = logging.getLogger("candor.server")
STOP_MARGIN_S = 15.0  # on top of the grace period, before a worker that does not stop is killed


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT, so workers can bind the same port
    and no other program takes it meanwhile. OSError when the port is taken without SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_command(settings_file: Path, grpc_port: int, metrics_port: int) -> list[str]:
    return [sys.executable, "-m", "candor", "serve", "--settings", str(settings_file), "--grpc-port", str(grpc_port),
            "--metrics-port", str(metrics_port), "--workers", "1", "--reuse-port"]  # fmt: skip


def run_workers(settings: Settings) -> int:
    n = settings.workers
    try:
        reserved = reserve_port(settings.grpc_host, settings.grpc_port)
    except OSError as e:
        print(f"candor serve: cannot listen on {settings.grpc_host}:{settings.grpc_port} (--grpc-port): {e.strerror or e}",
              file=sys.stderr)  # fmt: skip
        return 2
    port = reserved.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="candor-workers-") as tmp:
        # Every resolved setting for the workers, in a file only this user can read (it may hold the store's password).
        settings_file = Path(tmp) / "settings.json"
        fd = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(settings), f)
        metrics_ports = [settings.metrics_port + i if settings.metrics_port else 0 for i in range(n)]
        workers = [ServerProcess(worker_command(settings_file, port, m), echo=f"[worker {i}] ", block=False,
                                 wait=600)  # fmt: skip
                   for i, m in enumerate(metrics_ports)]
        try:
            for w in workers:
                w.wait_ready()
        except RuntimeError as e:
            print(f"candor serve: a worker did not start: {e}", file=sys.stderr)
            stop(workers, settings.grace_period_s)
            return 1
        finally:
            reserved.close()
        return supervise(settings, workers, port)


def supervise(settings: Settings, workers: list[ServerProcess], port: int) -> int:
    """Announce, then wait for a signal (stop all; exit 0 when they stopped cleanly) or for a worker's own exit
    (stop the rest; exit 1)."""
    print(ready_line(settings.grpc_host, port, settings.metrics_host, workers[0].ports[1]), flush=True)
    log.info("%d workers on port %d; metrics on %s (one scrape target each)", len(workers), port,
             ", ".join(f"{settings.metrics_host}:{w.ports[1]}" for w in workers))  # fmt: skip
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(0.2):
        gone = [(i, w.proc.returncode) for i, w in enumerate(workers) if w.proc.poll() is not None]
        if gone:
            i, code = gone[0]
            log.error("worker %d exited (code %s); stopping the other workers", i, code)
            stop(workers, settings.grace_period_s)
            return 1
    codes = stop(workers, settings.grace_period_s)
    if any(c != 0 for c in codes):
        log.error("workers exited with codes %s", codes)
        return 1
    return 0


def stop(workers: list[ServerProcess], grace_s: float) -> list[int]:
    """SIGTERM every worker once, all at the same time (each drains for its grace period), then wait for all;
    one still running after the grace period and a margin is killed. Exactly one signal: a second one,
    arriving after a worker's event loop closed, would kill it mid-exit."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    codes = []
    for w in workers:
        try:
            codes.append(w.proc.wait(grace_s + STOP_MARGIN_S))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            codes.append(w.proc.wait())
    return codes
