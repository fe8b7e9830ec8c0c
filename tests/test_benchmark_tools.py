"""The benchmark's own measuring tools: the py-spy stack summary and the server CPU count."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from profile_server import summarise  # noqa: E402
from run import main_thread_cpu, process_tree_cpu, update_section  # noqa: E402

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


def test_main_thread_cpu_counts_the_event_loop_thread_only():
    burn = ("import threading, time, sys\n"
            "def spin():\n    end = time.thread_time() + 0.4\n    while time.thread_time() < end: pass\n"
            "t = threading.Thread(target=spin); t.start(); t.join()\n"  # another thread burns 0.4 s ...
            "end = time.thread_time() + 0.2\nwhile time.thread_time() < end: pass\n"  # ... the main thread 0.2 s
            "print('done', flush=True)\nsys.stdin.read()")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
        assert 0.18 <= main_thread_cpu(child.pid) <= 0.35 and process_tree_cpu(child.pid) >= 0.55
    finally:
        child.stdin.close()
        child.wait(30)


def test_each_script_rewrites_only_its_own_section(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nrun.py's part\n")
    update_section(report, "<!-- a: begin -->", "<!-- a: end -->", ["## A", "first"])
    update_section(report, "<!-- b: begin -->", "<!-- b: end -->", ["## B"])
    update_section(report, "<!-- a: begin -->", "<!-- a: end -->", ["## A", "second"])
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nrun.py's part\n\n<!-- a: begin -->")
    assert "second" in text and "first" not in text and text.count("<!-- a: begin -->") == 1 and "## B" in text


def test_wheel_parts_join_back_to_the_same_bytes_and_a_bad_part_is_refused(tmp_path):
    from gpu_wheel import join, split

    wheel = tmp_path / "onnxruntime_gpu-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(bytes(range(256)) * (5 * 4096 + 7))  # 5 MiB and a bit
    parts = split(wheel, tmp_path / "parts", part_mib=1)
    assert len(parts) == 6 and all(p.stat().st_size <= 1 << 20 for p in parts)
    joined = join(tmp_path / "parts", tmp_path / "out")
    assert joined.read_bytes() == wheel.read_bytes() and joined.name == wheel.name
    parts[2].write_bytes(parts[2].read_bytes()[:-1] + b"x")  # one byte changed in transit
    with pytest.raises(ValueError, match="sha256 does not match"):
        join(tmp_path / "parts", tmp_path / "again")
    assert not (tmp_path / "again").exists()  # nothing written for a bad set
    parts[3].unlink()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks/gpu_wheel.py"), "join", str(tmp_path / "parts"),
                             str(tmp_path / "again")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("gpu_wheel: ") and "missing" in result.stderr


@pytest.mark.slow
def test_the_gpu_check_runs_its_steps_on_the_cpu_provider(digits_repo, tmp_path):
    """The CUDA path's check, run here on the CPU provider (no GPU on this machine): the same code, so on a
    device it only swaps the provider. CPU against CPU must agree exactly."""
    import json
    import shutil

    repo = tmp_path / "models"
    shutil.copytree(digits_repo, repo)
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nkept\n")
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks/gpu_check.py"), "--provider", "cpu", "--seconds",
                             "0.2", "--repo", str(repo), "--output", str(report), "--json", str(tmp_path / "gpu.json")],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads((tmp_path / "gpu.json").read_text())
    assert figures["agreement"] == {"logits": 0.0, "probabilities": 0.0}
    assert figures["server"]["provider"] == "CPUExecutionProvider" and figures["server"]["max_abs_diff"] == 0.0
    assert set(figures["in_process"]) == {"session.run", "io binding"}
    assert all(rate > 0 for rates in figures["in_process"].values() for rate in rates.values())
    assert all(res["errors"] == 0 and res["requests"] > 0 for res in figures["server"]["loads"].values())
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "## GPU check" in text and "io binding" in text
