"""What the fleet store costs and gives: single-row Predict at concurrency 64 with the prediction
log on PostgreSQL against the embedded SQLite default, and feedback rows joined per second
through a replica other than the one that predicted.

    python benchmarks/fleet.py                  # about a minute; updates docs/benchmarks.md
    python benchmarks/fleet.py --seconds 2 --output /tmp/fleet.md

It starts its own throwaway PostgreSQL (Debian's postgresql package, as the tests do).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the tests' PostgreSQL helper and run.py's load driver

from benchmarks.run import candor, ensure_models, load, machine, update_section  # noqa: E402
from candor.client import Client  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402

BEGIN, END = "<!-- fleet: begin (benchmarks/fleet.py) -->", "<!-- fleet: end -->"


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        lines = [line for line in r.read().decode().splitlines() if line.startswith(name)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def joined_per_second(repo: Path, url: str, rows: int) -> tuple[float, int]:
    """Predict ``rows`` on replica A, then send every label through replica B: joined rows per second."""
    a, b = candor(repo, "--store", url), candor(repo, "--store", url)
    try:
        X = np.random.default_rng(0).normal(size=(256, 64)).astype(np.float32)
        with Client(a.target) as ca, Client(b.target) as cb:
            ids = [pid for _ in range(rows // 256) for pid in ca.predict(X, model="digits").prediction_ids]
            while metric(a.ports[1], "candor_prediction_log_rows_total") < len(ids):
                time.sleep(0.1)
            labels = np.zeros(len(ids), dtype=int)
            began, accepted = time.perf_counter(), 0
            for i in range(0, len(ids), 1000):
                accepted += cb.feedback(ids[i : i + 1000], labels[i : i + 1000], model="digits").accepted
            return accepted / (time.perf_counter() - began), accepted
    finally:
        a.stop()
        b.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run (default: 5)")
    parser.add_argument("--rows", type=int, default=20480, help="rows labelled through the other replica")
    parser.add_argument("--repo", default=str(HERE.parent / "runs/bench/models"), help="where the benchmark models live")
    parser.add_argument("--output", default=str(HERE.parent / "docs/benchmarks.md"), help="report to update")
    args = parser.parse_args()
    repo = Path(args.repo)
    ensure_models(repo)
    cluster = PostgresCluster()
    data = Path(tempfile.mkdtemp(prefix="candor-bench-"))
    try:
        results = {}
        for name, flags in (("SQLite (embedded default)", ["--data-dir", str(data)]),
                            ("PostgreSQL", ["--store", cluster.new_database()])):  # fmt: skip
            server = candor(repo, *flags)
            try:
                results[name] = load(server, "digits", 1, 64, args.seconds)
                results[name]["dropped"] = metric(server.ports[1], "candor_prediction_log_dropped_rows_total")
            finally:
                server.stop()
        per_second, joined = joined_per_second(repo, cluster.new_database(), args.rows)
    finally:
        cluster.close()
        shutil.rmtree(data, ignore_errors=True)

    sqlite, pg = results["SQLite (embedded default)"], results["PostgreSQL"]
    lines = ["## The fleet store", "", f"`python benchmarks/fleet.py --seconds {args.seconds:g}`; {machine()}.", "",
             "| single-row Predict, concurrency 64, prediction log on | req/s | p50 ms | p99 ms | log rows dropped |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in results.items():
        lines.append(f"| {name} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['dropped']:.0f} |")
    lines += ["", f"PostgreSQL / SQLite: **{pg['requests_per_s'] / sqlite['requests_per_s']:.2f}** (goal: at least 0.9).", "",
              f"Feedback through another replica: {joined:,} rows predicted on replica A, labelled through replica B in "
              f"batches of 1,000 (each joined from the shared log): **{per_second:,.0f} rows/s**."]  # fmt: skip
    print(update_section(Path(args.output), BEGIN, END, lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
