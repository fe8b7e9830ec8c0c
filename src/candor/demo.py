"""``candor demo``: the main job end to end on the embedded digits data.

Trains the default model if the repository has none, starts ``candor serve``
on loopback, predicts held-out rows through the SDK, prints calibrated
probabilities and the metrics that moved, and stops the server gracefully.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import urllib.request
from pathlib import Path

from candor.flags import add_renamed
from candor.server.launch import serve_process

WATCHED = ("candor_requests_total", "candor_predicted_rows_total", "candor_batch_size_rows_count", "candor_confidence_count",
           "candor_predictions_total")  # fmt: skip


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith(WATCHED):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def cmd_demo(a: argparse.Namespace) -> int:
    from candor.client import Client
    from candor.trainer.options import DataOptions
    from candor.trainer.split import split_dataset

    repo = Path(a.model_repository)
    if not list((repo / a.name).glob("[0-9]*/candor.json")):
        print(f"No {a.name} model in {repo}: training one (digits, uniform label smoothing 0.1) ...", flush=True)
        result = subprocess.run([sys.executable, "-m", "candor", "train", "--dataset", "digits", "--epsilon", "0.1",
                                 "--model-repository", str(repo), "--model", a.name, "--no-progress"])  # fmt: skip
        if result.returncode != 0:
            return result.returncode
    data = DataOptions()
    ds = data.load()
    held_out = split_dataset(ds, seed=data.split_seed).test[: a.rows]
    rows, labels = ds.X[held_out], ds.y[held_out]

    server = serve_process(repo, "--poll-interval-seconds", "0", "--log-level", "WARNING")
    grpc_port, metrics_port = server.ports
    try:
        before = _scrape(metrics_port)
        with Client(f"127.0.0.1:{grpc_port}") as client:
            described = client.model(a.name)
            result = client.predict(rows, model=a.name, top_k=3)
        after = _scrape(metrics_port)
    finally:
        code = server.stop()
    t = ", ".join(f"{v:.3f}" for v in described.temperature)
    print(f"\nServed {described.name} v{described.version} on {described.provider}, temperature {t}, "
          f"test ECE {described.test_ece:.4f} (smoothing {described.smoothing} {described.epsilon:g})\n")  # fmt: skip
    print(f"{'row':>3}  {'true':>4}  {'top 3 (calibrated probability)':44}  prediction id")
    for i in range(len(rows)):
        tops = ", ".join(f"{n}: {p:.3f}" for n, p in zip(result.labels[i], result.top_k_probabilities[i], strict=True))
        print(f"{i:>3}  {ds.class_names[labels[i]]:>4}  {tops:44}  {result.prediction_ids[i]}")
    print("\nMetrics that moved:")
    for key in sorted(after):
        delta = after[key] - before.get(key, 0.0)
        if delta:
            print(f"  {key} +{delta:g}")
    print(f"\nServer stopped cleanly (exit code {code}).")
    return 0 if code == 0 else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train if needed, serve, predict through the SDK, show metrics, stop")
    p.add_argument("--model-repository", default="models", help="model repository folder (default: models)")
    p.add_argument("--model", dest="name", default="digits", help="model name (default: digits)")
    add_renamed(p, "--name", "--model", dest="name")
    p.add_argument("--rows", type=int, default=8, help="held-out rows to predict (default: 8)")
    p.set_defaults(handler=cmd_demo)
