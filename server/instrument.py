"""One wrapper per RPC: metrics by method and code, and errors to status codes."""

from __future__ import annotations

import functools
import logging
import time

import grpc

from candor.server.errors import CandorError
from candor.server.metrics import ServerMetrics
from candor.server.status import status_code

log = logging.getLogger("candor.server")


class _Children:
    """Labelled metric children per (rpc, code), looked up once: labels() takes a lock each call."""

    def __init__(self, metrics: ServerMetrics, rpc: str):
        self.metrics = metrics
        self.rpc = rpc
        self.duration = metrics.request_duration.labels(rpc)
        self.codes: dict[grpc.StatusCode, object] = {}

    def count(self, code: grpc.StatusCode) -> None:
        child = self.codes.get(code)
        if child is None:
            child = self.codes[code] = self.metrics.requests.labels(self.rpc, code.name)
        child.inc()


def unary(rpc: str):
    """Decorate an async unary handler ``(self, request, context)`` of a servicer
    that has a ``metrics`` attribute."""

    def wrap(handler):
        @functools.wraps(handler)
        async def run(self, request, context: grpc.aio.ServicerContext):
            metrics: ServerMetrics = self.metrics
            children = metrics.children.get(rpc) or metrics.children.setdefault(rpc, _Children(metrics, rpc))
            started = time.perf_counter()
            metrics.in_flight.inc()
            code = grpc.StatusCode.OK
            try:
                return await handler(self, request, context)
            except CandorError as e:
                code = status_code(e)
                await context.abort(code, str(e))
            except Exception as e:
                if isinstance(e, grpc.aio.AbortError) or context.cancelled():
                    code = context.code() or grpc.StatusCode.CANCELLED
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception("%s failed", rpc)
                await context.abort(code, f"internal error in {rpc}: {type(e).__name__}; see the server log")
            finally:
                metrics.in_flight.dec()
                children.count(code)
                children.duration.observe(time.perf_counter() - started)

        return run

    return wrap
