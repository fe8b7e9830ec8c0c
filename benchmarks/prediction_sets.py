"""What prediction sets cost: 256-row candor.v1 Predict with sets at coverage 0.9 (each served method)
against Predict without, on one server, each run paired with one without sets; the same for the numpy path
(a second server with CANDOR_BENCHMARK_SKIP=native); and what ranking the rows costs the event loop on each path,
timed inside two more servers (benchmarks/sets_step_timer) and alone. Goal (issue 24): >= 0.9x the rows/s.

    python benchmarks/prediction_sets.py          # 16 paired rounds of 1 s, 4 timed rounds of 3 s (about 8 minutes)
    python benchmarks/prediction_sets.py --rounds 3 --seconds 1 --step-rounds 1 --output /tmp/sets.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.run import ROOT, candor, load, machine, update_section  # noqa: E402
from candor.calibration.manifest import read_manifest  # noqa: E402
from candor.server.core.ranked_sets import BUILT  # noqa: E402
from candor.server.core.sets import PredictionSets  # noqa: E402

BEGIN, END = "<!-- prediction sets: begin (benchmarks/prediction_sets.py) -->", "<!-- prediction sets: end -->"
NUMPY_PATH = "sets, recommended method, numpy path"
# name: (protocol, server); the numpy path's runs pair with runs without sets on its own server
VARIANTS = {"sets, recommended method": ("sets:", "kernel"), "sets, lac": ("sets:lac", "kernel"),
            "sets, aps": ("sets:aps", "kernel"), "sets, raps": ("sets:raps", "kernel"),
            NUMPY_PATH: ("sets:", "numpy")}  # fmt: skip


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


def row_of(name: str, results: list[dict], ratios: list[float] | None, loop_extra: list[float] | None) -> str:
    med = {k: statistics.median(r[k] for r in results) for k in ("rows_per_s", "p50_ms", "server_cpu_us", "loop_cpu_us")}
    ratio, spread = ("**1.00**", "") if ratios is None else (f"**{statistics.median(ratios):.2f}**",
                                                              f"{min(ratios):.2f}-{max(ratios):.2f}")  # fmt: skip
    extra = "" if loop_extra is None else f"{statistics.median(loop_extra):+.0f}"
    return (f"| {name} | {med['rows_per_s']:,.0f} | {med['p50_ms']:.2f} | {med['server_cpu_us']:.0f} | "
            f"{med['loop_cpu_us']:.0f} | {extra} | {ratio} | {spread} | {sum(r['errors'] for r in results)} |")


def apply_alone(repo: Path, rows: int) -> dict[str, float]:
    """Microseconds of one PredictionSets.serve (top-1 and the sets) on the version's own probabilities for ``rows``
    of scikit-learn's digits, in this quiet process: the kernel and the numpy path, best of several repeats."""
    import onnxruntime
    from sklearn.datasets import load_digits

    manifest_path = sorted(repo.glob("digits/[0-9]*/candor.json"))[-1]
    sets = PredictionSets.load(manifest_path.parent, read_manifest(manifest_path))
    session = onnxruntime.InferenceSession(str(manifest_path.parent / "model.onnx"), providers=["CPUExecutionProvider"])
    digits = np.resize(load_digits().data.astype(np.float32), (rows, 64))
    (probs,) = session.run(["probabilities"], {"input": digits})
    rule = sets.rule(sets.spec.default_coverage)
    took = {}
    for label, compiled in (("kernel", True), ("numpy path", False)):
        timer = timeit.Timer(lambda c=compiled: PredictionSets.serve(rule, probs, 1, compiled=c))
        took[label] = min(timer.repeat(repeat=7, number=2000)) / 2000 * 1e6
    return took


