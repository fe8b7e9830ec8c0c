"""The SDK's exceptions: one class per gRPC status a Candor server answers with, under one base.

Mapped once, here, from gRPC's own error; a caller never sees grpc's private
``_InactiveRpcError``. Each carries the status ``code`` (its name, e.g. ``"NOT_FOUND"``) and
the server's ``message``, which says what to fix.

>>> try:                                                   # doctest: +SKIP
...     client.predict(rows, model="digits")
... except candor.client.InvalidArgument as e:
...     print(e.code, e.message)
INVALID_ARGUMENT the model takes 64 features per row, got 3 (shape [1, 3])
"""

from __future__ import annotations

import grpc


class CandorError(Exception):
    """Base of every error a Candor call raises for an answer other than OK."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(CandorError):
    """The request is malformed: wrong shape, dtype, values or options. Fix the request."""

    code = "INVALID_ARGUMENT"


class NotFound(CandorError):
    """No such model or version."""

    code = "NOT_FOUND"


class FailedPrecondition(CandorError):
    """The server is not in a state to act, e.g. too little feedback to recalibrate."""

    code = "FAILED_PRECONDITION"


class Aborted(CandorError):
    """A conflicting operation is running on the server (another recalibration of the model); retry after it."""

    code = "ABORTED"


class ResourceExhausted(CandorError):
    """A server bound was hit (queue full, too many calls in flight): retry with backoff."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(CandorError):
    """The server or model cannot serve now (starting, stopping, loading, store down); retry later.
    The client already retried it ``retries`` times."""

    code = "UNAVAILABLE"


class DeadlineExceeded(CandorError):
    """The call's deadline passed before the answer came."""

    code = "DEADLINE_EXCEEDED"


class Cancelled(CandorError):
    code = "CANCELLED"


class Unauthenticated(CandorError):
    """No bearer token, or one the server does not know."""

    code = "UNAUTHENTICATED"


class PermissionDenied(CandorError):
    """The token's role may not call this (e.g. Recalibrate needs admin)."""

    code = "PERMISSION_DENIED"


class Unimplemented(CandorError):
    """The server does not offer this call (an older server)."""

    code = "UNIMPLEMENTED"


class Internal(CandorError):
    """A bug on the server (INTERNAL, UNKNOWN or DATA_LOSS); its log has the details."""

    code = "INTERNAL"


_BY_CODE: dict[grpc.StatusCode, type[CandorError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def from_rpc_error(error: grpc.RpcError) -> CandorError:
    """The SDK exception for a failed gRPC call, keeping its exact status name."""
    code = error.code() if hasattr(error, "code") else None
    message = (error.details() if hasattr(error, "details") else None) or str(error)
    cls = _BY_CODE.get(code, CandorError)
    return cls(message, code.name if code is not None else None)
