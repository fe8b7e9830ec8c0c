"""The reliability report: bad inputs and how each was answered, faults injected and what
survived, load held at the measured peak and for how long, memory before and after.

    python benchmarks/reliability.py                           # about 8 minutes; writes docs/reliability.md
    python benchmarks/reliability.py --soak-seconds 20 --output /tmp/r.md   # a quick look

Everything runs on 127.0.0.1 against real `candor serve` processes and stops by itself.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

from candor.client import CandorError
from candor.server.launch import ServerProcess, serve_process
from candor.v1 import inference_pb2 as pb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from run import machine  # noqa: E402  (the benchmark harness's machine line)

from tests.rpcs import declared_rpcs  # noqa: E402  (read from protos/, as the fuzz tests do)

INFER_TOKEN, ADMIN_TOKEN = "reliability-infer-0123456789", "reliability-admin-0123456789"
FAULT_TESTS = ["tests/server/test_faults.py", "tests/server/test_lifecycle.py::test_hot_reload_of_new_and_corrupt_versions",
               "tests/server/test_lifecycle.py::test_graceful_shutdown_loses_no_call_in_flight"]  # fmt: skip


# --- inputs -----------------------------------------------------------------------------------


def tensor(rows: np.ndarray, **overrides) -> pb.Tensor:
    fields = {"shape": list(rows.shape), "dtype": pb.DATA_TYPE_FLOAT32, "raw_data": rows.astype("<f4").tobytes()} | overrides
    return pb.Tensor(**fields)


def curated(rows: np.ndarray) -> list[tuple[str, str, bytes, str]]:
    """(RPC, what is wrong, serialized request, token) for named bad inputs; the last ones are fine, for contrast."""
    nan = rows[:2].copy()
    nan[0, 0] = np.nan
    predict = lambda **kw: pb.PredictRequest(**({"model": "digits", "inputs": tensor(rows[:2])} | kw)).SerializeToString()  # noqa: E731
    feedback = lambda items: pb.FeedbackRequest(model="digits", items=items).SerializeToString()  # noqa: E731
    P, F, I = "Predict", "Feedback", INFER_TOKEN  # noqa: E741
    return [
        (P, "no bearer token", predict(), ""),
        (P, "unknown bearer token", predict(), "not-a-known-token-0000"),
        (P, "undecodable bytes", b"\xff\xfe\xfd", I),
        (P, "empty model name", predict(model=""), I),
        (P, "unknown model", predict(model="nope"), I),
        (P, "unknown version", predict(version="99"), I),
        (P, "version is not a number", predict(version="latest"), I),
        (P, "10 features instead of 64", predict(inputs=tensor(rows[:2, :10])), I),
        (P, "raw_data shorter than the shape says", predict(inputs=tensor(rows[:2], raw_data=b"\0" * 10)), I),
        (P, "NaN in a row", predict(inputs=tensor(nan)), I),
        (P, "unknown dtype enum 99", predict(inputs=tensor(rows[:2], dtype=99)), I),
        (P, "empty batch [0, 64]", predict(inputs=tensor(rows[:0])), I),
        (P, "5000 rows (limit 4096)", predict(inputs=tensor(np.resize(rows, (5000, 64)))), I),
        (P, "3 MB message (limit 2 MB)", predict(inputs=tensor(np.resize(rows, (12000, 64)))), I),
        (P, "top_k 11 of 10 classes", predict(top_k=11), I),
        (F, "no items", feedback([]), I),
        (F, "label 10 of classes 0..9", feedback([pb.FeedbackItem(prediction_id="0" * 32, label=10)]), I),
        (F, "unknown prediction id", feedback([pb.FeedbackItem(prediction_id="0" * 32, label=1)]), I),
        (F, "probabilities not summing to 1", feedback([pb.FeedbackItem(label=1, probabilities=[0.5] * 10)]), I),
        ("GetModel", "unknown model", pb.GetModelRequest(name="nope").SerializeToString(), I),
        ("GetCalibration", "empty model name", pb.GetCalibrationRequest().SerializeToString(), I),
        ("Recalibrate", "infer role asks for an admin RPC", pb.RecalibrateRequest(model="digits").SerializeToString(), I),
        ("Recalibrate", "too little feedback", pb.RecalibrateRequest(model="digits", dry_run=True).SerializeToString(),
         ADMIN_TOKEN),
        (P, "(fine) two good rows", predict(), I),
    ]  # fmt: skip


def answer(channel: grpc.Channel, path: str, streaming: bool, payload: bytes, token: str = INFER_TOKEN) -> tuple[str, str]:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    try:
        if streaming:
            list(channel.stream_stream(path)(iter([payload]), timeout=20, metadata=metadata))
        else:
            channel.unary_unary(path)(payload, timeout=20, metadata=metadata)
        return "OK", ""
    except grpc.RpcError as e:
        return e.code().name, e.details() or ""


def inputs(target: str, rows: np.ndarray, random_per_rpc: int) -> tuple[list, dict[str, Counter]]:
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
        named = [(rpc, what, *answer(channel, f"/candor.v1.InferenceService/{rpc}", False, payload, token))
                 for rpc, what, payload, token in curated(rows)]  # fmt: skip
        rng = np.random.default_rng(0)
        sweep = {}
        for service, method, streaming in declared_rpcs():
            path = f"/{service}/{method}"
            payloads = [rng.bytes(int(rng.integers(0, 256))) for _ in range(random_per_rpc)]
            codes = Counter(answer(channel, path, streaming, payload)[0] for payload in payloads)
            sweep[f"{service.rsplit('.', 1)[-1]}/{method}"] = codes
    return named, sweep


# --- faults -----------------------------------------------------------------------------------


def docstrings() -> dict[str, str]:
    out = {}
    for path in {t.split("::")[0] for t in FAULT_TESTS}:
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                doc = ast.get_docstring(node) or ""
                out[node.name] = " ".join(doc.split("\n\n")[0].split())
    return out


def faults() -> list[tuple[str, str, str, float]]:
    """Run the fault tests; (test, what it injects and checks, outcome, seconds) each."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *FAULT_TESTS],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)  # fmt: skip
        cases = ET.parse(report).getroot().iter("testcase")
        docs = docstrings()
        rows = []
        for case in cases:
            name = case.get("name")
            outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
            described = docs.get(name, "") or name.removeprefix("test_").replace("_", " ")
            rows.append((name, described, outcome, float(case.get("time"))))
    return rows


