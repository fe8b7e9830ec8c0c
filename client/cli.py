"""Client verbs of the ``candor`` command: predict, models, health."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np


def read_rows(source: str) -> np.ndarray:
    """Rows from a .npy file, a .csv file, or CSV text on stdin ("-"); a
    non-numeric first line is taken for a header and skipped."""
    if source.endswith(".npy"):
        try:
            rows = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{source}: not a readable .npy file ({e})") from e
    else:
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{source}: cannot read ({e})") from e
        lines = [line for line in text.splitlines() if line.strip()]
        if lines:
            try:
                [float(v) for v in lines[0].split(",")]
            except ValueError:
                lines = lines[1:]
        try:
            rows = np.loadtxt(io.StringIO("\n".join(lines)), delimiter=",", ndmin=2, dtype=np.float32)
        except ValueError as e:
            raise ValueError(f"{source}: rows must be comma-separated numbers ({e})") from e
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2 or rows.size == 0:
        raise ValueError(f"{source}: expected rows [N, F] with at least one row, got shape {rows.shape}")
    return rows


def _client(a: argparse.Namespace):
    from candor.client import Client

    def read(path):
        return Path(path).read_bytes() if path else None

    return Client(a.target, timeout=a.timeout, token=a.token, tls=a.tls, root_certificates=read(a.ca_cert),
                  certificate_chain=read(a.client_cert), private_key=read(a.client_key))  # fmt: skip


def _remote(call):
    """Run a client call; a gRPC error becomes one line naming its status code."""
    import grpc

    from candor.cli import RemoteError

    try:
        return call()
    except grpc.RpcError as e:
        raise RemoteError(f"{e.code().name}: {e.details()}") from None


def cmd_predict(a: argparse.Namespace) -> int:
    rows = read_rows(a.input)
    with _client(a) as client:
        r = _remote(lambda: client.predict(rows, model=a.model, version=a.version, top_k=a.top_k, return_logits=a.logits))
    if a.json:
        out = []
        for i in range(len(rows)):
            row = {"prediction_id": r.prediction_ids[i], "labels": r.labels[i], "confidence": float(r.confidences[i])}
            row |= {"top_k_probabilities": r.top_k_probabilities[i].tolist(), "probabilities": r.probabilities[i].tolist()}
            if r.logits is not None:
                row["logits"] = r.logits[i].tolist()
            out.append(row)
        print(json.dumps({"model": r.model, "version": r.version, "predictions": out}, indent=2))
        return 0
    print(f"{r.model} v{r.version}: {len(rows)} row(s)")
    print(f"{'row':>4}  {'prediction id':32}  {'confidence':>10}  top labels")
    for i in range(len(rows)):
        tops = ", ".join(f"{name} ({p:.3f})" for name, p in zip(r.labels[i], r.top_k_probabilities[i], strict=True))
        print(f"{i:>4}  {r.prediction_ids[i]:32}  {r.confidences[i]:>10.4f}  {tops}")
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    with _client(a) as client:
        models = _remote(client.models)
    if a.json:
        print(json.dumps([m.__dict__ for m in models], indent=2))
        return 0
    print(f"{'model':16} {'version':>7}  {'state':8} {'provider':24} {'T':>8} {'smoothing':>16} {'test ECE':>9}")
    for m in models:
        t = ",".join(f"{v:.3f}" for v in m.temperature) or "-"
        smoothing = f"{m.smoothing} {m.epsilon:g}" if m.smoothing else "-"
        print(f"{m.name:16} {m.version:>7}  {m.state:8} {m.provider or '-':24} {t:>8} {smoothing:>16} {m.test_ece:>9.4f}"
              + (f"  {m.message}" if m.message else ""))  # fmt: skip
    return 0


def cmd_health(a: argparse.Namespace) -> int:
    with _client(a) as client:
        status = _remote(lambda: client.health(a.model or ""))
    print(f"{a.model or 'server'}: {status}")
    return 0 if status == "SERVING" else 1


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="127.0.0.1:8001", help="server address host:port (default: 127.0.0.1:8001)")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline per call in seconds (default: 10)")
    p.add_argument("--token", help="bearer token sent as 'authorization: Bearer ...'")
    p.add_argument("--tls", action="store_true", help="connect with TLS using the system's root certificates")
    p.add_argument("--ca-cert", help="PEM file of the CA that signed the server's certificate (implies --tls)")
    p.add_argument("--client-cert", help="PEM client certificate for mutual TLS")
    p.add_argument("--client-key", help="PEM private key of --client-cert")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="send rows to a server and print calibrated predictions")
    _connection_args(p)
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", help="model version (default: the newest ready one)")
    p.add_argument("--input", default="-", help="rows as .npy, .csv, or CSV on stdin with '-' (default: -)")
    p.add_argument("--top-k", type=int, default=3, help="top labels per row (default: 3)")
    p.add_argument("--logits", action="store_true", help="also return raw logits (with --json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("models", help="list the model versions a server knows")
    _connection_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("health", help="ask a server (or one model) whether it is SERVING; exit 0 if so")
    _connection_args(p)
    p.add_argument("--model", help="a model name; default: the server as a whole")
    p.set_defaults(handler=cmd_health)
