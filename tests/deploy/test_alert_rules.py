"""The Prometheus alert rules: valid, and firing exactly when their unit tests say."""

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO_ROOT

RULES = REPO_ROOT / "deploy/prometheus"


def promtool(*args: str, cwd=RULES) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed; .ci/run installs Debian's prometheus package (apt-get install prometheus)")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0 and "13 rules found" in result.stdout, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it():
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert {"CandorServerDown", "CandorServerAbsent", "CandorModelVersionNotReady", "CandorModelLoadFailures",
            "CandorFeedbackStoreDown", "CandorErrorRatioHigh", "CandorLatencyHigh"} <= alerts  # fmt: skip
    fired = {case["alertname"] for test in yaml.safe_load((RULES / "alerts.test.yml").read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case["exp_alerts"]}  # fmt: skip
    assert alerts == fired


def test_rule_unit_tests_pass():
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_is_caught(tmp_path):
    shutil.copy(RULES / "alerts.yml", tmp_path / "alerts.yml")
    text = (RULES / "alerts.test.yml").read_text().replace("is 0.400 (drift above 0.25)", "is 0.300 (drift above 0.25)")
    (tmp_path / "alerts.test.yml").write_text(text)
    result = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0 and "CandorConfidenceDrift" in result.stdout + result.stderr


def test_scrape_config_is_valid():
    """The compose stack's Prometheus configuration, which loads the same rules file."""
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0 and "2 rule files found" in result.stdout, result.stdout + result.stderr
