"""Throughput and latency of raw onnxruntime, a bare gRPC echo server and the
Candor server, measured in one invocation on one machine.

    python benchmarks/run.py                     # about four minutes; writes docs/benchmarks.md
    python benchmarks/run.py --seconds 1 --output /tmp/b.md   # a quick look

Load comes from a separate process (benchmarks/load.py), closed loop, on
127.0.0.1. Numbers are for the machine they ran on; the report says which.
The explanation at the end of the report is benchmarks/reading.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from candor.server.launch import ServerProcess, serve_process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ECHO_READY = re.compile(r"echo on 127\.0\.0\.1:(\d+)")
BATCHES = (1, 8, 64, 256, 512)
CONCURRENCY = (1, 8, 64)
MODELS = {  # name: extra `candor train` flags
    "digits": [],
    "heavy": ["--width", "2048", "--depth", "3", "--epochs", "3", "--patience", "2"],
}


def ensure_models(repo: Path, names: tuple[str, ...] = tuple(MODELS)) -> None:
    for name, flags in ((n, MODELS[n]) for n in names):
        if list((repo / name).glob("[0-9]*/candor.json")):
            continue
        print(f"training the {name} model for the benchmark ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "candor", "train", "--dataset", "digits", "--model-repository", str(repo), "--model", name,
               "--no-progress", *flags]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def raw_onnxruntime(model_path: Path, seconds: float) -> dict[int, float]:
    """Rows/s of session.run in this process at each batch size, with the
    session options the server uses by default (so the ratio is about serving)."""
    from candor.server.core.sessions import CPU, create_session
    from candor.server.core.settings import Settings

    defaults = Settings()
    session, _ = create_session(str(model_path), [CPU], defaults.intra_op_threads, defaults.allow_spinning)
    features = session.get_inputs()[0].shape[1]
    out = {}
    for batch in BATCHES:
        X = np.random.default_rng(0).normal(size=(batch, features)).astype(np.float32)
        session.run(None, {"input": X})
        runs, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds / len(BATCHES):
            session.run(None, {"input": X})
            runs += 1
        out[batch] = runs * batch / (time.perf_counter() - began)
    return out


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and every process below it (the workers of ``--workers N``)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / tick  # utime, stime
        todo.extend(children.get(p, []))
    return total


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s main thread: a server's event loop (its tid is the pid)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(server: ServerProcess, model: str, rows: int, concurrency: int, seconds: float, protocol: str = "candor",
         connections: int = 1, features: int = 64) -> dict:  # fmt: skip
    """One closed-loop run from a separate process, plus CPU time per request over it: the server's (all its
    threads and workers), its event-loop thread's, and the load generator's own (it shares the cores)."""
    cmd = [sys.executable, str(HERE / "load.py"), server.target, model, str(features), str(rows), str(concurrency),
           str(seconds), protocol, str(connections)]  # fmt: skip
    pid = server.proc.pid
    before, loop_before = process_tree_cpu(pid), main_thread_cpu(pid)
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Warm-up calls fall inside the server's CPU window too: a handful against thousands, noted in the report.
    per_request = 1e6 / max(1, out["requests"])
    out["server_cpu_us"] = (process_tree_cpu(pid) - before) * per_request
    out["loop_cpu_us"] = (main_thread_cpu(pid) - loop_before) * per_request
    out["client_cpu_us"] = out["cpu_s"] * per_request  # over the timed load only, not its start
    return out


DATA_ROOT = tempfile.TemporaryDirectory(prefix="candor-bench-")  # removed when the benchmark exits


def candor(repo: Path, *flags: str, env: dict | None = None) -> ServerProcess:
    """A Candor server on a store of its own: a prediction log left by earlier runs (24 h of it by default)
    would make each run slower than the last."""
    data = tempfile.mkdtemp(dir=DATA_ROOT.name)
    return serve_process(repo, "--poll-interval-seconds", "0", "--log-level", "WARNING", "--data-dir", data, *flags, env=env)


def update_section(path: Path, begin: str, end: str, body: list[str]) -> str:
    """Replace the part of the report between the markers ``begin`` and ``end`` (or append it): each
    benchmark script owns one section of docs/benchmarks.md. Returns the section written."""
    section = "\n".join([begin, "", *body, "", end]) + "\n"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
    return section


def machine() -> str:
    import grpc
    import onnxruntime

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
            f"grpcio {grpc.__version__}, {platform.system()} {platform.release()}")  # fmt: skip


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def fmt(r: dict) -> list[str]:
    return [f"{r['requests_per_s']:,.0f}", f"{r['rows_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
            f"{r['server_cpu_us']:,.0f}", str(r["errors"])]  # fmt: skip


LOADS = {"1 row x 1": (1, 1), "1 row x 8": (1, 8), "1 row x 64": (1, 64), "64 rows x 64": (64, 64),
         "256 rows x 8": (256, 8), "4096 rows x 2": (4096, 2)}  # fmt: skip
PROTOCOLS = {"candor": "candor.v1 Predict", "kserve": "KServe v2 ModelInfer"}
PROFILES = {"1x64": (1, 64), "256x8": (256, 8)}
BASELINE = "f22811e"  # main before issue 23 (speed II); its profiles are stored in benchmarks/baseline/
SERVERS = ("echo", "bare", "candor")
MONITORING = {"as deployed (log and drift on)": "", "prediction log off": "log", "drift off": "drift",
              "both off": "log,drift"}  # fmt: skip
WORKER_LOADS = {"1 row x 64": (1, 64), "256 rows x 8": (256, 8)}
BARE_READY = re.compile(r"bare on 127\.0\.0\.1:(\d+)")


def interleaved(servers: dict[str, ServerProcess], model: str, rows: int, concurrency: int, seconds: float,
                rounds: int, protocol: str = "candor", connections: int = 1) -> dict[str, dict]:  # fmt: skip
    """Each server loaded in turn, ``rounds`` times over: a slow spell of a shared machine then falls on every
    server alike. Per server the median of each figure; ``ratio`` is, per server, the median over rounds of
    its rows/s over the first server's in the same round."""
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, server in servers.items():
            runs[name].append(load(server, model, rows, concurrency, seconds, protocol, connections))
    first = next(iter(servers))
    out = {}
    for name, results in runs.items():
        figures = {k: statistics.median(r[k] for r in results) for k in ("requests_per_s", "rows_per_s", "p50_ms",
                                                                           "p99_ms", "server_cpu_us", "loop_cpu_us",
                                                                           "client_cpu_us")}  # fmt: skip
        figures["errors"] = sum(r["errors"] for r in results)
        figures["ratio"] = statistics.median(r["rows_per_s"] / f["rows_per_s"] for r, f in zip(results, runs[first],
                                                                                                 strict=True))  # fmt: skip
        figures["rounds"] = [r["rows_per_s"] for r in results]
        out[name] = figures
    return out


