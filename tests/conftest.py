"""Shared fixtures: small real models trained once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_candor(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``candor`` command in a child process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "candor", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="session")
def digits_repo(tmp_path_factory) -> Path:
    """A model repository holding digits v1, trained with uniform LS 0.1 for a few epochs."""
    repo = tmp_path_factory.mktemp("models")
    result = run_candor("train", "--dataset", "digits", "--epsilon", "0.1", "--epochs", "12", "--patience", "5",
                        "--model-repository", str(repo), "--model", "digits")  # fmt: skip
    assert result.returncode == 0, result.stderr
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
