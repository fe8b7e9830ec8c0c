"""Start-up costs a user feels, for this source tree and, optionally, another one (``--before``):

- ``import candor.client`` (the SDK on its base install) and which heavy packages it loads;
- ``candor serve`` from exec until its health is SERVING with the model READY (``--model-repository``);
- ``candor serve`` stopping at a bad setting (one line, exit 2).

    python benchmarks/startup.py --model-repository models
    python benchmarks/startup.py --model-repository models --before /tmp/before/src   # a worktree of an older commit

Each row is the median of ``--repeat`` runs, alternating the trees run by run so that a busy moment
of the machine hits both alike. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from candor.client import Client
from candor.server.launch import ServerProcess

SRC = Path(__file__).resolve().parent.parent / "src"
HEAVY = ("pydantic", "scipy", "onnxruntime", "grpc", "numpy")
PROBE = ("import json, sys, time; t = time.perf_counter(); import candor.client; "
         f"print(json.dumps([time.perf_counter() - t, [m for m in {HEAVY!r} if m in sys.modules]]))")  # fmt: skip


def _env(src: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(src)}


def import_client(src: Path) -> tuple[float, list[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=_env(src), capture_output=True, text=True, check=True)
    seconds, loaded = json.loads(out.stdout)
    return seconds, loaded


def serve_until_ready(src: Path, repo: Path) -> float:
    start = time.perf_counter()
    server = ServerProcess([sys.executable, "-m", "candor", "serve", "--model-repository", str(repo), "--grpc-port", "0",
                            "--metrics-port", "0", "--poll-interval-seconds", "0", "--data-dir", str(repo / ".startup-data")],
                           env=_env(src))  # fmt: skip
    with Client(server.target) as client:  # the model answering, not just the ports open
        while client.health() != "SERVING" or client.models()[0].state != "READY":
            time.sleep(0.005)
    ready = time.perf_counter() - start
    server.stop()
    return ready


def refused_setting(src: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "candor", "serve", "--max-batch-size", "0"], env=_env(src),
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 2:
        raise SystemExit(f"expected exit 2 from a bad setting, got {result.returncode}: {result.stderr}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-repository", type=Path, required=True)
    p.add_argument("--before", type=Path, help="src/ of another tree to compare with")
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args()
    trees = {"this tree": SRC} | ({"before": a.before} if a.before else {})
    rows: dict[str, dict[str, list[float]]] = {name: {"import": [], "serve": [], "refused": []} for name in trees}
    loaded = {}
    for _ in range(a.repeat):
        for name, src in trees.items():
            seconds, loaded[name] = import_client(src)
            rows[name]["import"].append(seconds)
            rows[name]["serve"].append(serve_until_ready(src, a.model_repository))
            rows[name]["refused"].append(refused_setting(src))
    print("| tree | `import candor.client` | heavy packages it loads | `candor serve` to ready | bad setting to exit 2 |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        med = {k: statistics.median(v) for k, v in r.items()}
        print(f"| {name} | {med['import'] * 1000:.0f} ms | {', '.join(loaded[name]) or 'none'} | {med['serve']:.2f} s "
              f"| {med['refused']:.2f} s |")  # fmt: skip
    print(f"\nmedians of {a.repeat} runs each, alternating; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
