"""The reliability report's harness, short: the same command CI-sized (a few seconds of soak, no fault
tests, which run in the suite anyway), and the bounds it must show."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes


def test_short_reliability_run_holds_every_bound(digits_repo, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(digits_repo, repo)
    out = tmp_path / "reliability.md"
    short = ["--soak-seconds", "6", "--peak-seconds", "1", "--random-per-rpc", "5", "--skip-faults"]
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks/reliability.py"), *short, "--repo", str(repo),
                             "--output", str(out)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    assert "| UNKNOWN " not in report and "| INTERNAL " not in report  # as a status cell or a column of the sweep
    assert "| errors by code | none |" in report
    assert "| Predict | no bearer token | UNAUTHENTICATED |" in report
    assert "| Predict | (fine) two good rows | OK |" in report
    queue, bound = map(int, re.search(r"largest queue seen.*?\| (\d+) rows \(≤ (\d+)\)", report).groups())
    assert queue <= bound
    store, bound = map(int, re.search(r"largest prediction store seen.*?\| (\d+) rows \(≤ (\d+)\)", report).groups())
    assert 0 < store <= bound
    served = int(re.search(r"\| requests served \(OK\) \| ([\d,]+)", report).group(1).replace(",", ""))
    acknowledged = int(re.search(r"\| feedback rows acknowledged \| ([\d,]+)", report).group(1).replace(",", ""))
    assert served > 0 and acknowledged > 0
