"""The Candor SDK: ``Client`` (blocking) and ``AsyncClient`` (asyncio) over one shared base.

>>> from candor.client import Client
>>> with Client("127.0.0.1:8001") as c:                          # doctest: +SKIP
...     result = c.predict(rows, model="digits", top_k=3)
...     result.probabilities.shape, result.labels[0], result.prediction_ids[0]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 10.0
_STATES = {pb.MODEL_STATE_LOADING: "LOADING", pb.MODEL_STATE_READY: "READY", pb.MODEL_STATE_FAILED: "FAILED"}


@dataclass(frozen=True)
class PredictResult:
    """One answer per input row, in input order."""

    model: str
    version: str
    probabilities: np.ndarray  # [N, K] calibrated
    confidences: np.ndarray  # [N] top-label probability
    prediction_ids: list[str]  # [N] for feedback
    top_k_indices: np.ndarray  # [N, k] most probable first
    labels: list[list[str]]  # [N][k] class names of top_k_indices
    top_k_probabilities: np.ndarray  # [N, k]
    logits: np.ndarray | None  # [N, K] raw, when asked for

    @classmethod
    def from_proto(cls, r: pb.PredictResponse) -> PredictResult:
        probs = tensor_to_array(r.probabilities)
        n, k = len(probs), max(r.top_k, 1)
        names = list(r.top_k_names)
        return cls(
            model=r.model,
            version=r.version,
            probabilities=probs,
            confidences=np.asarray(r.confidences, dtype=np.float32),
            prediction_ids=list(r.prediction_ids),
            top_k_indices=np.asarray(r.top_k_indices, dtype=np.int64).reshape(n, k),
            labels=[names[i * k : (i + 1) * k] for i in range(n)],
            top_k_probabilities=np.asarray(r.top_k_probabilities, dtype=np.float32).reshape(n, k),
            logits=tensor_to_array(r.logits) if r.HasField("logits") else None,
        )


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: str
    state: str
    message: str
    task: str
    class_names: list[str]
    num_features: int
    temperature: list[float]
    provider: str
    smoothing: str
    epsilon: float
    test_ece: float
    test_accuracy: float

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> ModelDescription:
        return cls(m.name, m.version, _STATES.get(m.state, "UNKNOWN"), m.message, m.task, list(m.class_names), m.num_features,
                   [round(t, 6) for t in m.temperature], m.provider, m.smoothing_convention, round(m.smoothing_epsilon, 6),
                   m.test_ece, m.test_accuracy)  # fmt: skip


_FEEDBACK = {pb.FEEDBACK_OUTCOME_ACCEPTED: "ACCEPTED", pb.FEEDBACK_OUTCOME_UNKNOWN_ID: "UNKNOWN_ID",
             pb.FEEDBACK_OUTCOME_DUPLICATE: "DUPLICATE", pb.FEEDBACK_OUTCOME_EXPIRED: "EXPIRED"}  # fmt: skip


@dataclass(frozen=True)
class FeedbackResult:
    """One outcome per item, in order: ACCEPTED, UNKNOWN_ID, DUPLICATE or EXPIRED."""

    outcomes: list[str]
    accepted: int
    unknown_id: int
    duplicate: int
    expired: int

    @classmethod
    def from_proto(cls, r: pb.FeedbackResponse) -> FeedbackResult:
        return cls([_FEEDBACK.get(o, "UNSPECIFIED") for o in r.outcomes], r.accepted, r.unknown_id, r.duplicate, r.expired)


@dataclass(frozen=True)
class CalibrationReport:
    """A version's live calibration (``GetCalibration``): the training-time
    reference, label-free drift (None while nothing was predicted) and
    label-based signals (None while no feedback arrived)."""

    model: str
    version: str
    temperature: list[float]
    reference: dict
    drift: dict | None
    observed: dict | None

    @classmethod
    def from_proto(cls, r: pb.GetCalibrationResponse) -> CalibrationReport:
        plain = _plain
        drift = plain(r.drift) if r.HasField("drift") else None
        observed = plain(r.observed) if r.HasField("observed") else None
        return cls(r.model, r.version, [round(t, 6) for t in r.temperature], plain(r.reference), drift, observed)


def _plain(message) -> dict:
    """A response as a plain dict with the proto's field names (int64 fields come as text)."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def tensor_to_array(t: pb.Tensor) -> np.ndarray:
    data = np.frombuffer(t.raw_data, dtype="<f4") if t.raw_data else np.asarray(t.float_data, dtype=np.float32)
    return data.reshape(tuple(t.shape)).astype(np.float32, copy=False)


