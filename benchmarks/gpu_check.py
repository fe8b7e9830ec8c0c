"""The GPU check: Candor's CUDA path, run where a GPU is, in one command; the same code on CPU elsewhere.

    python benchmarks/gpu_check.py                      # a machine with CUDA and onnxruntime-gpu
    python benchmarks/gpu_check.py --provider cpu       # the same steps on the CPU provider (what the tests run)

Steps, each reported in one section of docs/benchmarks.md (``--output``) and as JSON (``--json``):

1. **agreement**: the version's graph on the provider and on onnxruntime's CPU provider, on the same rows:
   the largest absolute difference of the probabilities and of the logits;
2. **in-process rows/s** at batch 1, 64, 512 and 4,096, with numpy in and out (``session.run``), and with
   IO binding (the input copied to the device once, both outputs left there: the device's own rate);
3. **the server**: ``candor serve --provider P``; GetModel must report the provider, a Predict's
   probabilities are compared with the CPU graph's, and rows/s is measured at requests of 64, 512 and
   4,096 rows.

On a device without network, carry the wheels it lacks (benchmarks/gpu_wheel.py splits onnxruntime-gpu's
into parts under the 64 MiB a call may carry) and put ``src`` on PYTHONPATH; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.run import ROOT, candor, ensure_models, load, machine, update_section  # noqa: E402

BEGIN, END = "<!-- gpu check: begin (benchmarks/gpu_check.py) -->", "<!-- gpu check: end -->"
BATCHES = (1, 64, 512, 4096)
SERVER_LOADS = ((64, 8), (512, 4), (4096, 2))  # (rows per request, concurrency)
DEVICES = {"cuda": "cuda", "cpu": "cpu"}  # provider setting -> onnxruntime's OrtValue device name
PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def newest(repo: Path, name: str) -> Path:
    return sorted((repo / name).glob("[0-9]*/model.onnx"), key=lambda p: int(p.parent.name))[-1]


def session_for(model: Path, provider: str):
    from candor.server.core.sessions import CPU, create_session

    providers = [PROVIDERS[provider]] + ([CPU] if provider != "cpu" else [])
    session, in_use = create_session(str(model), providers)
    if in_use != PROVIDERS[provider]:
        raise SystemExit(f"gpu_check: asked for {PROVIDERS[provider]}, onnxruntime runs {in_use}: "
                         "is onnxruntime-gpu installed and a GPU visible?")  # fmt: skip
    return session


def agreement(model: Path, provider: str, rows: np.ndarray) -> dict:
    device, cpu = session_for(model, provider), session_for(model, "cpu")
    out = {"logits": 0.0, "probabilities": 0.0}
    for start in range(0, len(rows), 512):
        X = rows[start : start + 512]
        for name, a, b in zip(("logits", "probabilities"), device.run(None, {"input": X}), cpu.run(None, {"input": X}),
                              strict=True):  # fmt: skip
            out[name] = max(out[name], float(np.abs(a - b).max()))
    return out


def rows_per_second(model: Path, provider: str, rows: np.ndarray, seconds: float) -> dict[str, dict[int, float]]:
    import onnxruntime as ort

    session = session_for(model, provider)
    plain, bound = {}, {}
    for batch in BATCHES:
        X = np.ascontiguousarray(np.resize(rows, (batch, rows.shape[1])))
        plain[batch] = _rate(lambda X=X: session.run(None, {"input": X}), batch, seconds)
        binding = session.io_binding()
        binding.bind_ortvalue_input("input", ort.OrtValue.ortvalue_from_numpy(X, DEVICES[provider], 0))
        for name in ("logits", "probabilities"):
            binding.bind_output(name, DEVICES[provider])
        bound[batch] = _rate(lambda b=binding: session.run_with_iobinding(b), batch, seconds)
    return {"session.run": plain, "io binding": bound}


def _rate(run, batch: int, seconds: float) -> float:
    run()  # warm-up: the first run on a device allocates
    runs, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds or runs < 3:
        run()
        runs += 1
    return runs * batch / (time.perf_counter() - began)


def through_the_server(repo: Path, model: Path, provider: str, rows: np.ndarray, seconds: float) -> dict:
    from candor.client import Client

    cpu = session_for(model, "cpu")
    with candor(repo, "--provider", provider) as server:
        with Client(server.target, timeout=60) as client:
            info = client.model("digits")
            answer = client.predict(rows[:512], model="digits")
        expected = cpu.run(["probabilities"], {"input": rows[:512]})[0]
        loads = {f"{r} rows x {c}": load(server, "digits", r, c, seconds) for r, c in SERVER_LOADS}
    return {"provider": info.provider, "max_abs_diff": float(np.abs(answer.probabilities - expected).max()),
            "loads": loads}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="cuda", help="provider to check (default: cuda)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timing (default: 2)")
    parser.add_argument("--repo", default=str(ROOT / "runs/bench/models"), help="where the benchmark models live")
    parser.add_argument("--output", default=str(ROOT / "docs/benchmarks.md"), help="report whose section is rewritten")
    parser.add_argument("--json", help="also write the figures here")
    a = parser.parse_args()
    repo = Path(a.repo)
    ensure_models(repo, names=("digits",))
    model = newest(repo, "digits")
    from sklearn.datasets import load_digits

    rows = load_digits().data.astype(np.float32)
    rows = np.ascontiguousarray(np.resize(rows, (4096, rows.shape[1])))
    result = {"provider": a.provider, "machine": machine(), "agreement": agreement(model, a.provider, rows),
              "in_process": rows_per_second(model, a.provider, rows, a.seconds),
              "server": through_the_server(repo, model, a.provider, rows, a.seconds)}  # fmt: skip
    if result["server"]["provider"] != PROVIDERS[a.provider]:
        raise SystemExit(f"gpu_check: the server reports provider {result['server']['provider']}, "
                         f"expected {PROVIDERS[a.provider]}")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(update_section(Path(a.output), BEGIN, END, render(result)))
    return 0


def render(r: dict) -> list[str]:
    agree, srv = r["agreement"], r["server"]
    lines = [f"## GPU check (`benchmarks/gpu_check.py --provider {r['provider']}`)", "",
             f"Machine: {r['machine']}. Provider checked: {PROVIDERS[r['provider']]}"
             + (" (the CPU run of the same steps; no GPU was lent)" if r["provider"] == "cpu" else "") + ".", "",
             f"Agreement with onnxruntime's CPU provider on 4,096 digits rows: max |diff| of the probabilities "
             f"{agree['probabilities']:.2e}, of the logits {agree['logits']:.2e}; through the server (512 rows) "
             f"{srv['max_abs_diff']:.2e}.", "", "| in-process rows/s | " + " | ".join(f"batch {b:,}" for b in BATCHES) + " |",
             "| --- |" + " --- |" * len(BATCHES)]  # fmt: skip
    for how, rates in r["in_process"].items():
        lines.append(f"| {how} | " + " | ".join(f"{rates[b]:,.0f}" for b in BATCHES) + " |")
    lines += ["", "| through the server | requests/s | rows/s | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- |"]
    for name, res in srv["loads"].items():
        lines.append(f"| {name} | {res['requests_per_s']:,.0f} | {res['rows_per_s']:,.0f} | {res['p50_ms']:.2f} | "
                     f"{res['p99_ms']:.2f} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
