"""The one edge every RPC handler goes through, unary or streaming: counted by method and
status code, timed, errors mapped to status codes in one place, unexpected ones logged.

>>> class Service(pb_grpc.InferenceServiceServicer):                 # doctest: +SKIP
...     @unary("Predict")
...     async def Predict(self, request, context): ...
...     @stream("PredictStream", error_reply=lambda item, code, text: ...)
...     async def PredictStream(self, item, context): ...            # one message in, one out
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from candor.server.core.errors import CandorError
from candor.server.rpc.status import status_code

log = logging.getLogger("candor.server")
MAX_MESSAGE_CHARS = 1024  # a status message longer than this is cut: whatever it quotes, it stays small


class CallObserver(Protocol):
    """Who counts calls (observability's ServerMetrics); servicers hold one as ``self.observer``."""

    def call_started(self) -> None: ...

    def call_finished(self, rpc: str, code: str, seconds: float | None, model: str = "") -> None: ...

    def call_ended(self) -> None: ...


def failure(rpc: str, error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and message a caller gets for ``error``: a Candor error says what to fix;
    anything else is a bug, logged with its traceback and answered INTERNAL."""
    if isinstance(error, CandorError):
        message = str(error)
        return status_code(error), message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "..."
    log.error("%s failed", rpc, exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error in {rpc}: {type(error).__name__}; see the server log"


def model_named(message: object) -> str:
    """The model a request names (candor.v1 ``model``, KServe ``name`` or ``model_name``), "" for none."""
    for field in ("model", "model_name", "name"):
        value = getattr(message, field, None)
        if isinstance(value, str):
            return value
    return ""


def unary(rpc: str):
    """Decorate an async unary handler ``(self, request, context)``."""

    def wrap(handler):
        @functools.wraps(handler)
        async def run(self, request, context: grpc.aio.ServicerContext):
            observer: CallObserver = self.observer
            started = time.perf_counter()
            observer.call_started()

            # Recorded before the answer leaves (abort sends the status at once), so that a
            # caller who has its answer also finds it counted.
            def record(code: grpc.StatusCode) -> None:
                observer.call_ended()
                observer.call_finished(rpc, code.name, time.perf_counter() - started, model_named(request))

            try:
                response = await handler(self, request, context)
            except CandorError as e:
                code, message = failure(rpc, e)
                record(code)
                await context.abort(code, message)
            except Exception as e:
                if isinstance(e, grpc.aio.AbortError) or context.cancelled():
                    record(context.code() or grpc.StatusCode.CANCELLED)
                    raise
                code, message = failure(rpc, e)
                record(code)
                await context.abort(code, message)
            except BaseException:  # cancelled by the server itself (e.g. a deadline limit): still counted
                record(grpc.StatusCode.CANCELLED)
                raise
            record(grpc.StatusCode.OK)
            return response

        return run

    return wrap


def stream(rpc: str, error_reply: Callable[[object, grpc.StatusCode, str], object]):
    """Decorate an async handler ``(self, item, context) -> reply`` that answers one message of a
    bidirectional stream. Each message is answered in order and counted on its own; a failed one
    gets ``error_reply(item, code, message)`` in its place and the stream goes on."""

    def wrap(answer_one):
        @functools.wraps(answer_one)
        async def run(self, request_iterator, context: grpc.aio.ServicerContext):
            observer: CallObserver = self.observer
            observer.call_started()
            try:
                async for item in request_iterator:
                    try:
                        reply = await answer_one(self, item, context)
                    except grpc.aio.AbortError:
                        raise
                    except Exception as e:
                        code, message = failure(rpc, e)
                        observer.call_finished(rpc, code.name, None, model_named(item))
                        yield error_reply(item, code, message)
                        continue
                    observer.call_finished(rpc, grpc.StatusCode.OK.name, None, model_named(item))
                    yield reply
            finally:
                observer.call_ended()

        return run

    return wrap
