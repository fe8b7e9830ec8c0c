"""Closed-loop load from one process: C concurrent callers, each sending its
next Predict (or KServe ModelInfer) as soon as the last one returns, for a fixed time.

    python benchmarks/load.py TARGET MODEL FEATURES ROWS_PER_REQUEST CONCURRENCY SECONDS [candor|kserve|sets:METHOD] [CONNECTIONS]
prints one JSON line: requests, rows, errors, requests/s, rows/s, p50/p99 ms, and its own CPU seconds.

Raw protobuf stubs rather than the SDK: the client's own cost is kept as small as the
echo server's, so the ratio is about the server.
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


def call_of(channel: grpc.aio.Channel, model: str, data: np.ndarray, kserve: bool, sets: str | None = None):
    """(method, request): one Predict of ``data``, as candor.v1 (columnar, top 1; with ``sets``, prediction sets at
    coverage 0.9 by that conformal method, empty: the version's own) or KServe v2 ModelInfer."""
    rows, features = data.shape
    if kserve:
        # Imported only here: tritonclient registers the same `inference` protobuf package, and a process that
        # loaded it (the test suite) could not load these stubs as well.
        from candor.kserve.v2 import grpc_predict_v2_pb2 as kpb
        from candor.kserve.v2 import grpc_predict_v2_pb2_grpc as kpb_grpc

        tensor = kpb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[rows, features])
        request = kpb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[data.tobytes()])
        return kpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request
    request = pb.PredictRequest(model=model, inputs=pb.Tensor(shape=[rows, features], dtype=pb.DATA_TYPE_FLOAT32,
                                                              raw_data=data.tobytes()), columnar=True)  # fmt: skip
    if sets is not None:
        request.coverage, request.conformal_method = 0.9, sets
    return pb_grpc.InferenceServiceStub(channel).Predict, request


async def run(target: str, model: str, features: int, rows: int, concurrency: int, seconds: float,
              kserve: bool = False, connections: int = 1, sets: str | None = None) -> dict:  # fmt: skip
    """``connections`` > 1 spreads the callers over that many TCP connections (SO_REUSEPORT hands each
    connection to one worker, so a single connection would reach one worker of ``--workers N``)."""
    data = np.random.default_rng(0).normal(size=(rows, features)).astype("<f4")
    latencies: list[float] = []
    errors = 0
    # A distinct channel argument per connection, or gRPC would share one subchannel among them.
    channels = [grpc.aio.insecure_channel(target, options=[("candor.bench.connection", i)]) for i in range(connections)]
    try:
        calls = [call_of(channel, model, data, kserve, sets) for channel in channels]
        for call, request in calls:
            await call(request, timeout=30)  # connect and warm up outside the clock
        end = time.perf_counter() + seconds

        async def caller(call, request) -> None:
            nonlocal errors
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    await call(request, timeout=30)
                    latencies.append(time.perf_counter() - started)
                except grpc.RpcError:
                    errors += 1

        began, cpu_began = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller(*calls[i % connections]) for i in range(concurrency)))
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    finally:
        for channel in channels:
            await channel.close()
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / elapsed,
        "rows_per_s": len(latencies) * rows / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "cpu_s": cpu,  # this process's own CPU (all its threads) while the load ran: it shares the server's cores
    }


if __name__ == "__main__":
    target, model, features, rows, concurrency, seconds = sys.argv[1:7]
    protocol = sys.argv[7] if len(sys.argv) > 7 else "candor"
    sets = protocol.removeprefix("sets:") if protocol.startswith("sets:") else None
    connections = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    print(json.dumps(asyncio.run(run(target, model, int(features), int(rows), int(concurrency), float(seconds),
                                     protocol == "kserve", connections, sets))))  # fmt: skip
