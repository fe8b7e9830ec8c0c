"""The Candor client SDK: a small public surface over private modules.

Never imports onnxruntime, torch or server code (import-linter checks it).

>>> from candor.client import Client, InvalidArgument
>>> with Client("127.0.0.1:8001") as client:        # doctest: +SKIP
...     client.predict(rows, model="digits").probabilities
"""

from candor.client._client import AsyncClient, Client
from candor.client._errors import (
    Aborted,
    Cancelled,
    CandorError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from candor.client._results import (
    CalibrationReport,
    DriftSignals,
    FeedbackResult,
    ModelDescription,
    ObservedSignals,
    PredictResult,
    PriorShift,
    Recalibration,
    ReferenceSignals,
    ReliabilityBin,
    SetCoverage,
)

__all__ = [
    "AsyncClient",
    "CalibrationReport",
    "Cancelled",
    "CandorError",
    "Client",
    "DeadlineExceeded",
    "DriftSignals",
    "Aborted",
    "FailedPrecondition",
    "FeedbackResult",
    "Internal",
    "InvalidArgument",
    "ModelDescription",
    "NotFound",
    "ObservedSignals",
    "PermissionDenied",
    "PredictResult",
    "PriorShift",
    "Recalibration",
    "ReferenceSignals",
    "ReliabilityBin",
    "SetCoverage",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]
