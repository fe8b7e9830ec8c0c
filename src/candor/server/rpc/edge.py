"""The one interceptor every call passes, in a single pass before any handler runs:

1. **stopping**: once SIGTERM arrived, a new call gets UNAVAILABLE (which the SDK retries on
   another replica) instead of being accepted and then cancelled when the server stops;
2. **authentication** (when tokens are set; health and reflection as the settings open them):
   a refused call is answered without reading its body, so an unauthenticated caller costs no
   memory for the message it sends;
3. **health Watch cap**: at most ``max_health_watches`` Watch streams at once (Kubernetes'
   probes call Check; Watch is for the odd client that follows a status);
4. **limits** on unary calls: ``max_inflight_requests`` at once; a time budget (the caller's
   deadline, ``default_deadline_s`` without one, never past ``max_deadline_s``) that covers
   the whole call, the arrival of its body included, so a call whose body never comes ends
   DEADLINE_EXCEEDED rather than holding its stream forever;
5. **decoding**: the request is parsed here, so bytes that are not the expected message get
   INVALID_ARGUMENT naming the type instead of gRPC's UNKNOWN.

Unary handlers are served as request-streaming ones with a single message: the wire format is
the same, and reading the one message ourselves is what lets a budget cover its arrival and a
refusal skip it.

Per-connection concurrency is HTTP/2's own limit (``max_concurrent_streams``, a server option
in app.py); a stream opened just as another closes can be refused (UNAVAILABLE to the caller),
which the SDK's retry policy absorbs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from candor.server.rpc.auth import HEALTH_PREFIX, REFLECTION_PREFIXES, TokenTable, decide

EXEMPT = (HEALTH_PREFIX, *REFLECTION_PREFIXES)  # never limited: probes must answer under load
WATCH = HEALTH_PREFIX + "Watch"


@dataclass(frozen=True)
class EdgeLimits:
    max_inflight: int
    default_deadline_s: float
    max_deadline_s: float
    max_health_watches: int


def _type_name(parse) -> str:
    owner = getattr(parse, "__self__", None)  # generated code passes Message.FromString
    return getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request")


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler that answers ``code`` at once. Request-streaming in shape whatever the method is,
    so that gRPC hands it the call before reading any message: nothing the caller sends is kept."""

    async def refuse(requests, context):
        await context.abort(code, message)

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, response_serializer=handler.response_serializer)
    return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=handler.response_serializer)


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, limits: EdgeLimits, *, tokens: TokenTable | None = None, open_prefixes: tuple[str, ...] = (),
                 stopping: Callable[[], bool] = lambda: False,
                 on_refusal: Callable[[str, str], None] = lambda kind, reason: None):  # fmt: skip
        """``on_refusal(kind, reason)``: kind ``auth`` (reason unauthenticated / permission_denied) or
        ``limit`` (inflight, deadline, health_watch, stopping)."""
        self.limits = limits
        self.tokens = tokens
        self.open_prefixes = open_prefixes
        self.stopping = stopping
        self.on_refusal = on_refusal
        self.inflight = 0  # only touched on the event loop
        self.last_call = 0.0  # time.monotonic() of the newest call seen (app.py drains until calls stop coming)
        self.watches = 0
        # The wrapped handler of each method, made once: a call that passes the checks costs a dict lookup.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler | None]] = {}

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        self.last_call = time.monotonic()
        if self.stopping():
            self.on_refusal("limit", "stopping")
            return _refusal(handler, grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry (another replica, "
                                                                  "or this one once it is back, will answer)")  # fmt: skip
        if self.tokens is not None and not method.startswith(self.open_prefixes):
            refused = decide(self.tokens, method, dict(details.invocation_metadata or ()))
            if refused is not None:
                self.on_refusal("auth", refused[0].name.lower())
                return _refusal(handler, *refused)
        known = self._wrapped.get(method)
        if known is None or known[0] is not handler:
            known = self._wrapped[method] = (handler, self._wrap(handler, method))
        return known[1] or handler

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler | None:
        """The handler that applies the Watch cap, the limits and decoding to ``method``; None: ``handler`` as it is."""
        if method == WATCH:
            return self._capped_watch(handler)
        if handler.request_streaming or handler.response_streaming:
            if handler.request_streaming and handler.response_streaming and handler.request_deserializer is not None:
                return self._decoded_stream(handler, method.rsplit("/", 1)[-1])
            return None
        return self._unary(handler, method.rsplit("/", 1)[-1], limited=not method.startswith(EXEMPT))

    def _unary(self, handler: grpc.RpcMethodHandler, rpc: str, limited: bool) -> grpc.RpcMethodHandler:
        inner, parse = handler.unary_unary, handler.request_deserializer
        expected = _type_name(parse)
        limits = self.limits

        async def handle(requests, context: grpc.aio.ServicerContext):
            raw = await anext(aiter(requests), None)
            if raw is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: the call carried no request message")
            try:
                request = parse(raw) if parse is not None else raw
            except DecodeError:
                message = f"{rpc}: the request is not a valid {expected} message"
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
            return await inner(request, context)

        async def call(requests, context: grpc.aio.ServicerContext):
            if limited and self.inflight >= limits.max_inflight:
                self.on_refusal("limit", "inflight")
                message = f"server busy: {self.inflight} calls in flight, the limit (max_inflight_requests); retry later"
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
            remaining = context.time_remaining()
            own = remaining is not None and remaining <= limits.max_deadline_s  # the caller's deadline governs
            budget = None if own else limits.default_deadline_s if remaining is None else limits.max_deadline_s
            self.inflight += limited
            try:
                if budget is None:  # the caller's deadline governs (gRPC ends the call): no timer of ours to arm
                    return await handle(requests, context)
                async with asyncio.timeout(budget):
                    return await handle(requests, context)
            except TimeoutError:
                self.on_refusal("limit", "deadline")
                which = "default_deadline_s: the call set no deadline" if remaining is None else "max_deadline_s"
                message = f"{rpc} ran past the server's {budget:g} s limit ({which})"
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, message)
            finally:
                self.inflight -= limited

        return grpc.stream_unary_rpc_method_handler(call, response_serializer=handler.response_serializer)

    def _decoded_stream(self, handler: grpc.RpcMethodHandler, rpc: str) -> grpc.RpcMethodHandler:
        inner, parse = handler.stream_stream, handler.request_deserializer
        expected = _type_name(parse)

        async def parsed(raw_iterator, context: grpc.aio.ServicerContext):
            n = 0
            async for raw in raw_iterator:
                n += 1
                try:
                    yield parse(raw)
                except DecodeError:
                    message = f"{rpc}: message {n} of the stream is not a valid {expected}"
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

        async def stream(raw_iterator, context: grpc.aio.ServicerContext):
            async for response in inner(parsed(raw_iterator, context), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream, response_serializer=handler.response_serializer)

    def _capped_watch(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        inner, cap = handler.unary_stream, self.limits.max_health_watches

        async def watch(request, context: grpc.aio.ServicerContext):
            if self.watches >= cap:
                self.on_refusal("limit", "health_watch")
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{cap} health Watch streams are open, the limit "
                                                                        "(max_health_watches); use Check to probe")  # fmt: skip
            self.watches += 1
            try:
                answer = inner(request, context)
                if hasattr(answer, "__aiter__"):  # a generator-style handler; grpc_health's writes itself
                    async for response in answer:
                        await context.write(response)
                else:
                    await answer
            finally:
                self.watches -= 1

        return grpc.unary_stream_rpc_method_handler(watch, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)  # fmt: skip
