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
import urllib.error
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
        (P, "3 MB message (limit derived from digits: 1.06 MiB)", predict(inputs=tensor(np.resize(rows, (12000, 64)))), I),
        (P, "top_k 11 of 10 classes", predict(top_k=11), I),
        (P, "features finite but huge (3.4e38): outputs overflow", predict(inputs=tensor(np.full((2, 64), 3.4e38))), I),
        (P, "version '²' (isdigit, not int)", predict(version="²"), I),
        (P, "version '١' (Arabic-Indic one)", predict(version="١"), I),
        (P, "version of 5,000 digits", predict(version="9" * 5000), I),
        (P, "512 KiB model name", predict(model="m" * (512 << 10)), I),
        (P, "200,000 typed floats for shape [1, 64]", predict(inputs=pb.Tensor(shape=[1, 64], float_data=[0.5] * 200_000)), I),
        (F, "prediction id of 1 MiB", feedback([pb.FeedbackItem(prediction_id="x" * (1 << 20), label=1)]), I),
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


# --- attacks ----------------------------------------------------------------------------------


def vm(pid: int, field: str) -> float:
    """A /proc/PID/status figure in MiB (VmRSS now, VmHWM the peak) or a count (Threads)."""
    value = int(Path(f"/proc/{pid}/status").read_text().split(f"{field}:")[1].split()[0])
    return value if field == "Threads" else value / 1024


