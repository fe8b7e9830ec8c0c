"""What prediction sets cost: 256-row candor.v1 Predict with sets at coverage 0.9 (each served method)
against Predict without, on one server, taking turns within each round. Goal (issue 24): >= 0.9x the rows/s.

    python benchmarks/prediction_sets.py          # 5 rounds of 2 s per variant (about 1 minute); updates docs/benchmarks.md
    python benchmarks/prediction_sets.py --rounds 3 --seconds 1 --output /tmp/sets.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.run import ROOT, candor, load, machine, update_section  # noqa: E402
from candor.calibration.manifest import read_manifest  # noqa: E402

BEGIN, END = "<!-- prediction sets: begin (benchmarks/prediction_sets.py) -->", "<!-- prediction sets: end -->"
VARIANTS = {"without sets": "candor", "sets, recommended method": "sets:", "sets, lac": "sets:lac", "sets, aps": "sets:aps",
            "sets, raps": "sets:raps"}  # fmt: skip


def ensure_model(repo: Path) -> str:
    """A digits version with conformal scores (the benchmark's own repository: older bench models have none)."""
    import subprocess

    found = sorted(repo.glob("digits/[0-9]*/candor.json"))
    if found and read_manifest(found[-1]).conformal is not None:
        return read_manifest(found[-1]).conformal.recommended
    cmd = [sys.executable, "-m", "candor", "train", "--dataset", "digits", "--model-repository", str(repo), "--model", "digits",
           "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return read_manifest(sorted(repo.glob("digits/[0-9]*/candor.json"))[-1]).conformal.recommended


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"), help="report to update")
    a = p.parse_args()
    repo = ROOT / "runs/bench/sets-models"
    recommended = ensure_model(repo)
    server = candor(repo)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    try:
        for _ in range(a.rounds):
            for name, protocol in VARIANTS.items():
                runs[name].append(load(server, "digits", a.rows, a.concurrency, a.seconds, protocol))
    finally:
        server.stop()
    base = runs["without sets"]
    lines = ["## Prediction sets", "",
             f"`python benchmarks/prediction_sets.py --rounds {a.rounds} --seconds {a.seconds:g}`; {machine()}.", "",
             f"{a.rows}-row candor.v1 Predict at concurrency {a.concurrency}, with prediction sets at coverage 0.9 and "
             f"without, on one server (digits; its recommended method is {recommended}). The variants take turns in each "
             f"of {a.rounds} rounds; the ratio is the median of the rounds' own ratios. Goal: >= 0.9x.", "",
             "| request | rows/s | p50 ms | server CPU us/request | / without sets | errors |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, results in runs.items():
        ratio = statistics.median(r["rows_per_s"] / b["rows_per_s"] for r, b in zip(results, base, strict=True))
        med = {k: statistics.median(r[k] for r in results) for k in ("rows_per_s", "p50_ms", "server_cpu_us")}
        lines.append(f"| {name} | {med['rows_per_s']:,.0f} | {med['p50_ms']:.2f} | {med['server_cpu_us']:.0f} | "
                     f"**{ratio:.2f}** | {sum(r['errors'] for r in results)} |")  # fmt: skip
    lines += ["", "Where the difference goes: `python benchmarks/profile_server.py --repo runs/bench/sets-models --rows 256 "
              "--concurrency 8 --sets raps` puts about 12% of the server's samples in `PredictionSets.apply` (one stable "
              "argsort, one gather, two small matrix products and a boolean gather; top-k is a slice of the same sort). "
              "Alone, on the same 256 rows, it takes about 33 us; in the loaded server about 110 us of CPU, because every "
              "numpy call starts with caches the request's other work has cooled (after touching 4 MB it takes 95 us "
              "alone too). A TopK node in the ONNX graph was tried instead of the argsort and costs more: onnxruntime "
              "runs it (about 23 us per 256 rows) even for requests that fetch none of its outputs."]
    print(update_section(Path(a.output), BEGIN, END, lines))


if __name__ == "__main__":
    main()
