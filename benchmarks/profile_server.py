"""Where a Candor server spends its time under load: py-spy samples the server process
while benchmarks/load.py drives it, and the samples are summarised by function.

    python benchmarks/profile_server.py --rows 1 --concurrency 64 --seconds 5
    python benchmarks/profile_server.py --rows 256 --concurrency 8 --json /tmp/p.json

The summary has three views of the same samples (all threads, idle ones left out):
- *threads*: the share of samples in each thread (by name, numbers dropped): the event loop
  is ``MainThread``; gRPC's own C threads show as unnamed Python-less threads and are not seen;
- *own*: the share of samples whose innermost Python frame is the function (where the CPU
  is; time in C code called from Python, gRPC's Cython included, counts for its caller);
- *total*: the share of samples with a Candor, gRPC, onnxruntime or numpy function anywhere
  on the stack (what it costs, callees included).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from load import run as run_load  # noqa: E402  (benchmarks/ is not a package)

from candor.server.launch import ServerProcess  # noqa: E402


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed; pip install py-spy (it is in the [dev] extra)")
    return found


FRAME = re.compile(r"^(.+) \((.+):\d+\)$")
THREAD = re.compile(r"^thread \(\w+\)(?:: (.*))?$")
COSTED = ("candor/", "grpc/", "onnxruntime/", "numpy/")  # frames the *total* view lists ...
ENTRY = ("candor/__main__.py:", "candor/cli.py:", "candor/server/cli.py:", "candor/server/app.py:serve")  # ... but these


def thread_kind(entry: str) -> str:
    """'thread (0x7f..): ThreadPoolExecutor-0_1' -> 'ThreadPoolExecutor'."""
    m = THREAD.match(entry)
    name = (m.group(1) if m else None) or "(unnamed)"
    return re.sub(r"[-_]?\d+(_\d+)?$", "", name) or name


def frame_name(frame: str) -> str:
    """'run (candor/server/rpc/calls.py:61)' -> 'candor/server/rpc/calls.py:run' (line numbers vary between samples)."""
    name, path = FRAME.match(frame).groups()
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{name}"


def summarise(collapsed: str, top: int = 12) -> dict:
    """Own and total shares of the busiest functions from py-spy's collapsed stacks ('a;b;c COUNT' per line)."""
    own: Counter = Counter()
    total: Counter = Counter()
    threads: Counter = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        entries = stack.split(";")
        frames = [frame_name(f) for f in entries if FRAME.match(f)]
        if not frames:
            continue
        samples += n
        threads[thread_kind(entries[0])] += n
        own[frames[-1]] += n
        for name in set(frames):
            if name.startswith(COSTED) and not name.startswith(ENTRY):
                total[name] += n
    if not samples:
        return {"samples": 0, "threads": [], "own": [], "total": []}

    def share(counter: Counter) -> list[tuple[str, float]]:
        return [(name, n / samples) for name, n in counter.most_common(top)]

    return {"samples": samples, "threads": share(threads), "own": share(own), "total": share(total)}


def profile(server: ServerProcess, model: str, rows: int, concurrency: int, seconds: float, features: int = 64,
            kserve: bool = False, sets: str | None = None) -> dict:  # fmt: skip
    """Sample ``server`` with py-spy (100 Hz, idle threads left out) while the load runs; return the summary
    and the load's own result."""
    import asyncio

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        record = subprocess.Popen([py_spy(), "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "100",
                                   "--duration", str(int(seconds) + 1), "--nonblocking", "--threads", "--output", str(out)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        result: dict = {}
        failed: list[BaseException] = []

        def drive() -> None:
            try:
                result.update(asyncio.run(run_load(server.target, model, features, rows, concurrency, seconds, kserve=kserve,
                                                  sets=sets)))
            except BaseException as e:  # re-raised below, after py-spy is done
                failed.append(e)

        thread = threading.Thread(target=drive)
        thread.start()
        thread.join()
        _, err = record.communicate(timeout=seconds + 60)
        if failed:
            raise failed[0]
        if record.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed ({record.returncode}): {err.strip()[-500:]}")
        return {"load": result, **summarise(out.read_text())}


def render(title: str, summary: dict) -> list[str]:
    threads = ", ".join(f"{name} {share:.0%}" for name, share in summary["threads"][:5])
    lines = [f"**{title}** ({summary['samples']:,} samples; threads: {threads})", "", "| own | function | | total | function |",
             "| ---: | --- | --- | ---: | --- |"]  # fmt: skip
    for (own_name, own), (tot_name, tot) in zip(summary["own"], summary["total"], strict=False):
        lines.append(f"| {own:.0%} | `{own_name}` | | {tot:.0%} | `{tot_name}` |")
    return lines + [""]


def main() -> int:
    from candor.server.launch import serve_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(HERE.parent / "runs/bench/models"))
    parser.add_argument("--model", default="digits")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--kserve", action="store_true", help="drive KServe ModelInfer instead of candor.v1 Predict")
    parser.add_argument("--sets", help="ask for prediction sets at 0.9 by this conformal method ('' for the version's own)")
    parser.add_argument("--json", help="also write the summary here")
    parser.add_argument("--server-src", help="run the server from this source tree (PYTHONPATH), e.g. a git worktree of "
                        "an older commit, for a before/after profile")  # fmt: skip
    parser.add_argument("flags", nargs="*", help="extra `candor serve` flags (after --)")
    args = parser.parse_args()
    env = {"PYTHONPATH": args.server_src} if args.server_src else None
    with serve_process(Path(args.repo), "--poll-interval-seconds", "0", "--log-level", "WARNING", *args.flags, env=env) as server:
        summary = profile(server, args.model, args.rows, args.concurrency, args.seconds, kserve=args.kserve, sets=args.sets)
    print("\n".join(render(f"{args.rows} row(s) x {args.concurrency}: {summary['load']['requests_per_s']:,.0f} req/s",
                           summary)))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
