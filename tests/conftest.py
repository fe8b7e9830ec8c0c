"""Shared fixtures: small real models trained once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_candor(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``candor`` command in a child process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "candor", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def shared_dir(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this run sees (the session's own base folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def digits_repo(tmp_path_factory) -> Path:
    """A model repository holding digits v1, trained with uniform LS 0.1 for a few epochs.

    Trained once per run, not once per xdist worker: the first worker to take the lock trains, the others
    wait and reuse it. Tests copy it before they change anything (``served_repo``)."""
    root = shared_dir(tmp_path_factory)
    repo, done = root / "digits-models", root / "digits-models.done"
    with FileLock(root / "digits-models.lock"):
        if not done.exists():
            shutil.rmtree(repo, ignore_errors=True)
            result = run_candor("train", "--dataset", "digits", "--epsilon", "0.1", "--epochs", "12", "--patience",
                                "5", "--model-repository", str(repo), "--model", "digits")  # fmt: skip
            assert result.returncode == 0, result.stderr
            done.touch()
    return repo


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL cluster for the session (tests/postgres.py); each test takes its own database."""
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster()
    yield cluster
    cluster.close()


@pytest.fixture
def pg_url(postgres) -> str:
    """The URL of a fresh, empty database on the session's cluster."""
    return postgres.new_database()