def step_costs(repo: Path, rows: int, concurrency: int, rounds: int, seconds: float) -> dict[str, dict]:
    """Event-loop CPU per request of ranking the rows (benchmarks/sets_step_timer), in two servers of their own: with
    the kernel and with the numpy path, each loaded ``rounds`` times with sets and without."""
    found = {}
    with tempfile.TemporaryDirectory(prefix="candor-steps-") as scratch:
        servers = {}
        for label, skip in (("kernel", ""), ("numpy path", "native")):
            env = {"PYTHONPATH": str(HERE / "sets_step_timer"), "CANDOR_STEP_TIMES": f"{scratch}/{skip or 'kernel'}.json",
                   "CANDOR_BENCHMARK_SKIP": skip}  # fmt: skip
            servers[label] = (candor(repo, env=env), env["CANDOR_STEP_TIMES"])
        try:
            for _ in range(rounds):
                for server, _path in servers.values():
                    for protocol in ("candor", "sets:"):
                        load(server, "digits", rows, concurrency, seconds, protocol)
        finally:
            for server, _path in servers.values():
                server.stop()
        for label, (_server, path) in servers.items():
            found[label] = json.loads(Path(path).read_text())
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--step-rounds", type=int, default=4, help="rounds of 3 s for the instrumented servers")
    p.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"), help="report to update")
    a = p.parse_args()
    repo = ROOT / "runs/bench/sets-models"
    recommended = ensure_model(repo)
    if not BUILT:
        raise SystemExit("the compiled kernel candor.server.core._ranked_sets is not built: reinstall with a C compiler")
    alone = apply_alone(repo, a.rows)
    servers = {"kernel": candor(repo), "numpy": candor(repo, env={"CANDOR_BENCHMARK_SKIP": "native"})}
    # Paired runs: each sets variant right next to a run without sets on the same server, the pair's order swapped
    # every round, so that a slow spell of this shared machine falls on both halves of a ratio rather than on one.
    without: dict[str, list[dict]] = {label: [] for label in servers}
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    ratios: dict[str, list[float]] = {name: [] for name in VARIANTS}
    loop_extra: dict[str, list[float]] = {name: [] for name in VARIANTS}  # event-loop CPU over the pair's without
    try:
        for round_ in range(a.rounds):
            for name, (protocol, on) in VARIANTS.items():
                pair = [("without", "candor"), (name, protocol)][:: -1 if round_ % 2 else 1]
                got = {label: load(servers[on], "digits", a.rows, a.concurrency, a.seconds, proto) for label, proto in pair}
                without[on].append(got["without"])
                runs[name].append(got[name])
                ratios[name].append(got[name]["rows_per_s"] / got["without"]["rows_per_s"])
                loop_extra[name].append(got[name]["loop_cpu_us"] - got["without"]["loop_cpu_us"])
    finally:
        for server in servers.values():
            server.stop()
    steps = step_costs(repo, a.rows, a.concurrency, a.step_rounds, 3.0)
    lines = ["## Prediction sets", "",
             f"`python benchmarks/prediction_sets.py --rounds {a.rounds} --seconds {a.seconds:g}`; {machine()}.", "",
             f"{a.rows}-row candor.v1 Predict at concurrency {a.concurrency}, with prediction sets at coverage 0.9 and "
             f"without (digits, 10 classes; its recommended method is {recommended}). The sets come from the compiled "
             f"kernel (`candor.server.core._ranked_sets`, one pass per request), and on a second server from the numpy "
             f"path it replaces (`CANDOR_BENCHMARK_SKIP=native`). Each variant runs {a.rounds} times, each time paired "
             f"with a run without sets on the same server right before or after it (the order swapped every round); "
             f"the ratio is the median of the pairs' own ratios, the range shows their spread, and *loop us more* is "
             f"the median over the pairs of the event-loop thread's extra CPU per request. Goal: >= 0.9x.",
             "",
             "| request | rows/s | p50 ms | server CPU us/request | event loop us/request | loop us more | "
             "/ without sets | range of the pairs | errors |",
             "|---|---|---|---|---|---|---|---|---|",
             row_of("without sets", without["kernel"], None, None)]  # fmt: skip
    lines += [row_of(name, results, ratios[name], loop_extra[name]) for name, results in runs.items() if name != NUMPY_PATH]
    lines += [row_of("without sets, numpy-path server", without["numpy"], None, None),
              row_of(NUMPY_PATH, runs[NUMPY_PATH], ratios[NUMPY_PATH], loop_extra[NUMPY_PATH])]
    lines += ["", "What ranking a request's rows costs the event loop, by its thread's CPU clock: `PredictionSets.serve` "
              "(the sets and the top-1) for a request with sets, `top_classes` (an argmax and a gather) for one without; "
              f"two more servers of the same version, one per path, with benchmarks/sets_step_timer loaded, {a.step_rounds} "
              "rounds of 3 s with sets and without each. Alone is the same step in this process, not under load "
              f"({a.rows} digits rows through the version's model, best of 7 x 2,000 calls).", "",
              "| path | requests | with sets: us per request | without: us per request | sets cost the loop | alone: with sets |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for label, got in steps.items():
        with_sets, without_sets = got["sets"], got["top-k"]
        extra = with_sets["us_per_call"] - without_sets["us_per_call"]
        lines.append(f"| {label} | {with_sets['calls'] + without_sets['calls']:,} | {with_sets['us_per_call']:.1f} | "
                     f"{without_sets['us_per_call']:.1f} | **{extra:+.1f} us** | {alone[label]:.1f} us |")  # fmt: skip
    lines += ["", "Each step costs the loaded server several times what it costs alone (the load generator and the "
              "server share two cores). The numpy path is six to eight array calls, each paying that; the kernel is one. "
              "Where no C compiler is at hand the install goes on without the kernel and the server logs that the numpy "
              "path serves the sets."]  # fmt: skip
    print(update_section(Path(a.output), BEGIN, END, lines))


if __name__ == "__main__":
    main()
