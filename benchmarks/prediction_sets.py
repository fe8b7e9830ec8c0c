"""What prediction sets cost: 256-row candor.v1 Predict with sets at coverage 0.9 (each served method)
against Predict without, on one server, each run paired with one without sets. Goal (issue 24): >= 0.9x the rows/s.

    python benchmarks/prediction_sets.py          # 16 paired rounds of 1 s (about 3 minutes); updates docs/benchmarks.md
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
VARIANTS = {"sets, recommended method": "sets:", "sets, lac": "sets:lac", "sets, aps": "sets:aps",
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


def row_of(name: str, results: list[dict], ratios: list[float] | None) -> str:
    med = {k: statistics.median(r[k] for r in results) for k in ("rows_per_s", "p50_ms", "server_cpu_us")}
    ratio, spread = ("**1.00**", "") if ratios is None else (f"**{statistics.median(ratios):.2f}**",
                                                              f"{min(ratios):.2f}-{max(ratios):.2f}")  # fmt: skip
    return (f"| {name} | {med['rows_per_s']:,.0f} | {med['p50_ms']:.2f} | {med['server_cpu_us']:.0f} | {ratio} | {spread} | "
            f"{sum(r['errors'] for r in results)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"), help="report to update")
    a = p.parse_args()
    repo = ROOT / "runs/bench/sets-models"
    recommended = ensure_model(repo)
    server = candor(repo)
    # Paired runs: each sets variant right next to a run without sets, the pair's order swapped every round, so
    # that a slow spell of this shared machine falls on both halves of a ratio rather than on one variant.
    without: list[dict] = []
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    ratios: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for round_ in range(a.rounds):
            for name, protocol in VARIANTS.items():
                pair = [("without", "candor"), (name, protocol)][:: -1 if round_ % 2 else 1]
                got = {label: load(server, "digits", a.rows, a.concurrency, a.seconds, proto) for label, proto in pair}
                without.append(got["without"])
                runs[name].append(got[name])
                ratios[name].append(got[name]["rows_per_s"] / got["without"]["rows_per_s"])
    finally:
        server.stop()
    lines = ["## Prediction sets", "",
             f"`python benchmarks/prediction_sets.py --rounds {a.rounds} --seconds {a.seconds:g}`; {machine()}.", "",
             f"{a.rows}-row candor.v1 Predict at concurrency {a.concurrency}, with prediction sets at coverage 0.9 and "
             f"without, on one server (digits; its recommended method is {recommended}). Each variant runs {a.rounds} "
             f"times, each time paired with a run without sets right before or after it (the order swapped every "
             f"round); the ratio is the median of the pairs' own ratios, and the range shows their spread. Goal: >= 0.9x.",
             "",
             "| request | rows/s | p50 ms | server CPU us/request | / without sets | range of the pairs | errors |",
             "|---|---|---|---|---|---|---|",
             row_of("without sets", without, None)]  # fmt: skip
    lines += [row_of(name, results, ratios[name]) for name, results in runs.items()]
    lines += ["", "Where the difference goes (2026-12-06, the steps of `PredictionSets.apply` timed by their thread CPU in "
              "the loaded server, RAPS, averaged over about 5,700 requests): the stable argsort 25 us, the affine score "
              "(one matrix product and a comparison) 15 us, the gather of the sorted probabilities 13 us, the sizes 7 us "
              "and the classes 6 us: 66 us, where the same calls take 28 us in a quiet process. Top-1 is then a slice of the "
              "sort rather than an argmax and a gather of its own (about 15 us saved), and the response carries two more "
              "small tensors (about 8 us). So a request with sets costs about 60 us more of the server's 720-1,000, and "
              "the ratio sits near 0.9: in the runs of 2026-12-06 the medians of 16 pairs were 0.87-0.94 and single "
              "pairs spread from about 0.5 to 1.4 on this shared machine, hence the paired runs and the median. "
              "A TopK node in the ONNX graph was tried instead of the argsort and "
              "costs more: onnxruntime runs it (about 23 us per 256 rows) even for requests that fetch none of its outputs."]
    print(update_section(Path(a.output), BEGIN, END, lines))


if __name__ == "__main__":
    main()
