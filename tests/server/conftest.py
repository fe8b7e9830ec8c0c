"""A real `candor serve` process on 127.0.0.1 with free ports, stopped by the test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from candor.client import Client

_READY = re.compile(r"gRPC on 127\.0\.0\.1:(\d+), metrics on 127\.0\.0\.1:(\d+)")


@dataclass
class RunningServer:
    proc: subprocess.Popen
    grpc_port: int
    metrics_port: int
    repo: Path
    output: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def client(self, **options) -> Client:
        return Client(self.target, **options)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def metric(self, name: str, **labels) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total, found = 0.0, False
        for line in self.metrics_text().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else 0.0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(repo: Path, *flags: str, env: dict | None = None, wait: float = 60) -> RunningServer:
    cmd = [sys.executable, "-m", "candor", "serve", "--model-repository", str(repo), "--grpc-host", "127.0.0.1",
           "--grpc-port", "0", "--metrics-host", "127.0.0.1", "--metrics-port", "0", "--data-dir", str(repo.parent / "data"),
           *flags]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    output: list[str] = []
    ports: list[tuple[int, int]] = []

    def pump() -> None:  # keep reading so the pipe never fills and blocks the server
        for line in proc.stdout:
            output.append(line)
            m = _READY.search(line)
            if m and not ports:
                ports.append((int(m.group(1)), int(m.group(2))))

    threading.Thread(target=pump, daemon=True).start()
    end = time.monotonic() + wait
    while not ports:
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(output))
        time.sleep(0.05)
    return RunningServer(proc, ports[0][0], ports[0][1], repo, output)


@pytest.fixture
def served_repo(digits_repo, tmp_path) -> Path:
    """A private copy of the repository holding digits v1."""
    repo = tmp_path / "models"
    shutil.copytree(digits_repo, repo)
    return repo


@pytest.fixture(scope="module")
def server(digits_repo, tmp_path_factory):
    """One shared server for tests that do not change its state."""
    repo = tmp_path_factory.mktemp("served") / "models"
    shutil.copytree(digits_repo, repo)
    running = start_server(repo, "--poll-interval", "0")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def digits_rows() -> np.ndarray:
    return load_digits().data[:40].astype(np.float32)
