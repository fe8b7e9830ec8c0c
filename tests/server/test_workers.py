"""``candor serve --workers N|auto`` against real servers: one port, one store, one metrics endpoint whose
counters are the sum of the workers' own, workers restarted when they die, and the set stopped when a
worker cannot come back."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from candor.client import Client
from candor.server.observability.merge import LOWEST_GAUGES, SAME_GAUGES, SUMMED_GAUGES, WORKER_LABEL
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow
WORKER_READY = re.compile(r"worker (\d+) \(pid (\d+)\) serving; its own metrics on 127\.0\.0\.1:(\d+)")


def workers_seen(output: list[str]) -> dict[int, tuple[int, int]]:
    """worker index -> (pid, own metrics port) of its newest process, from the supervisor's log."""
    found = {}
    for line in output:
        if m := WORKER_READY.search(line):
            found[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return found


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def samples(text: str) -> dict[tuple[str, str, tuple], float]:
    """(family type, sample name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(family.type, s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def predict_on_connections(target: str, rows: np.ndarray, counts: list[int]) -> list[tuple[str, int]]:
    """``counts[i]`` Predicts on connection i (each connection reaches one worker); (prediction id, top class) of each."""
    made = []
    for i, n in enumerate(counts):
        with Client(target, channel_options=[("candor.test.connection", i)]) as c:
            for j in range(n):
                r = c.predict(rows[j % len(rows) : j % len(rows) + 2], model="digits")
                made += list(zip(r.prediction_ids, r.top_k_indices[:, 0].tolist(), strict=True))
    return made


def test_workers_share_one_port_the_store_and_one_metrics_endpoint(served_repo, digits_rows):
    running = start_server(served_repo, "--poll-interval-seconds", "0", "--workers", "2")
    try:
        seen = workers_seen(running.process.output)
        assert sorted(seen) == [0, 1] and running.metrics_port not in {port for _, port in seen.values()}
        # Unequal traffic: connections carry different numbers of calls, and the kernel hashes connections to workers.
        made = predict_on_connections(running.target, digits_rows, [1, 2, 3, 5, 8, 13, 21, 4])
        calls = 57
        # Quiet first: the prediction logs' writers have flushed every row, so nothing moves between the scrapes.
        wait_for(lambda: running.metric("candor_prediction_log_rows_total") == 2 * calls)
        own = {i: samples(scrape(port)) for i, (_, port) in seen.items()}
        served = [sum(v for (t, n, labels), v in s.items() if n == "candor_requests_total" and ("rpc", "Predict") in labels)
                  for s in own.values()]  # fmt: skip
        assert sum(served) == calls and all(n > 0 for n in served), f"both workers should serve some connections: {served}"
        merged = samples(scrape(running.metrics_port))
        # Every counter and histogram sample of the merged endpoint is the sum of the workers' own, exactly.
        keys = {k for s in own.values() for k in s if k[0] in ("counter", "histogram") and not k[1].endswith("_created")}
        assert keys, "the workers export counters"
        for key in keys:
            assert merged[key] == pytest.approx(sum(s.get(key, 0.0) for s in own.values()), abs=1e-9), key
        # Gauges: host totals summed, version facts once, health the lowest, window signals per worker.
        gauges = {k for s in own.values() for k in s if k[0] == "gauge" and not k[1].endswith("_created")}
        for t, name, labels in gauges:
            values = [s[(t, name, labels)] for s in own.values() if (t, name, labels) in s]
            if name in SUMMED_GAUGES:
                assert merged[(t, name, labels)] == pytest.approx(sum(values))
            elif name in SAME_GAUGES:
                assert merged[(t, name, labels)] == max(values)
            elif name in LOWEST_GAUGES:
                assert merged[(t, name, labels)] == min(values)
            else:
                assert {dict(k[2]).get(WORKER_LABEL) for k in merged if k[1] == name} <= {"0", "1"}, name
        assert merged[("gauge", "candor_workers", ())] == 2
        psi = {k for k in merged if k[1] == "candor_confidence_psi"}
        assert {dict(k[2])[WORKER_LABEL] for k in psi} == {"0", "1"}
        promtool = shutil.which("promtool")
        assert promtool, "promtool is not installed; .ci/run installs Debian's prometheus package"
        check = subprocess.run([promtool, "check", "metrics"], input=scrape(running.metrics_port), capture_output=True,
                               text=True)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        # Feedback through other connections joins predictions made on either worker, via the store's log.
        outcomes = []
        for i in range(0, 16, 4):
            with Client(running.target, channel_options=[("candor.test.connection", 100 + i)]) as c:
                ids, labels = zip(*made[i : i + 4], strict=True)
                outcomes += c.feedback(list(ids), list(labels), model="digits").outcomes
        assert outcomes == ["ACCEPTED"] * 16
        pids = [pid for pid, _ in seen.values()]
    finally:
        code = running.stop()
    assert code == 0, "".join(running.process.output[-20:])
    for pid in pids:  # no worker outlives the parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_that_dies_is_started_again_and_counters_never_go_back(served_repo, digits_rows):
    running = start_server(served_repo, "--poll-interval-seconds", "0", "--workers", "2")
    try:
        predict_on_connections(running.target, digits_rows, [3, 5, 7, 9])
        wait_for(lambda: running.metric("candor_requests_total", rpc="Predict") == 24)
        before = samples(running.metrics_text())
        old_pid, _ = workers_seen(running.process.output)[0]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: workers_seen(running.process.output)[0][0] != old_pid, timeout=60)
        assert any("worker 0 (pid" in x and "exited with code -9; starting it again" in x for x in running.process.output)
        after = samples(running.metrics_text())
        assert after[("counter", "candor_worker_restarts_total", (("worker", "0"),))] == 1
        assert after[("counter", "candor_worker_restarts_total", (("worker", "1"),))] == 0
        for key, value in before.items():  # what the dead process counted is still in the sum
            if key[0] in ("counter", "histogram") and not key[1].endswith("_created"):
                assert after[key] >= value, key
        predict_on_connections(running.target, digits_rows, [1] * 8)  # the set serves on, on both workers
        wait_for(lambda: running.metric("candor_requests_total", rpc="Predict") == 32)
    finally:
        code = running.stop()
    assert code == 0


def test_a_worker_that_cannot_start_again_stops_the_set(served_repo):
    running = start_server(served_repo, "--poll-interval-seconds", "0", "--workers", "2")
    # The repository goes away: the running workers serve on from memory, a new worker refuses to start.
    shutil.move(served_repo, served_repo.with_name("elsewhere"))
    served_repo.write_text("not a folder")
    pid, _ = workers_seen(running.process.output)[1]
    os.kill(pid, signal.SIGKILL)
    assert running.proc.wait(timeout=90) == 1
    output = "".join(running.process.output)
    assert "worker 1 died before it was ready 3 times in a row" in output and "stopping the other workers" in output
    assert output.count("starting it again") == 3  # the death of the serving one, then two failed starts


def test_auto_starts_one_worker_per_usable_cpu(served_repo):
    from candor.server.cpus import usable_cpus

    running = start_server(served_repo, "--poll-interval-seconds", "0", "--workers", "auto")
    try:
        expected = usable_cpus()
        if expected > 1:
            assert sorted(workers_seen(running.process.output)) == list(range(expected))
            assert running.metric("candor_workers") == expected
        else:  # one CPU: no supervisor, the server itself
            assert not workers_seen(running.process.output) and running.metric("candor_workers") == 0
    finally:
        assert running.stop() == 0


def test_workers_on_a_port_in_use_fail_with_one_line(served_repo):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "candor", "serve", "--model-repository", str(served_repo),
                                 "--grpc-host", "127.0.0.1", "--grpc-port", str(port), "--workers", "2"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "--grpc-port" in lines[0]