def rows_tensor(rows: np.ndarray | Sequence[Sequence[float]]) -> pb.Tensor:
    """Rows [N, F] (a single 1-D row becomes [1, F]) as a float32 raw tensor."""
    a = np.asarray(rows, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"rows must be 2-D [N, F] (or one 1-D row), got shape {a.shape}")
    return pb.Tensor(shape=list(a.shape), dtype=pb.DATA_TYPE_FLOAT32, raw_data=np.ascontiguousarray(a, dtype="<f4").tobytes())


def _service_config(retries: int) -> str:
    """Retry UNAVAILABLE (a restarting server, a model mid-swap) with backoff, in the channel.

    gRPC wants maxAttempts >= 2 in a retry policy, so no retries means no policy.
    """
    if retries == 0:
        return json.dumps({})
    policy = {"maxAttempts": retries + 1, "initialBackoff": "0.05s", "maxBackoff": "1s", "backoffMultiplier": 2,
              "retryableStatusCodes": ["UNAVAILABLE"]}  # fmt: skip
    names = [{"service": "candor.v1.InferenceService"}, {"service": "inference.GRPCInferenceService"}]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


class _BaseClient:
    """Configuration and message building shared by both clients."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
    ):
        if not target:
            raise ValueError("target must be host:port, e.g. 127.0.0.1:8001")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if not 0 <= retries <= 4:
            raise ValueError(f"retries must be between 0 and 4 (gRPC caps attempts at 5), got {retries}")
        self.target = target
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._options = [
            ("grpc.service_config", _service_config(retries)),
            ("grpc.enable_retries", 1 if retries else 0),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        tls = tls or root_certificates is not None or certificate_chain is not None
        self._credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain) if tls else None

    def _call_args(self, timeout: float | None) -> dict:
        return {"timeout": self.timeout if timeout is None else timeout, "metadata": self._metadata}

    @staticmethod
    def _feedback_request(prediction_ids, labels, model: str, version, probabilities, logits) -> pb.FeedbackRequest:
        if not model:
            raise ValueError("model is required: the name of the model the predictions came from")
        labels = [int(v) for v in np.asarray(labels).ravel()]
        ids = [""] * len(labels) if prediction_ids is None else [str(p) for p in prediction_ids]
        if len(ids) != len(labels):
            raise ValueError(f"{len(ids)} prediction ids but {len(labels)} labels")
        if probabilities is not None and logits is not None:
            raise ValueError("pass probabilities or logits, not both")
        extra = probabilities if probabilities is not None else logits
        rows = [None] * len(labels) if extra is None else list(np.asarray(extra, dtype=np.float32))
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} rows of probabilities/logits but {len(labels)} labels")
        key = "probabilities" if probabilities is not None else "logits"
        items = [
            pb.FeedbackItem(prediction_id=pid, label=label, **({key: row.tolist()} if row is not None else {}))
            for pid, label, row in zip(ids, labels, rows, strict=True)
        ]
        return pb.FeedbackRequest(model=model, version="" if version is None else str(version), items=items)

    @staticmethod
    def _recalibrate_request(model: str, version, holdout_share: float, min_rows: int, dry_run: bool) -> pb.RecalibrateRequest:
        if not model:
            raise ValueError("model is required")
        if not 0 < holdout_share < 1:
            raise ValueError(f"holdout_share must lie in (0, 1), got {holdout_share}")
        return pb.RecalibrateRequest(model=model, version="" if version is None else str(version), holdout_share=holdout_share,
                                     min_rows=max(1, min_rows), dry_run=dry_run)  # fmt: skip

    @staticmethod
    def _predict_request(rows, model: str, version: str | int | None, top_k: int, return_logits: bool) -> pb.PredictRequest:
        if not model:
            raise ValueError("model is required: the name of a model the server serves (see models())")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        return pb.PredictRequest(model=model, version="" if version is None else str(version), inputs=rows_tensor(rows),
                                 top_k=top_k, return_logits=return_logits)  # fmt: skip


class Client(_BaseClient):
    """Blocking client. Use as a context manager or call ``close()``."""

    def __init__(self, target: str, **options):
        super().__init__(target, **options)
        if self._credentials is None:
            self._channel = grpc.insecure_channel(target, options=self._options)
        else:
            self._channel = grpc.secure_channel(target, self._credentials, options=self._options)
        self._stub = pb_grpc.InferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def predict(self, rows, *, model: str, version: str | int | None = None, top_k: int = 1, return_logits: bool = False,
                timeout: float | None = None) -> PredictResult:  # fmt: skip
        """Calibrated probabilities for ``rows`` [N, F]; ``version`` None means the newest ready one."""
        request = self._predict_request(rows, model, version, top_k, return_logits)
        return PredictResult.from_proto(self._stub.Predict(request, **self._call_args(timeout)))

    def feedback(self, prediction_ids, labels, *, model: str, version: str | int | None = None, probabilities=None,
                 logits=None, timeout: float | None = None) -> FeedbackResult:  # fmt: skip
        """Send true labels for earlier predictions, by the ids Predict returned
        (or, with ``prediction_ids=None``, with the served ``probabilities`` or raw ``logits``)."""
        request = self._feedback_request(prediction_ids, labels, model, version, probabilities, logits)
        return FeedbackResult.from_proto(self._stub.Feedback(request, **self._call_args(timeout)))

    def calibration(self, model: str, version: str | int | None = None, *, timeout: float | None = None) -> CalibrationReport:
        """The live calibration report of a model version."""
        request = pb.GetCalibrationRequest(model=model, version="" if version is None else str(version))
        return CalibrationReport.from_proto(self._stub.GetCalibration(request, **self._call_args(timeout)))

    def recalibrate(self, model: str, version: str | int | None = None, *, holdout_share: float = 0.3, min_rows: int = 100,
                    dry_run: bool = False, timeout: float | None = None) -> dict:  # fmt: skip
        """Refit the version's temperature on its feedback; publishes a new version if held-out NLL improves."""
        request = self._recalibrate_request(model, version, holdout_share, min_rows, dry_run)
        return _plain(self._stub.Recalibrate(request, **self._call_args(timeout)))

    def models(self, *, timeout: float | None = None) -> list[ModelDescription]:
        response = self._stub.ListModels(pb.ListModelsRequest(), **self._call_args(timeout))
        return [ModelDescription.from_proto(m) for m in response.models]

    def model(self, name: str, version: str | int | None = None, *, timeout: float | None = None) -> ModelDescription:
        request = pb.GetModelRequest(name=name, version="" if version is None else str(version))
        return ModelDescription.from_proto(self._stub.GetModel(request, **self._call_args(timeout)).model)

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """ "SERVING", "NOT_SERVING", ... for the server ("") or one model by name."""
        response = self._health.Check(health_pb2.HealthCheckRequest(service=service), **self._call_args(timeout))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """asyncio client. Use ``async with`` or ``await close()``."""

    def __init__(self, target: str, **options):
        super().__init__(target, **options)
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=self._options)
        else:
            self._channel = grpc.aio.secure_channel(target, self._credentials, options=self._options)
        self._stub = pb_grpc.InferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def predict(self, rows, *, model: str, version: str | int | None = None, top_k: int = 1, return_logits: bool = False,
                      timeout: float | None = None) -> PredictResult:  # fmt: skip
        request = self._predict_request(rows, model, version, top_k, return_logits)
        return PredictResult.from_proto(await self._stub.Predict(request, **self._call_args(timeout)))

    async def feedback(self, prediction_ids, labels, *, model: str, version: str | int | None = None, probabilities=None,
                       logits=None, timeout: float | None = None) -> FeedbackResult:  # fmt: skip
        request = self._feedback_request(prediction_ids, labels, model, version, probabilities, logits)
        return FeedbackResult.from_proto(await self._stub.Feedback(request, **self._call_args(timeout)))

    async def calibration(
        self, model: str, version: str | int | None = None, *, timeout: float | None = None
    ) -> CalibrationReport:
        request = pb.GetCalibrationRequest(model=model, version="" if version is None else str(version))
        return CalibrationReport.from_proto(await self._stub.GetCalibration(request, **self._call_args(timeout)))

    async def recalibrate(self, model: str, version: str | int | None = None, *, holdout_share: float = 0.3, min_rows: int = 100,
                          dry_run: bool = False, timeout: float | None = None) -> dict:  # fmt: skip
        request = self._recalibrate_request(model, version, holdout_share, min_rows, dry_run)
        return _plain(await self._stub.Recalibrate(request, **self._call_args(timeout)))

    async def models(self, *, timeout: float | None = None) -> list[ModelDescription]:
        response = await self._stub.ListModels(pb.ListModelsRequest(), **self._call_args(timeout))
        return [ModelDescription.from_proto(m) for m in response.models]

    async def model(self, name: str, version: str | int | None = None, *, timeout: float | None = None) -> ModelDescription:
        request = pb.GetModelRequest(name=name, version="" if version is None else str(version))
        return ModelDescription.from_proto((await self._stub.GetModel(request, **self._call_args(timeout))).model)

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        response = await self._health.Check(health_pb2.HealthCheckRequest(service=service), **self._call_args(timeout))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
