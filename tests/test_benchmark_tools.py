"""The benchmark's own measuring tools: the py-spy stack summary and the server CPU count."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from profile_server import summarise  # noqa: E402
from run import process_tree_cpu, update_section  # noqa: E402

MAIN = "thread (0x1): MainThread"
LOOP = "run (asyncio/base_events.py:600)"
ENTRY = "main (/x/src/candor/cli.py:10)"
EDGE = "call (/x/src/candor/server/rpc/edge.py:120)"
PREDICT = "predict (/x/src/candor/server/core/plane.py:150)"
RUN = "run (/x/site-packages/onnxruntime/capi/onnxruntime_inference_collection.py:383)"


def test_summarise_counts_own_total_and_threads():
    collapsed = "\n".join([
        f"{MAIN};{ENTRY};{LOOP};{EDGE};{PREDICT} 6",
        f"{MAIN};{ENTRY};{LOOP} 2",
        f"thread (0x2): candor-infer_0;{RUN} 2",
        "not a stack line",
    ])  # fmt: skip
    s = summarise(collapsed)
    assert s["samples"] == 10
    assert dict(s["threads"]) == {"MainThread": pytest.approx(0.8), "candor-infer": pytest.approx(0.2)}
    own = dict(s["own"])
    assert own["candor/server/core/plane.py:predict"] == pytest.approx(0.6)
    assert own["asyncio/base_events.py:run"] == pytest.approx(0.2)
    total = dict(s["total"])
    assert total["candor/server/rpc/edge.py:call"] == pytest.approx(0.6)
    assert total["onnxruntime/capi/onnxruntime_inference_collection.py:run"] == pytest.approx(0.2)
    assert "candor/cli.py:main" not in total  # on every main-thread stack: it says nothing


def test_process_tree_cpu_counts_the_children_too():
    burn = ("import time, sys\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
            "print('done', flush=True)\nsys.stdin.read()")  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert parent.stdout.readline().strip() == "done"  # the grandchild burned its CPU and is still alive
        assert process_tree_cpu(parent.pid) >= 0.35
    finally:
        parent.stdin.close()
        parent.wait(30)


def test_each_script_rewrites_only_its_own_section(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nrun.py's part\n")
    update_section(report, "<!-- a: begin -->", "<!-- a: end -->", ["## A", "first"])
    update_section(report, "<!-- b: begin -->", "<!-- b: end -->", ["## B"])
    update_section(report, "<!-- a: begin -->", "<!-- a: end -->", ["## A", "second"])
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nrun.py's part\n\n<!-- a: begin -->")
    assert "second" in text and "first" not in text and text.count("<!-- a: begin -->") == 1 and "## B" in text
