"""Server-wide limits on unary calls, applied before any handler runs: how many may be
in flight at once, and how long one may take when the caller set no deadline (or a longer
one than the server allows). Each refusal is counted by the ``on_refusal`` callback.

Per-connection concurrency is HTTP/2's own limit (``max_concurrent_streams``, a channel
option set in app.py): a client that opens more streams mostly waits for one to finish;
one opened just as another closes can still be refused (REFUSED_STREAM, UNAVAILABLE to the
caller), which the SDK's retry policy absorbs. Streams (PredictStream) are bounded per message by the batcher, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from candor.server.rpc.auth import HEALTH_PREFIX, REFLECTION_PREFIXES

EXEMPT = (HEALTH_PREFIX, *REFLECTION_PREFIXES)  # never refused: probes must answer under load


class LimitsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, max_inflight: int, default_deadline_s: float, max_deadline_s: float,
                 on_refusal: Callable[[str], None] = lambda limit: None):  # fmt: skip
        self.max_inflight = max_inflight
        self.default_deadline_s = default_deadline_s
        self.max_deadline_s = max_deadline_s
        self.on_refusal = on_refusal
        self.inflight = 0  # only touched on the event loop

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming or details.method.startswith(EXEMPT):
            return handler
        inner = handler.unary_unary
        rpc = details.method.rsplit("/", 1)[-1]

        async def limited(request, context: grpc.aio.ServicerContext):
            if self.inflight >= self.max_inflight:
                self.on_refusal("inflight")
                message = f"server busy: {self.inflight} calls in flight, the limit (max_inflight_requests); retry later"
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
            self.inflight += 1
            try:
                remaining = context.time_remaining()
                if remaining is not None and remaining <= self.max_deadline_s:
                    return await inner(request, context)  # the caller's own deadline governs
                budget = self.default_deadline_s if remaining is None else self.max_deadline_s
                try:
                    return await asyncio.wait_for(inner(request, context), budget)
                except TimeoutError:
                    self.on_refusal("deadline")
                    which = "default_deadline_s: the call set no deadline" if remaining is None else "max_deadline_s"
                    message = f"{rpc} ran past the server's {budget:g} s limit ({which})"
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, message)
            finally:
                self.inflight -= 1

        return grpc.unary_unary_rpc_method_handler(limited, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)  # fmt: skip
