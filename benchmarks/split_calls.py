"""What splitting costs a large call: one `predict` of many rows through the SDK, which sends
requests of at most the server's max_rows_per_request, with 1 request in flight against 4
(PIPELINE_DEPTH, the default). One run, ratios within it.

    python benchmarks/split_calls.py                 # 50,000 rows, 5 repeats each (about 30 s); updates docs/benchmarks.md
    python benchmarks/split_calls.py --rows 20000 --limit 1024 --output /tmp/split.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.run import ROOT, candor, ensure_models, machine, update_section  # noqa: E402
from candor.client import Client  # noqa: E402
from candor.client import _client as sdk  # noqa: E402

BEGIN, END = "<!-- split calls: begin (benchmarks/split_calls.py) -->", "<!-- split calls: end -->"


def timed_predicts(target: str, rows: np.ndarray, depth: int, repeats: int) -> list[float]:
    sdk.PIPELINE_DEPTH = depth
    with Client(target, timeout=60) as client:
        client.predict(rows[:300], model="digits")  # learn the limit and the names outside the timing
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = client.predict(rows, model="digits")
            seconds.append(time.perf_counter() - start)
            assert len(result.probabilities) == len(rows)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--limit", type=int, default=4096, help="the server's --max-rows-per-request")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"), help="report to update")
    a = p.parse_args()
    repo = ROOT / "runs/bench/models"  # the models `make bench` trains
    ensure_models(repo)
    rows = np.random.default_rng(0).uniform(0, 16, size=(a.rows, 64)).astype(np.float32)
    server = candor(repo, "--max-rows-per-request", str(a.limit), "--max-queue-rows", str(8 * a.limit))
    try:
        results = {depth: timed_predicts(server.target, rows, depth, a.repeats) for depth in (1, sdk.PIPELINE_DEPTH)}
    finally:
        server.stop()
    one, many = (statistics.median(results[d]) for d in results)
    lines = ["## Large calls, split by the SDK", "",
             f"`python benchmarks/split_calls.py --rows {a.rows} --limit {a.limit}`; {machine()}.", "",
             f"One `predict` of {a.rows:,} digits rows; the server takes at most {a.limit} per request, so the SDK sends "
             f"{-(-a.rows // a.limit)} requests and joins the answers. Median of {a.repeats}.", "",
             "| requests in flight | seconds | rows/s |", "|---|---|---|",
             *(f"| {d} | {statistics.median(s):.3f} | {a.rows / statistics.median(s):,.0f} |" for d, s in results.items()),
             "", f"Pipelined / one at a time: **{one / many:.2f}x** the rows per second."]  # fmt: skip
    print(update_section(Path(a.output), BEGIN, END, lines))


if __name__ == "__main__":
    main()
