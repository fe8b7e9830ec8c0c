"""A real Prometheus, loading the repo's own scrape config and alert rules, scrapes a live
Candor server under simulated traffic with feedback and drift; then every PromQL
expression of the Grafana dashboard and of the alert rules must be valid and return series."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from candor.client.simulate import SimulationPlan, load_labelled_rows, simulate
from tests.conftest import REPO_ROOT, run_candor
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow  # real servers, installs or Prometheus in child processes

DASHBOARD = REPO_ROOT / "deploy/grafana/dashboards/candor.json"
PROMETHEUS = REPO_ROOT / "deploy/prometheus"
# What Grafana would put in place of its variables with model "digits", version "1" selected.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "5s", "$model": "digits", "$version": "1"}
# CandorLabelShift too: noisy inputs move the class mix EM reads as much as a new mix would. EM alone
# cannot tell the two apart; the corrected child's confidence PSI can (README, "When the class mix changes").
ALERTS = ("CandorConfidenceDrift", "CandorPredictionDrift", "CandorCalibrationErrorHigh", "CandorAccuracyGap",
          "CandorCoverageBelowTarget", "CandorLabelShift")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"an unknown Grafana variable is left in {expr!r}"
    return expr


def label_values_to_promql(query: str) -> str:
    """Grafana's label_values(selector, label) as the PromQL that has the same answer."""
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert m, f"unexpected variable query {query!r}"
    return f"count by ({m.group(2)}) ({m.group(1)})"