# --- load and soak ----------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = Counter()
    for line in text.splitlines():
        m = re.match(r"(candor_queue_rows|candor_prediction_store_rows|candor_inflight_requests)(\{[^}]*\})? (\S+)", line)
        if m:
            out[m.group(1)] += float(m.group(3))
    return out


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


async def drive(target: str, X: np.ndarray, y: np.ndarray, seconds: float, concurrency: int, feedback_share: float,
                sample=None, interval: float = 10.0) -> dict:  # fmt: skip
    """Closed-loop Predict (8 rows) with feedback for a share of the answers; per-interval p99 and counts."""
    from candor.client import AsyncClient

    codes: Counter = Counter()
    windows: list[dict] = []
    current: list[float] = []
    accepted = 0
    async with AsyncClient(target, retries=0, timeout=30, token=INFER_TOKEN) as client:
        await client.predict(X[:8], model="digits")
        began = time.perf_counter()
        end = began + seconds

        async def caller(seed: int) -> None:
            nonlocal accepted
            rng = np.random.default_rng(seed)
            while time.perf_counter() < end:
                pick = rng.integers(0, len(X), 8)
                started = time.perf_counter()
                try:
                    result = await client.predict(X[pick], model="digits")
                    current.append(time.perf_counter() - started)
                    codes["OK"] += 1
                    if rng.random() < feedback_share:
                        answer = await client.feedback(result.prediction_ids, y[pick], model="digits")
                        accepted += answer.accepted  # after the await: `x += await f()` reads x before suspending
                except CandorError as e:
                    codes[e.code] += 1

        async def sampler() -> None:
            nonlocal current
            next_window = began + interval
            while time.perf_counter() < end:
                await asyncio.sleep(min(1.0, max(0.0, end - time.perf_counter())))
                if sample is not None:
                    sample()
                if time.perf_counter() >= next_window or time.perf_counter() >= end:
                    done, current = current, []
                    windows.append({"t": round(time.perf_counter() - began), "requests": len(done),
                                    "p99_ms": float(np.percentile(done, 99) * 1000) if done else None})  # fmt: skip
                    next_window += interval

        await asyncio.gather(sampler(), *(caller(s) for s in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "codes": codes, "windows": windows, "feedback_accepted": accepted,
            "requests_per_s": codes["OK"] / elapsed}  # fmt: skip


def soak(server: ServerProcess, metrics_port: int, X, y, seconds: float, concurrency: int) -> dict:
    peaks = {"candor_queue_rows": 0.0, "candor_prediction_store_rows": 0.0}

    def sample() -> None:
        now = scrape(metrics_port)
        for k in peaks:
            peaks[k] = max(peaks[k], now[k])

    rss_start = rss_mib(server.proc.pid)
    result = asyncio.run(drive(server.target, X, y, seconds, concurrency, 0.5, sample=sample))
    return result | {"rss_start_mib": rss_start, "rss_end_mib": rss_mib(server.proc.pid), "peaks": peaks}


def peak_concurrency(target: str, X, y, seconds: float) -> tuple[int, dict[int, float]]:
    """Requests/s at a few concurrencies (with feedback, as in the soak); the best one."""
    rates = {c: asyncio.run(drive(target, X, y, seconds, c, 0.5))["requests_per_s"] for c in (8, 32, 64)}
    return max(rates, key=rates.get), rates


# --- report -----------------------------------------------------------------------------------


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]) + "\n"


