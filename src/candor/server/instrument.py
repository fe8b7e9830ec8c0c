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

            # Recorded before the answer leaves (abort sends the status at once), so that a
            # caller who has its answer also finds it counted.
            def record(code: grpc.StatusCode) -> None:
                metrics.in_flight.dec()
                children.count(code)
                children.duration.observe(time.perf_counter() - started)

            try:
                response = await handler(self, request, context)
            except CandorError as e:
                code = status_code(e)
                record(code)
                await context.abort(code, str(e))
            except Exception as e:
                if isinstance(e, grpc.aio.AbortError) or context.cancelled():
                    record(context.code() or grpc.StatusCode.CANCELLED)
                    raise
                record(grpc.StatusCode.INTERNAL)
                log.exception("%s failed", rpc)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {rpc}: {type(e).__name__}; see the server log")
            except BaseException:  # cancelled by the server itself (e.g. a deadline limit): still counted
                record(grpc.StatusCode.CANCELLED)
                raise
            record(grpc.StatusCode.OK)
            return response

        return run

    return wrap