def dashboard_expressions() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    found = [(f"panel {p['title']!r}", t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            found.append((f"variable ${v['name']}", label_values_to_promql(v["query"]["query"])))
    return found


def rule_expressions(healthy: bool = False) -> list[tuple[str, str]]:
    """Every rule's expression; ``healthy``: instead the operational alerts, which a healthy server keeps empty."""
    found = []
    for name in ("recording.yml", "alerts.yml"):
        rules = yaml.safe_load((PROMETHEUS / name).read_text())
        found += [(f"rule {r.get('alert') or r['record']}", r["expr"]) for g in rules["groups"] for r in g["rules"]
                  if (g["name"] == "candor-operations") == healthy]  # fmt: skip
    return found


class Prometheus:
    def __init__(self, port: int, proc: subprocess.Popen):
        self.port, self.proc = port, proc
        self.candor_metrics_port = 0  # the scraped server's, once the stack is up

    def query(self, expr: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400/422 carry the parse or evaluation error
            return json.load(e)

    def wait_for(self, expr: str, timeout: float, count: int = 1) -> list:
        """The answer once it has ``count`` series or more (0: once it has none)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.query(expr)
            result = answer.get("data", {}).get("result", [])
            if (len(result) >= count) if count else (answer.get("status") == "success" and not result):
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"{expr} gave {len(result)} series after {timeout}s: {answer}")
            time.sleep(0.5)


def start_prometheus(tmp_path, *metrics_ports: int, edit_rules=None) -> Prometheus:
    """Prometheus on the repo's config and rules; ``edit_rules(name, text)`` may rewrite a rules file first."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus is not installed; .ci/run installs Debian's prometheus package (apt-get install prometheus)")
    port = free_port()
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    # The repo's own file with two changes: targets on loopback, and one-second intervals so the test is short.
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {"candor": [f"127.0.0.1:{p}" for p in metrics_ports], "prometheus": [f"127.0.0.1:{port}"]}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for rules in config["rule_files"]:
        text = (PROMETHEUS / rules).read_text()
        (tmp_path / rules).write_text(text if edit_rules is None else edit_rules(rules, text))
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    prom = Prometheus(port, proc)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return prom
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"prometheus did not start: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def stack(digits_repo, tmp_path_factory):
    """Candor + Prometheus, after clean traffic and then drifted traffic with feedback, with every alert active."""
    tmp = tmp_path_factory.mktemp("stack")
    repo = tmp / "models"
    shutil.copytree(digits_repo, repo)
    rows = tmp / "digits-test.npz"
    assert run_candor("split", "--model-repository", str(repo), "--model", "digits", "--output", str(rows)).returncode == 0
    server = start_server(repo, "--poll-interval-seconds", "0", "--drift-window-rows", "1000", "--feedback-window-rows", "1000",
                          "--label-shift-interval-seconds", "1")
    prom = start_prometheus(tmp, server.metrics_port)
    prom.candor_metrics_port = server.metrics_port
    try:
        prom.wait_for('up{job="candor"} == 1', timeout=30)
        X, y = load_labelled_rows(rows)
        with server.client() as client:
            # The fleet series cover an hour: a short clean phase, then mostly drifted traffic, so that
            # the hour's mix drifts too.
            # Prediction sets are asked for at 0.9, so the served sizes have series too.
            for plan in (SimulationPlan(rate=0, drift_after_s=None, feedback_delay_s=0.2, duration_s=1, report_every_s=0,
                                        coverage=0.9),
                         SimulationPlan(rate=0, drift_after_s=0, feedback_delay_s=0.2, duration_s=8, report_every_s=0,
                                        coverage=0.9)):
                stats = simulate(client, "digits", X, y, plan, log=lambda _: None)
                assert stats.errors == {} and stats.feedback_accepted == stats.rows
        # Alerts go pending at the first evaluation that finds their condition true (`for:` then delays firing).
        prom.wait_for('ALERTS{alertname=~"Candor.*"}', timeout=30, count=len(ALERTS))
        yield prom
    finally:
        prom.proc.terminate()
        prom.proc.wait(timeout=30)
        assert server.stop() == 0


@pytest.mark.parametrize(("where", "expr"), dashboard_expressions() + rule_expressions(), ids=lambda v: v if " " in v else "")
def test_expression_is_valid_and_returns_series(stack, where, expr):
    answer = stack.query(substitute(expr))
    assert answer["status"] == "success", f"{where}: {answer.get('error')}"
    assert answer["data"]["result"], f"{where}: no series for {expr}"


@pytest.mark.parametrize(("where", "expr"), rule_expressions(healthy=True), ids=lambda v: v if " " in v else "")
def test_operational_alerts_are_valid_quiet_and_read_series_that_exist(stack, where, expr):
    """Server down, not ready, store down, errors, latency: empty on a healthy server, but not because of a wrong name."""
    answer = stack.query(expr)
    assert answer["status"] == "success", f"{where}: {answer.get('error')}"
    assert answer["data"]["result"] == [], f"{where} would fire on a healthy server: {answer['data']['result']}"
    for name in set(re.findall(r"\b(up|candor_[a-z_]+)\b", expr)):
        assert stack.query(f"count({name})")["data"]["result"], f"{where} reads {name}, which the server does not export"


def test_live_metrics_pass_promtool_check_metrics(stack):
    """`curl :8002/metrics | promtool check metrics`, after traffic, drift and feedback: naming and type rules hold."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.candor_metrics_port}/metrics", timeout=10) as r:
        text = r.read()
    assert b"candor_feedback_rows_total" in text and b"candor_request_duration_seconds_bucket" in text
    result = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), (result.stdout + result.stderr).decode()


def test_promtool_check_metrics_can_fail():
    """The check above can fail: a gauge with an `le` label and a gauge ending in _count are what it reports."""
    bad = b"# HELP candor_x_count rows\n# TYPE candor_x_count gauge\ncandor_x_count{le=\"0.5\"} 1\n"
    result = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=bad, capture_output=True, timeout=60)
    assert result.returncode != 0 and b"candor_x_count" in result.stdout + result.stderr


def test_every_alert_is_active_under_drift(stack):
    series = stack.query('ALERTS{alertname=~"Candor.*"}')["data"]["result"]
    active = {s["metric"]["alertname"]: s["metric"]["alertstate"] for s in series}
    assert set(active) == set(ALERTS)
    assert set(active.values()) <= {"pending", "firing"}


def test_a_broken_expression_is_reported(stack):
    """The check above can fail: a typo is a Prometheus error, a wrong name an empty answer."""
    assert stack.query("sum by (le (candor_confidence_bucket)")["status"] == "error"
    assert stack.query(substitute('candor_confidense_psi{model=~"$model"}'))["data"]["result"] == []


def test_the_dashboard_covers_every_metric_family_it_should(stack):
    """Each signal the server exports for watching (DESIGN.md's list) appears in some panel."""
    exprs = " ".join(e for _, e in dashboard_expressions())
    wanted = ["candor_requests_total", "candor_request_duration_seconds_bucket", "candor_queue_duration_seconds_bucket",
              "candor_inference_duration_seconds_bucket", "candor_batch_size_rows", "candor_queue_rows",
              "candor_confidence_bucket", "candor_predictions_total", "candor_confidence_psi",
              "candor:expected_accuracy:fleet_1h", "candor:observed_accuracy:fleet_1d", "candor:observed_ece:fleet_1d",
              "candor:confidence_psi:fleet_1h", "candor:prediction_psi:fleet_1h", "candor_feedback_total",
              "candor_model_info", "ALERTS"]  # fmt: skip
    assert [w for w in wanted if w not in exprs] == []


def test_dashboard_units_and_thresholds_say_what_is_drawn():
    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"}
    unit = lambda title: panels[title]["fieldConfig"]["defaults"]["unit"]  # noqa: E731
    # Rates of rows and items are not shares (a tooltip would read 250%) and not requests.
    assert unit("Predicted class mix") == "suffix: rows/s"
    assert unit("Feedback received") == "suffix: items/s"
    assert unit("Feedback joined per replica") == "suffix: rows/s"
    # The accuracy-gap alert uses abs(): the panel draws both lines.
    steps = panels["Expected minus observed accuracy, fleet"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, -0.05, 0.05] and [s["color"] for s in steps] == ["red", "green", "red"]
    # Traffic panels follow the $model variable.
    for title in ("Requests per second by status code", "Error ratio", "Request latency"):
        for target in panels[title]["targets"]:
            assert target["expr"].count('model=~"$model"') == target["expr"].count("candor_request"), (title, target["expr"])


IDLE_WINDOW = "10s"  # the serving guard's 15 minutes, shortened for the test


def shortened(name: str, text: str) -> str:
    """The shipped rules with the serving window and every ``for:`` shortened; nothing else changes."""
    if name == "recording.yml":
        assert text.count("[15m]") == 4, "the serving guard's window moved: update this test"
        return text.replace("[15m]", f"[{IDLE_WINDOW}]")
    return re.sub(r"for: \d+m", "for: 0s", text)


def test_a_version_whose_traffic_moved_to_its_recalibrated_child_stops_alerting(digits_repo, tmp_path):
    """Drifted, noisy traffic with labels makes v1 fire; Recalibrate publishes v2 and traffic moves there. v1's
    1h and 1d windows keep the bad rows (frozen counters), but its alerts resolve once it has served nothing for
    the serving window, and GetCalibration calls it idle; v2, serving, is not."""
    repo = tmp_path / "models"
    shutil.copytree(digits_repo, repo)
    rows = tmp_path / "digits-test.npz"
    assert run_candor("split", "--model-repository", str(repo), "--model", "digits", "--output", str(rows)).returncode == 0
    server = start_server(repo, "--poll-interval-seconds", "0", "--drift-window-rows", "1000", "--feedback-window-rows", "1000",
                          "--idle-after-seconds", "5")
    prom = start_prometheus(tmp_path, server.metrics_port, edit_rules=shortened)
    v1 = 'version="1", model="digits"'
    try:
        prom.wait_for('up{job="candor"} == 1', timeout=30)
        X, y = load_labelled_rows(rows)
        noisy = SimulationPlan(rate=0, drift_after_s=0, drift_noise=3, feedback_delay_s=0.2, duration_s=6, report_every_s=0)
        with server.client() as client:
            stats = simulate(client, "digits", X, y, noisy, log=lambda _: None)
            assert stats.errors == {} and stats.feedback_accepted == stats.rows
            calibration_alerts = "CandorConfidenceDrift|CandorCalibrationErrorHigh|CandorAccuracyGap"
            firing = f'ALERTS{{alertstate="firing", {v1}, alertname=~"{calibration_alerts}"}}'
            prom.wait_for(firing, timeout=30, count=3)
            result = client.recalibrate("digits", "1")
            assert result.published and result.new_version == "2", result.message
            # Traffic moves to v2 (the newest version serves calls that name none) while Prometheus watches v1.
            stop = threading.Event()
            moved = threading.Thread(target=simulate, args=(client, "digits", X, y, dataclasses.replace(noisy, duration_s=60)),
                                     kwargs={"stop": stop, "log": lambda _: None})  # fmt: skip
            moved.start()
            try:
                prom.wait_for(f"ALERTS{{{v1}}}", timeout=40, count=0)
                # Not because v1's signals recovered: its windows still hold the drifted rows and the bad feedback.
                assert prom.query(f"candor:confidence_psi:fleet_1h{{{v1}}} > 0.25")["data"]["result"]
                assert prom.query(f"candor:observed_ece_low:fleet_1d{{{v1}}} > 0.1")["data"]["result"]
                assert prom.query(f"candor:predicted_rows:fleet_15m{{{v1}}} == 0")["data"]["result"]
                assert prom.query('candor:predicted_rows:fleet_15m{version="2", model="digits"} > 0')["data"]["result"]
                # A long deadline: the simulator keeps two cores busy, and the first report loads scipy.stats.
                old, new = client.calibration("digits", "1", timeout=60), client.calibration("digits", "2", timeout=60)
            finally:
                stop.set()
                moved.join(timeout=30)
        assert old.idle and old.last_prediction_at is not None and time.time() - old.last_prediction_at > 5
        assert not new.idle and new.last_prediction_at > old.last_prediction_at
        shown = run_candor("calibration", "--target", server.target, "--model", "digits", "--version", "1")
        assert shown.returncode == 0 and "idle: last request at " in shown.stdout, shown.stderr
    finally:
        prom.proc.terminate()
        prom.proc.wait(timeout=30)
        assert server.stop() == 0