def render(named, sweep, fault_rows, peak, rates, soaked, settings: dict, command: str) -> str:
    codes = sorted({c for counts in sweep.values() for c in counts})
    out = [f"# Reliability\n\nRegenerate with `{command}` (all on 127.0.0.1; the server runs as its own process).\n",
           f"Machine: {machine()}\n", "## Inputs tried and how each was answered\n",
           "Named bad inputs, sent to a server with bearer-token auth on (the last row is a good request, for contrast):\n",
           table(["RPC", "input", "status", "message"], [[r, w, c, m[:110]] for r, w, c, m in named]),
           f"\n{sum(sweep[k].total() for k in sweep) // len(sweep)} random byte strings (0–255 bytes, seeded) per RPC, "
           "with a valid "
           "token; UNKNOWN or INTERNAL would be a bug. (The test suite adds hypothesis-generated well-formed but wrong "
           "messages for every RPC: tests/server/test_fuzz_rpcs.py.)\n",
           table(["RPC", *codes], [[k, *(sweep[k].get(c, 0) for c in codes)] for k in sweep]),
           "\n## Faults injected and what survived\n", "Each row is a test in the suite, run by this command just now:\n",
           table(["fault test", "what it injects and checks", "result", "s"],
                 [[n, d, o, f"{t:.1f}"] for n, d, o, t in fault_rows]),
           "\n## Load held\n",
           f"Peak search (Predict of 8 rows, feedback for half the answers, {settings['peak_seconds']:g} s each): "
           + ", ".join(f"concurrency {c}: {r:,.0f} req/s" for c, r in rates.items())
           + f". Soak at concurrency {peak}. The load comes from one Python process (the SDK's AsyncClient, "
           "Predict then Feedback) on the same cores as the server, so these rates are bounded by the client as much as "
           "by the server; docs/benchmarks.md measures the server alone.\n"]  # fmt: skip
    errors = {k: v for k, v in soaked["codes"].items() if k != "OK"}
    growth = soaked["rss_end_mib"] - soaked["rss_start_mib"]
    out.append(table(["measure", "value"], [
        ["held for", f"{soaked['seconds']:.0f} s at concurrency {peak}"],
        ["requests served (OK)", f"{soaked['codes']['OK']:,} ({soaked['requests_per_s']:,.0f}/s)"],
        ["feedback rows acknowledged", f"{soaked['feedback_accepted']:,}"],
        ["errors by code", ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"],
        ["server resident memory, start → end", f"{soaked['rss_start_mib']:.0f} MiB → {soaked['rss_end_mib']:.0f} MiB "
                                                 f"({growth:+.0f} MiB)"],
        ["largest queue seen (bound: max_queue_rows)", f"{soaked['peaks']['candor_queue_rows']:.0f} rows "
                                                       f"(≤ {settings['max_queue_rows']})"],
        ["largest prediction store seen (bound)", f"{soaked['peaks']['candor_prediction_store_rows']:.0f} rows "
                                                  f"(≤ {settings['prediction_store_rows']})"],
    ]))  # fmt: skip
    out.append("\np99 latency over time (each window 10 s):\n")
    out.append(table(["t (s)", "requests", "p99 (ms)"],
                     [[w["t"], w["requests"], f"{w['p99_ms']:.1f}" if w["p99_ms"] else "-"]
                      for w in soaked["windows"]]))  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--soak-seconds", type=float, default=300.0, help="how long to hold the peak load (default: 300)")
    p.add_argument("--peak-seconds", type=float, default=10.0, help="seconds per concurrency in the peak search (default: 10)")
    p.add_argument("--random-per-rpc", type=int, default=200, help="random byte strings per RPC (default: 200)")
    p.add_argument("--repo", default=str(ROOT / "runs/bench-models"), help="model repository (trained if empty)")
    p.add_argument("--output", default=str(ROOT / "docs/reliability.md"), help="where the report goes")
    p.add_argument("--skip-faults", action="store_true", help="leave out the fault tests (they take about a minute)")
    a = p.parse_args(argv)
    from sklearn.datasets import load_digits

    repo = Path(a.repo)
    if not list((repo / "digits").glob("[0-9]*/candor.json")):
        print("training the digits model ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "candor", "train", "--dataset", "digits", "--model-repository", str(repo), "--name",
                        "digits", "--no-progress"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    digits = load_digits()
    X, y = digits.data.astype(np.float32), digits.target
    settings = {"max_queue_rows": 8192, "prediction_store_rows": 20_000, "peak_seconds": a.peak_seconds}
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.write_text(f"{INFER_TOKEN}\n{ADMIN_TOKEN} admin\n")
        flags = ["--poll-interval", "0", "--log-level", "ERROR", "--auth-tokens-file", str(tokens), "--data-dir", f"{tmp}/data",
                 "--max-message-bytes", str(2 << 20), "--prediction-store-rows", str(settings["prediction_store_rows"]),
                 "--max-queue-rows", str(settings["max_queue_rows"])]  # fmt: skip
        with serve_process(repo, *flags) as server:
            print("inputs ...", file=sys.stderr, flush=True)
            named, sweep = inputs(server.target, X, a.random_per_rpc)
        fault_rows = []
        if not a.skip_faults:
            print("faults ...", file=sys.stderr, flush=True)
            fault_rows = faults()
        with serve_process(repo, *flags) as server:
            print("peak search and soak ...", file=sys.stderr, flush=True)
            peak, rates = peak_concurrency(server.target, X, y, a.peak_seconds)
            soaked = soak(server, server.ports[1], X, y, a.soak_seconds, peak)
    command = "python benchmarks/reliability.py" + (f" --soak-seconds {a.soak_seconds:g}" if a.soak_seconds != 300 else "")
    Path(a.output).write_text(render(named, sweep, fault_rows, peak, rates, soaked, settings, command), encoding="utf-8")
    print(f"Wrote {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
