"""Closed-loop load from one process: C concurrent callers, each sending its
next Predict as soon as the last one returns, for a fixed time.

    python benchmarks/load.py TARGET MODEL FEATURES ROWS_PER_REQUEST CONCURRENCY SECONDS
prints one JSON line: requests, rows, errors, requests/s, rows/s, p50/p99 ms.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
import numpy as np

from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc


async def run(target: str, model: str, features: int, rows: int, concurrency: int, seconds: float) -> dict:
    data = np.random.default_rng(0).normal(size=(rows, features)).astype("<f4")
    request = pb.PredictRequest(model=model, inputs=pb.Tensor(shape=[rows, features], dtype=pb.DATA_TYPE_FLOAT32,
                                                              raw_data=data.tobytes()))  # fmt: skip
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        await stub.Predict(request, timeout=30)  # connect and warm up outside the clock
        end = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    await stub.Predict(request, timeout=30)
                    latencies.append(time.perf_counter() - started)
                except grpc.RpcError:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / elapsed,
        "rows_per_s": len(latencies) * rows / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
    }


if __name__ == "__main__":
    target, model, features, rows, concurrency, seconds = sys.argv[1:7]
    print(json.dumps(asyncio.run(run(target, model, int(features), int(rows), int(concurrency), float(seconds)))))