def paired(results: dict[str, dict], load_name: str, over: str, under: str) -> float:
    """Median over rounds of ``over``'s rows/s divided by ``under``'s, at one load."""
    a, b = results[over][load_name]["rounds"], results[under][load_name]["rounds"]
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def bare(model_path: Path) -> ServerProcess:
    return ServerProcess([sys.executable, str(HERE / "bare_server.py"), "0", str(model_path)], BARE_READY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each load run (default: 2)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per load (default: 5)")
    parser.add_argument("--repo", default=str(ROOT / "runs/bench/models"), help="where the benchmark models live")
    parser.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"), help="report file (default: docs/benchmarks.md)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    args = parser.parse_args()
    repo = Path(args.repo)
    ensure_models(repo)
    s, rounds = args.seconds, args.rounds
    results: dict = {"raw": {}, "loads": {}, "monitoring": {}, "heavy": {}, "workers": {}, "profiles": {}, "edge": {}}
    digits = newest_model(repo, "digits")
    for name in MODELS:
        results["raw"][name] = raw_onnxruntime(newest_model(repo, name), s)

    with (ServerProcess([sys.executable, str(HERE / "echo_server.py"), "0", "10"], ECHO_READY) as echo,
          bare(digits) as bare_server, candor(repo) as server):  # fmt: skip
        trio = {"echo": echo, "bare": bare_server, "candor": server}
        for protocol in PROTOCOLS:
            by_load = {name: interleaved(trio, "digits", r, c, s, rounds, protocol) for name, (r, c) in LOADS.items()}
            results["loads"][protocol] = {srv: {name: by_load[name][srv] for name in LOADS} for srv in SERVERS}
        results["heavy"]["batching on"] = load(server, "heavy", 1, 64, s * rounds)
    with ServerProcess([sys.executable, str(HERE / "echo_server.py"), "0", "10", "edge"], ECHO_READY) as edge:
        results["edge"] = load(edge, "digits", 1, 64, s * rounds)
    with candor(repo, "--max-batch-size", "1", "--max-queue-rows", "8192", "--max-rows-per-request", "256") as unbatched:
        results["heavy"]["batching off"] = load(unbatched, "heavy", 1, 64, s * rounds)
    with candor(repo, "--inline-run-us", "0") as threaded:
        results["heavy"]["batching on, never inline (--inline-run-us 0)"] = load(threaded, "heavy", 1, 64, s * rounds)

    # What monitoring costs at 256 rows: the same server with the prediction log and/or drift turned off
    # (benchmark_skip, a setting for this table only), against the bare server in the same rounds.
    with bare(digits) as bare_server:
        servers = {"bare server": bare_server}
        for label, skip in MONITORING.items():
            servers[label] = candor(repo, env={"CANDOR_BENCHMARK_SKIP": skip})
        try:
            results["monitoring"] = interleaved(servers, "digits", 256, 8, s, rounds)
        finally:
            for label in MONITORING:
                servers[label].stop()

    # --workers: 1, 2 and auto, over 8 connections (SO_REUSEPORT spreads connections, not calls), beside the
    # single-process bare server on the same connections.
    from candor.server.cpus import usable_cpus

    auto = usable_cpus()
    with bare(digits) as bare_server:
        servers = {"bare server (1 process)": bare_server}
        for label, flag in (("1", "1"), ("2", "2"), (f"auto ({auto})", "auto")):
            servers[label] = candor(repo, "--workers", flag)
        try:
            results["workers"] = {name: interleaved(servers, "digits", r, c, s, rounds, connections=8)
                                  for name, (r, c) in WORKER_LOADS.items()}  # fmt: skip
        finally:
            for label in list(servers)[1:]:
                servers[label].stop()

    if not args.no_profile:
        from profile_server import profile

        for key, (r, c) in PROFILES.items():
            with candor(repo) as server:
                results["profiles"][key] = profile(server, "digits", r, c, s * rounds)

    report = render(results, s, rounds)
    Path(args.output).write_text(report + "".join(kept_sections(Path(args.output))), encoding="utf-8")
    print(report)
    return 0


def newest_model(repo: Path, name: str) -> Path:
    return sorted((repo / name).glob("[0-9]*/model.onnx"), key=lambda p: int(p.parent.name))[-1]


def kept_sections(path: Path) -> list[str]:
    """The sections other scripts own (fleet.py, split_calls.py, gpu_check.py), kept when this one rewrites the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return ["\n" + m.group(0) + "\n" for m in re.finditer(r"<!-- ([a-z ]+): begin .*?-->.*?<!-- \1: end -->", text, re.S)]


def goals(r: dict) -> list[tuple[str, str, str, bool]]:
    """(what, value, goal, met) for issue 23, each from one run."""
    out = []
    for protocol, name in PROTOCOLS.items():
        loads = r["loads"][protocol]
        vs_bare = paired(loads, "256 rows x 8", "candor", "bare")
        vs_echo = paired(loads, "256 rows x 8", "candor", "echo")
        single = paired(loads, "1 row x 64", "candor", "echo")
        extra = loads["candor"]["1 row x 1"]["p50_ms"] - loads["echo"]["1 row x 1"]["p50_ms"]
        out += [(f"{name}: Candor / bare rows/s, 256 rows at concurrency 8", f"{vs_bare:.2f}", "at least 0.90", vs_bare >= 0.9),
                (f"{name}: Candor / echo rows/s, 256 rows at concurrency 8", f"{vs_echo:.2f}", "at least 0.55", vs_echo >= 0.55),
                (f"{name}: Candor / echo requests/s, 1 row at concurrency 64", f"{single:.2f}", "at least 0.80", single >= 0.8),
                (f"{name}: Candor p50 - echo p50, 1 row at concurrency 1", f"{extra:+.2f} ms", "at most +0.30 ms", extra <= 0.3)]
    batching = r["heavy"]["batching on"]["rows_per_s"] / r["heavy"]["batching off"]["rows_per_s"]
    return out + [("heavy model, batching on / off at concurrency 64", f"{batching:.1f}x", "at least 5x", batching >= 5)]


def render_profile(title: str, summary: dict) -> list[str]:
    threads = ", ".join(f"{name} {share:.0%}" for name, share in summary["threads"][:4])
    lines = [f"**{title}**: {summary['samples']:,} samples; threads: {threads}.", "",
             "| own | where the CPU is | total | what it costs (callees included) |", "| ---: | --- | ---: | --- |"]  # fmt: skip
    for (own_name, own), (tot_name, tot) in zip(summary["own"][:10], summary["total"][:10], strict=False):
        lines.append(f"| {own:.0%} | `{own_name}` | {tot:.0%} | `{tot_name}` |")
    return lines + [""]


def render(r: dict, seconds: float, rounds: int) -> str:
    lines = ["# Benchmarks", "", f"Machine: {machine()}.", "",
             f"One command: `make bench` (`python benchmarks/run.py`, then `fleet.py`, `split_calls.py`). Each figure is "
             f"the median of {rounds} rounds of {seconds:g} s, closed loop, from a load generator in its own process on "
             "127.0.0.1; the servers compared in a table take turns within each round, so a slow spell of this shared "
             "machine falls on all of them, and each ratio is the median of the rounds' own ratios. Client and server "
             "share the same cores. *Server CPU* is the server's own CPU time (all its threads and workers) per answered "
             "request. *Bare* is `benchmarks/bare_server.py`: grpc.aio and onnxruntime, one run per request on the "
             "event loop, probabilities out, nothing else.", "",
             "## Raw onnxruntime in-process (rows/s)", "", row(["model", *[f"batch {b}" for b in BATCHES]]),
             row(["---"] * (len(BATCHES) + 1))]  # fmt: skip
    for name, by_batch in r["raw"].items():
        lines.append(row([name, *[f"{by_batch[b]:,.0f}" for b in BATCHES]]))
    header = ["server", "load", "requests/s", "rows/s", "p50 ms", "p99 ms", "server CPU us/request", "/ echo", "/ bare",
              "errors"]  # fmt: skip
    for protocol, title in PROTOCOLS.items():
        loads = r["loads"][protocol]
        lines += ["", f"## {title}: echo, bare model server and Candor (digits MLP)", "", row(header), row(["---"] * len(header))]
        for load_name in LOADS:
            for server in SERVERS:
                res = loads[server][load_name]
                ratios = [f"{paired(loads, load_name, server, 'echo'):.2f}", f"{paired(loads, load_name, server, 'bare'):.2f}"]
                lines.append(row([server, load_name, *fmt(res)[:5], *ratios, str(res["errors"])]))
    lines += ["", "## Ratios against the goals (issue 23)", "", row(["ratio", "this run", "goal", "met"]), row(["---"] * 4)]
    lines += [row([what, value, goal, "yes" if met else "**no**"]) for what, value, goal, met in goals(r)]
    mon = r["monitoring"]
    lines += ["", "## What monitoring costs at 256 rows (candor.v1 Predict, concurrency 8)", "",
              "The same server with the prediction log (and so Feedback's join) and/or the drift window turned off "
              "(`CANDOR_BENCHMARK_SKIP=log,drift`, a setting for this table only), in the same rounds as the bare server. "
              "*Event loop*: the server's main thread alone, where every request's Python runs (one core's worth at "
              "most). *Cores in use*: server and load generator together, of the machine's "
              f"{os.cpu_count()}.", "",
              row(["server", "requests/s", "rows/s", "server CPU us/request", "event loop us/request",
                   "load generator us/request", "cores in use", "/ bare", "CPU vs as deployed"]),
              row(["---"] * 9)]  # fmt: skip
    deployed = mon[next(iter(MONITORING))]["server_cpu_us"]
    for label, res in mon.items():
        delta = "" if label == "bare server" else f"{res['server_cpu_us'] - deployed:+,.0f} us"
        cores = (res["server_cpu_us"] + res["client_cpu_us"]) * res["requests_per_s"] / 1e6
        lines.append(row([label, f"{res['requests_per_s']:,.0f}", f"{res['rows_per_s']:,.0f}", f"{res['server_cpu_us']:,.0f}",
                          f"{res['loop_cpu_us']:,.0f}", f"{res['client_cpu_us']:,.0f}", f"{cores:.2f}", f"{res['ratio']:.2f}",
                          delta]))  # fmt: skip
    lines += ["", "## Where the server CPU per request goes (candor.v1 Predict)", "",
              "Transport: the echo server's CPU per request at the same load. The model: the bare server's minus the "
              "echo's (one onnxruntime run and its output). Candor's own: Candor's minus the bare server's (edge, "
              "validation, batcher, prediction log, drift, metrics, top-k, ids).", "",
              row(["load", "Candor us/request", "transport (echo)", "model (bare - echo)", "Candor's own", "own share"]),
              row(["---"] * 6)]  # fmt: skip
    loads = r["loads"]["candor"]
    for load_name in LOADS:
        total, transport = loads["candor"][load_name]["server_cpu_us"], loads["echo"][load_name]["server_cpu_us"]
        model = loads["bare"][load_name]["server_cpu_us"] - transport
        own = total - transport - model
        lines.append(row([load_name, f"{total:,.0f}", f"{transport:,.0f}", f"{model:,.0f}", f"{own:,.0f}", f"{own / total:.0%}"]))
    edge, echo = r["edge"], loads["echo"]["1 row x 64"]
    lines += ["", f"The echo server with Candor's edge interceptor in front (`echo_server.py 0 10 edge`), 1 row x 64: "
              f"{edge['requests_per_s']:,.0f} requests/s ({edge['requests_per_s'] / echo['requests_per_s']:.2f} of the "
              f"bare echo's median), {edge['server_cpu_us']:,.0f} us of server CPU per request "
              f"({edge['server_cpu_us'] - echo['server_cpu_us']:+,.0f} us): the edge's own cost."]  # fmt: skip
    header = ["setting", "requests/s", "rows/s", "p50 ms", "p99 ms", "server CPU us/request", "errors"]
    lines += ["", "## Dynamic batching on the heavy model (MLP 2048 x 3), single-row Predict at concurrency 64", "",
              row(header), row(["---"] * len(header))]  # fmt: skip
    for name, res in r["heavy"].items():
        lines.append(row([name, *fmt(res)]))
    header = ["workers", "load (8 connections)", "requests/s", "rows/s", "p50 ms", "p99 ms", "server CPU us/request",
              "/ bare", "errors"]  # fmt: skip
    lines += ["", "## `--workers` (one port, SO_REUSEPORT, one metrics endpoint; candor.v1 Predict, digits)", "",
              "The load generator shares the same 2 cores, so more workers than the cores the server gets cannot add "
              "throughput here; `benchmarks/reading.md` works out what to expect on 16 cores.", "", row(header),
              row(["---"] * len(header))]  # fmt: skip
    for load_name, by_server in r["workers"].items():
        for label, res in by_server.items():
            lines.append(row([label, load_name, *fmt(res)[:5], f"{res['ratio']:.2f}", str(res["errors"])]))
    if r["profiles"]:
        lines += ["", "## Profile of the server (py-spy, 100 Hz, idle threads left out)", "",
                  "`python benchmarks/profile_server.py --rows R --concurrency C` samples the server while the load runs. *own*: "
                  "share of samples whose innermost Python frame is the function (C code, gRPC's Cython included, counts "
                  "for its caller); *total*: share with the function anywhere on the stack. Before: commit "
                  f"`{BASELINE}` (stored in `benchmarks/baseline/`); after: this run.", ""]  # fmt: skip
        for key, (rows_, conc) in PROFILES.items():
            before = ROOT / "benchmarks" / "baseline" / f"profile-{BASELINE}-{key}.json"
            if before.exists():
                lines += render_profile(f"Before, {rows_} row(s) x {conc}", json.loads(before.read_text()))
            lines += render_profile(f"After, {rows_} row(s) x {conc}", r["profiles"][key])
    lines += [READING, ""]
    return "\n".join(lines)


READING = (HERE / "reading.md").read_text(encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
