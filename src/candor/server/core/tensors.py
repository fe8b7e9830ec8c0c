"""Turning a request's input tensor, in whatever protocol it came, into validated float32 rows, and the
checks and constant arrays the request path shares.

Under load each numpy call costs a request several microseconds whatever the size of its arrays
(5 to 8 times what it costs in a quiet process, measured in the loaded server; docs/benchmarks.md),
so these spend as few calls as they can.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence

import numpy as np

from candor.server.core.errors import InvalidArgument


def rows_from_parts(shape: list[int], raw: bytes, typed: Sequence[float] | None, *, num_features: int, max_rows: int,
                    dtype_ok: bool, dtype_name: str) -> np.ndarray:  # fmt: skip
    """Validate and decode one input tensor into float32 [N, F].

    Exactly one of ``raw`` (little-endian float32 bytes) and ``typed`` (a protobuf repeated field
    as it came, or any sequence) must carry the values; every failure names what was expected.
    Sizes are checked before any value is converted, and typed values go straight into numpy,
    never through a Python list.
    """
    if not dtype_ok:
        raise InvalidArgument(f"input dtype must be float32 (FP32), got {dtype_name}")
    shape = list(shape)
    if len(shape) != 2:
        raise InvalidArgument(f"input shape must be [N, {num_features}] (2-D), got {shape}")
    n, f = shape
    if f != num_features:
        raise InvalidArgument(f"the model takes {num_features} features per row, got {f} (shape {shape})")
    if n < 1:
        raise InvalidArgument(f"the batch is empty (shape {shape}); send at least one row")
    if n > max_rows:
        raise InvalidArgument(f"too many rows: {n}, at most {max_rows} per request")
    has_raw, has_typed = len(raw) > 0, bool(typed)
    if has_raw and has_typed:
        raise InvalidArgument("send the values either as raw bytes or as typed floats, not both")
    expected = n * f
    if has_raw:
        if len(raw) != expected * 4:
            raise InvalidArgument(f"raw input holds {len(raw)} bytes; shape {shape} of float32 needs {expected * 4}")
        rows = np.ndarray((n, f), dtype="<f4", buffer=raw)  # a view of the bytes, shaped in the same call
    else:
        count = len(typed or ())
        if count != expected:
            raise InvalidArgument(f"typed input holds {count} values; shape {shape} needs {expected}")
        rows = np.fromiter(typed, dtype=np.float32, count=expected).reshape(n, f)
    if not all_finite(rows):
        bad = int(np.argwhere(~np.isfinite(rows))[0][0])
        raise InvalidArgument(f"input has NaN or infinite values (first in row {bad}); every feature must be finite")
    return rows if rows.dtype == np.float32 else rows.astype(np.float32)  # "<f4" is float32 but on a big-endian host


# The one reduction of all_finite overflows, or adds +inf to -inf, only on values the exact check then refuses
# or passes; numpy's warning about it would be noise in the server's log.
warnings.filterwarnings("ignore", r"(overflow|invalid value) encountered in reduce", RuntimeWarning, __name__)


def all_finite(values: np.ndarray) -> bool:
    """Whether no value is NaN or infinite, in one reduction for the usual answer: a sum is finite exactly
    when every term is, unless finite terms overflow it, and only then (or when some value is not finite)
    are the values looked at one by one."""
    return math.isfinite(np.add.reduce(values, axis=None)) or bool(np.isfinite(values).all())


@functools.lru_cache(maxsize=64)
def row_starts(n: int, k: int) -> np.ndarray:
    """Flat index of each row's first element in a C-ordered [n, k] array, as a column: ``a.ravel()[j + row_starts]``
    gathers ``a[i, j[i]]`` in one indexing call (an ``arange`` and a two-array index cost two). Shared, so read-only."""
    starts = np.arange(0, n * k, k)[:, None]
    starts.flags.writeable = False
    return starts
