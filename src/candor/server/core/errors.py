"""One transport-neutral error hierarchy; :mod:`candor.server.status` maps it to gRPC codes."""

SHOWN_CHARS = 64  # an echoed value longer than this is cut: a message never grows with the input


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters with the full length said.

    >>> shown("x" * 100, 8)
    "'xxxxxxxx...' (100 characters)"
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}"[:-1] + f"...' ({len(value)} characters)"


class CandorError(Exception):
    """Base of every error a caller is meant to see; the message says what to fix."""


class InvalidArgument(CandorError):
    """The request is malformed: wrong shape, dtype, values or options."""


class NotFound(CandorError):
    """No such model or version."""


class Unavailable(CandorError):
    """The model exists but cannot serve now (loading, failed, or the server is stopping)."""


class ResourceExhausted(CandorError):
    """A bound was hit (queue full); retry later."""


class DeadlineExceeded(CandorError):
    """The caller's deadline passed before the work was done."""


class FailedPrecondition(CandorError):
    """The system is not in a state where the call can act (e.g. too little feedback)."""


class Aborted(CandorError):
    """A conflicting operation is running (another recalibration of the same model); retry after it."""
