"""A real `candor serve` process on 127.0.0.1 with free ports, stopped by the test."""

from __future__ import annotations

import shutil
import signal
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from candor.client import Client
from candor.server.launch import ServerProcess, serve_process


class RunningServer:
    """A real `candor serve` process, with helpers to call it and read its metrics."""

    def __init__(self, process: ServerProcess, repo: Path):
        self.process = process
        self.proc = process.proc
        self.grpc_port, self.metrics_port = process.ports
        self.repo = repo

    @property
    def target(self) -> str:
        return self.process.target

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
        return self.process.stop(sig, timeout)


def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds; tests wait on what the server reports, never on a fixed sleep."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def start_server(repo: Path, *flags: str, env: dict | None = None) -> RunningServer:
    return RunningServer(serve_process(repo, *flags, env=env), repo)


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
    running = start_server(repo, "--poll-interval-seconds", "0")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def digits_rows() -> np.ndarray:
    return load_digits().data[:40].astype(np.float32)