def metrics_status(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"


def flood(server: ServerProcess) -> list[list[str]]:
    """Unauthenticated and unthrottled callers against a server whose message limit an operator raised to 64 MiB."""
    import socket
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    pid, rows = server.proc.pid, []
    options = [("grpc.max_send_message_length", 64 << 20)]
    rss, peak = vm(pid, "VmRSS"), vm(pid, "VmHWM")
    with grpc.insecure_channel(server.target, options=options) as channel:
        answers = Counter(answer(channel, "/candor.v1.InferenceService/Predict", False, b"\x0a" * 60_000_000, "")[0]
                          for _ in range(6))  # fmt: skip
    rows.append(["6 Predict calls of 60 MB each, no token", dict(answers),
                 f"RSS {rss:.0f} → {vm(pid, 'VmRSS'):.0f} MiB, peak {peak:.0f} → {vm(pid, 'VmHWM'):.0f} MiB"])
    with grpc.insecure_channel(server.target, compression=grpc.Compression.Gzip) as channel:
        code, message = answer(channel, "/candor.v1.InferenceService/Predict", False, b"\0" * (80 << 20), INFER_TOKEN)
    rows.append(["80 MiB of zeros, gzip (80 KiB on the wire)", code, message[:80]])
    rss = vm(pid, "VmRSS")
    with grpc.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch
        streams = [watch(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(200)]
        codes = Counter()
        for s in streams:
            try:
                next(s)
                codes["OK (open)"] += 1
            except grpc.RpcError as e:
                codes[e.code().name] += 1
        after = vm(pid, "VmRSS")
        for s in streams:
            s.cancel()
    rows.append(["200 health Watch streams, no token", dict(codes),
                 f"RSS {rss:.0f} → {after:.0f} MiB (UNAVAILABLE: past HTTP/2's 128 streams per connection)"])
    threads = vm(pid, "Threads")
    half = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", server.ports[1]), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        half.append(sock)
    status = metrics_status(server.ports[1])
    rows.append(["300 half-sent requests to /metrics", f"a scrape meanwhile: {status}",
                 f"server threads {threads:.0f} → {vm(pid, 'Threads'):.0f}"])
    for sock in half:
        sock.close()
    never = threading.Event()

    def no_body():
        never.wait(120)
        return
        yield

    started = time.monotonic()
    with grpc.insecure_channel(server.target) as channel:
        call = channel.stream_unary("/candor.v1.InferenceService/Predict").future(
            no_body(), metadata=(("authorization", f"Bearer {INFER_TOKEN}"),))  # fmt: skip
        try:
            call.result(timeout=90)
            outcome = "OK"
        except grpc.RpcError as e:
            outcome = e.code().name
        except Exception:  # the future timed out: the server never ended the call
            outcome = "still open after 90 s"
    never.set()
    rows.append(["a Predict whose body never arrives, no deadline", outcome, f"ended after {time.monotonic() - started:.1f} s"])
    return rows


def typed_flood(server: ServerProcess, X: np.ndarray) -> list[str]:
    """15M typed floats for shape [1, 64] (60 MB, under a 64 MiB limit) while another caller predicts single rows."""
    import threading

    pid = server.proc.pid
    rss = vm(pid, "VmRSS")
    big = pb.PredictRequest(model="digits", inputs=pb.Tensor(shape=[1, 64], float_data=np.zeros(15_000_000, np.float32)))
    payload = big.SerializeToString()
    latencies: list[float] = []
    done = threading.Event()

    def single_rows() -> None:
        with grpc.insecure_channel(server.target) as channel:
            while not done.is_set():
                t = time.perf_counter()
                answer(channel, "/candor.v1.InferenceService/Predict", False, pb.PredictRequest(
                    model="digits", inputs=tensor(X[:1])).SerializeToString())  # fmt: skip
                latencies.append(time.perf_counter() - t)

    thread = threading.Thread(target=single_rows)
    thread.start()
    time.sleep(0.5)
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        code, _ = answer(channel, "/candor.v1.InferenceService/Predict", False, payload)
    time.sleep(0.5)
    done.set()
    thread.join()
    return ["15M typed floats, shape [1, 64], beside single-row callers", code,
            f"others' worst latency {max(latencies) * 1000:.0f} ms; RSS {rss:.0f} → {vm(pid, 'VmRSS'):.0f} MiB"]


def poisoning(target: str, metrics_port: int, X: np.ndarray) -> list[list[str]]:
    """The issue's shared-state attacks, with an infer token and then an admin one."""
    from candor.client import Client

    rows, rng = [], np.random.default_rng(0)
    with Client(target, token=INFER_TOKEN) as c:
        try:
            c.predict(np.full((1, 64), 3.4e38, np.float32), model="digits")
            rows.append(["Predict of finite but huge features", "OK", ""])
        except CandorError as e:
            rows.append(["Predict of finite but huge features", e.code, str(e)[:90]])
        rows.append(["/metrics after it", metrics_status(metrics_port), ""])
        logits = c.predict(X[:400], model="digits", return_logits=True).logits
        accepted = c.feedback(None, rng.integers(0, 10, 400), model="digits", logits=logits).accepted
        rows.append(["400 client-recorded rows with random labels (infer role)", f"{accepted} ACCEPTED", ""])
    with Client(target, token=ADMIN_TOKEN) as admin:
        for opted in (False, True):
            what = "admin Recalibrate" + (" --include-client-recorded" if opted else "")
            try:
                r = admin.recalibrate("digits", include_client_recorded=opted)
                rows.append([what, "published" if r.published else "not published",
                             f"T {r.old_temperature:.2f} → {r.new_temperature:.2f}; validation NLL {r.validation_nll[0]:.3f} "
                             f"→ {r.validation_nll[1]:.3f}; {r.message[:60]}"])  # fmt: skip
            except CandorError as e:
                rows.append([what, e.code, str(e)[:90]])
    return rows


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


def render(named, sweep, attacks, fault_rows, peak, rates, soaked, settings: dict, command: str) -> str:
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
           "\n## Attacks on shared state and resources\n",
           "Shared state: a server with tokens, the infer role for the first rows, admin for Recalibrate. Resources: a "
           "server whose operator raised the message limit to 64 MiB (the default is derived from the models, 1.06 MiB "
           "for digits, which refuses all of these bodies outright). The goals: RSS growth under the unauthenticated "
           "flood under 50 MiB, no request makes /metrics fail, no role below admin changes what a recalibration "
           "publishes.\n",
           table(["attack", "answer", "measured"], attacks),
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
        subprocess.run([sys.executable, "-m", "candor", "train", "--dataset", "digits", "--model-repository", str(repo),
                        "--model", "digits", "--no-progress"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    digits = load_digits()
    X, y = digits.data.astype(np.float32), digits.target
    settings = {"max_queue_rows": 8192, "prediction_store_rows": 20_000, "peak_seconds": a.peak_seconds}
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.write_text(f"{INFER_TOKEN}\n{ADMIN_TOKEN} admin\n")
        flags = ["--poll-interval-seconds", "0", "--log-level", "ERROR", "--auth-tokens-file", str(tokens),
                 "--data-dir", f"{tmp}/data",
                 "--prediction-store-rows", str(settings["prediction_store_rows"]),
                 "--max-queue-rows", str(settings["max_queue_rows"])]  # fmt: skip
        with serve_process(repo, *flags) as server:
            print("inputs ...", file=sys.stderr, flush=True)
            named, sweep = inputs(server.target, X, a.random_per_rpc)
            attacks = poisoning(server.target, server.ports[1], X)
        print("attacks ...", file=sys.stderr, flush=True)
        open_flags = ["--poll-interval-seconds", "0", "--log-level", "ERROR", "--data-dir", f"{tmp}/open-data",
                      "--default-deadline-seconds",
                      "60", "--max-message-bytes", str(64 << 20)]  # fmt: skip
        with serve_process(repo, *open_flags, "--auth-tokens-file", str(tokens)) as server:
            attacks += flood(server)
        with serve_process(repo, *open_flags) as server:
            attacks.append(typed_flood(server, X))
        fault_rows = []
        if not a.skip_faults:
            print("faults ...", file=sys.stderr, flush=True)
            fault_rows = faults()
        with serve_process(repo, *flags) as server:
            print("peak search and soak ...", file=sys.stderr, flush=True)
            peak, rates = peak_concurrency(server.target, X, y, a.peak_seconds)
            soaked = soak(server, server.ports[1], X, y, a.soak_seconds, peak)
    command = "python benchmarks/reliability.py" + (f" --soak-seconds {a.soak_seconds:g}" if a.soak_seconds != 300 else "")
    Path(a.output).write_text(render(named, sweep, attacks, fault_rows, peak, rates, soaked, settings, command), encoding="utf-8")
    print(f"Wrote {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
