"""``Client`` (blocking) and ``AsyncClient`` (asyncio) over one shared base.

>>> from candor.client import Client
>>> with Client("127.0.0.1:8001") as c:                          # doctest: +SKIP
...     result = c.predict(rows, model="digits", top_k=3)
...     result.probabilities.shape, result.labels[0], result.prediction_ids[0]

Arguments are checked before anything is sent (a ValueError says what is wrong); a call the
server refuses raises the matching :class:`candor.client.CandorError` subclass.

Large calls are split: rows of a Predict, or items of a Feedback, beyond the server's
``max_rows_per_request`` (learned once per model from GetModel) go in consecutive requests,
up to ``PIPELINE_DEPTH`` of them in flight, and come back as one result in input order.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from candor.client._errors import CandorError, from_rpc_error
from candor.client._results import (
    CalibrationReport,
    FeedbackResult,
    ModelDescription,
    PredictResult,
    Recalibration,
    VersionNames,
    is_columnar,
)
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_PORT = 8001  # a target without a port means Candor's port, not gRPC's default of 443
CHUNK_CHECK_ROWS = 256  # a call with more rows or items than this learns the server's limit first (once per model)
PIPELINE_DEPTH = 4  # requests of one split call in flight at once
ChannelOptions = Sequence[tuple[str, Any]]


def with_default_port(target: str) -> str:
    """``host`` becomes ``host:8001``; ``host:port``, ``[v6]:port`` and gRPC URIs (``dns:///...``) stay."""
    if "://" in target or target.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return target
    if target.startswith("["):
        return target if "]:" in target else f"{target}:{DEFAULT_PORT}"
    if target.count(":") > 1:  # a bare IPv6 address
        return f"[{target}]:{DEFAULT_PORT}"
    return target if ":" in target else f"{target}:{DEFAULT_PORT}"


def spans(n: int, limit: int) -> list[slice]:
    """Consecutive slices of at most ``limit`` covering ``range(n)`` (one empty slice when n is 0)."""
    return [slice(i, min(i + limit, n)) for i in range(0, max(n, 1), max(limit, 1))]


def _version(version: str | int | None) -> str:
    """A version as the API carries it: text, empty for the newest ready one."""
    return "" if version is None else str(version)


def as_rows(rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Rows [N, F] as float32 (a single 1-D row becomes [1, F])."""
    a = np.asarray(rows, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"rows must be 2-D [N, F] (or one 1-D row), got shape {a.shape}")
    return a


def rows_tensor(rows: np.ndarray | Sequence[Sequence[float]]) -> pb.Tensor:
    """Rows [N, F] (a single 1-D row becomes [1, F]) as a float32 raw tensor."""
    a = as_rows(rows)
    return pb.Tensor(shape=list(a.shape), dtype=pb.DATA_TYPE_FLOAT32, raw_data=np.ascontiguousarray(a, dtype="<f4").tobytes())


def _service_config(retries: int) -> str:
    """Retry UNAVAILABLE (a restarting server, a model mid-swap) and a stopping server's CANCELLED with
    backoff, in the channel.

    gRPC wants maxAttempts >= 2 in a retry policy, so no retries means no policy. Recalibrate is
    never retried: it may publish a version, and a retry after an answer that got lost would
    refit again; the caller decides after reading the versions.
    """
    if retries == 0:
        return json.dumps({})
    # CANCELLED too: a server that stops cancels the calls gRPC had received but not yet handed to its
    # handlers; a call this client cancels itself is never retried (gRPC retries server statuses only).
    policy = {"maxAttempts": retries + 1, "initialBackoff": "0.05s", "maxBackoff": "1s", "backoffMultiplier": 2,
              "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]}  # fmt: skip
    names = [{"service": "candor.v1.InferenceService"}, {"service": "inference.GRPCInferenceService"}]
    never = [{"service": "candor.v1.InferenceService", "method": "Recalibrate"}]  # a method entry beats its service's
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}, {"name": never}]})


class _BaseClient:
    """Configuration and message building shared by both clients.

    ``timeout``: default deadline per call, seconds. ``retries``: how often UNAVAILABLE is
    retried with backoff (0..4). ``token``: bearer token. ``tls``/``root_certificates``/
    ``private_key``/``certificate_chain``: TLS and mutual TLS. ``channel_options``: extra
    gRPC channel arguments, e.g. ``[("grpc.keepalive_time_ms", 30000)]``; one with the same key
    as the client's own replaces it.
    """

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
        channel_options: ChannelOptions = (),
    ):
        if not target:
            raise ValueError("target must be host:port, e.g. 127.0.0.1:8001")
        target = with_default_port(target)
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
        # gRPC keeps the first of two arguments with one key: merge by key, so the caller's value wins.
        self._options = list({**dict(self._options), **dict(channel_options)}.items())
        tls = tls or root_certificates is not None or certificate_chain is not None
        self._credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain) if tls else None
        # Class names per (model, version), fetched once with GetModel: answers carry indices only.
        self._class_names: dict[tuple[str, str], VersionNames] = {}
        self._row_limits: dict[str, int] = {}  # the server's max_rows_per_request, per model asked (0: not told)
        self._connect()

    def _connect(self) -> None:
        """Open the channel and stubs (blocking or asyncio: the subclass knows)."""
        raise NotImplementedError

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
        return pb.FeedbackRequest(model=model, version=_version(version), items=items)

    @staticmethod
    def _recalibrate_request(model: str, version, holdout_share: float, min_rows: int, dry_run: bool, method: str,
                             since: float, newest_rows: int, include_client_recorded: bool) -> pb.RecalibrateRequest:  # fmt: skip
        if not model:
            raise ValueError("model is required")
        if not 0 < holdout_share < 1:
            raise ValueError(f"holdout_share must lie in (0, 1), got {holdout_share}")
        if since < 0 or newest_rows < 0:
            raise ValueError("since and newest_rows must be >= 0 (0: the server's feedback window)")
        return pb.RecalibrateRequest(model=model, version=_version(version), holdout_share=holdout_share,
                                     min_rows=max(1, min_rows), dry_run=dry_run, method=method, since=since,
                                     newest_rows=newest_rows, include_client_recorded=include_client_recorded)  # fmt: skip

    @staticmethod
    def _predict_request(rows, model: str, version: str | int | None, top_k: int, return_logits: bool,
                         coverage: float | None = None, conformal_method: str = "") -> pb.PredictRequest:  # fmt: skip
        if not model:
            raise ValueError("model is required: the name of a model the server serves (see models())")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        return pb.PredictRequest(model=model, version=_version(version), inputs=rows_tensor(rows), top_k=top_k,
                                 return_logits=return_logits, columnar=True, coverage=coverage or 0.0,
                                 conformal_method=conformal_method)  # fmt: skip

    def _known_limit(self, model: str, n: int) -> int | None:
        """How many rows or items one request of ``model`` may carry, when that is known or does not matter
        (``n`` small); None: ask the server with GetModel first."""
        if n <= CHUNK_CHECK_ROWS:
            return n
        if model not in self._row_limits:
            return None
        return self._row_limits[model] or n

    def _learn_limit(self, model: str, description: ModelDescription | None, n: int) -> int:
        """Remember the server's limit from GetModel; a failed GetModel (None) sends everything at once and
        lets that call say what is wrong."""
        if description is None:
            return n
        self._row_limits[model] = description.max_rows_per_request
        if description.class_names:  # the same GetModel answers the names of the version that will likely answer
            self._class_names.setdefault((model, description.version), VersionNames(description.class_names))
        return description.max_rows_per_request or n

    @staticmethod
    def _feedback_chunks(request: pb.FeedbackRequest, limit: int) -> list[pb.FeedbackRequest]:
        items = list(request.items)
        return [pb.FeedbackRequest(model=request.model, version=request.version, items=items[s])
                for s in spans(len(items), limit)]  # fmt: skip

    def _names_needed(self, response: pb.PredictResponse) -> tuple[str, str] | None:
        """The (model, version) whose class names a columnar answer needs and this client has not fetched yet.

        They are fetched right after that first answer, once per version and client, so that results stay
        readable after the client closes. The answer does not depend on them: if they cannot be had (a
        server stopping, say), its ``labels`` raises that error and the next predict tries again."""
        key = (response.model, response.version)
        return key if is_columnar(response) and key not in self._class_names else None

    def _known_names(self, key: tuple[str, str], names: Sequence[str]) -> VersionNames:
        known = self._class_names[key] = VersionNames(names)
        return known


class Client(_BaseClient):
    """Blocking client. Use as a context manager or call ``close()``."""

    def _connect(self) -> None:
        if self._credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=self._options)
        else:
            self._channel = grpc.secure_channel(self.target, self._credentials, options=self._options)
        self._stub = pb_grpc.InferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def _call(self, method, request, timeout: float | None):
        try:
            return method(request, **self._call_args(timeout))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def _pipelined(self, method, requests: Iterable, timeout: float | None) -> Iterator:
        """Answers to ``requests`` in order, with up to PIPELINE_DEPTH calls in flight; on a failure the rest
        are cancelled and its error raised."""
        pending: deque = deque()
        try:
            for request in requests:
                pending.append(method.future(request, **self._call_args(timeout)))
                if len(pending) >= PIPELINE_DEPTH:
                    yield self._wait(pending.popleft())
            while pending:
                yield self._wait(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    @staticmethod
    def _wait(future):
        try:
            return future.result()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    def _limit(self, model: str, n: int, timeout: float | None) -> int:
        limit = self._known_limit(model, n)
        if limit is not None:
            return limit
        try:
            description = self.model(model, timeout=timeout)
        except CandorError:
            description = None
        return self._learn_limit(model, description, n)

    def predict(self, rows, *, model: str, version: str | int | None = None, top_k: int = 1, return_logits: bool = False,
                coverage: float | None = None, conformal_method: str = "",
                timeout: float | None = None) -> PredictResult:  # fmt: skip
        """Calibrated probabilities for ``rows`` [N, F]; ``version`` None means the newest ready one. More rows
        than the server takes at once go in several requests (``timeout`` is per request). ``coverage``
        (e.g. 0.9): conformal prediction sets too, in ``.sets`` and ``.set_labels``, by ``conformal_method``
        (empty: the version's recommended one)."""
        rows = as_rows(rows)
        parts = spans(len(rows), self._limit(model, len(rows), timeout))
        request = self._predict_request(rows[parts[0]], model, version, top_k, return_logits, coverage, conformal_method)
        first = self._predict_answer(self._call(self._stub.Predict, request, timeout), timeout)
        # The other chunks ask for the version that answered the first: one call is never split across versions.
        asked = (top_k, return_logits, coverage, conformal_method)
        requests = (self._predict_request(rows[s], model, first.version, *asked) for s in parts[1:])
        rest = [self._predict_answer(r, timeout) for r in self._pipelined(self._stub.Predict, requests, timeout)]
        return PredictResult.joined([first, *rest])

    def _predict_answer(self, response: pb.PredictResponse, timeout: float | None) -> PredictResult:
        key = self._names_needed(response)
        if key is None:
            return PredictResult.from_proto(response, self._class_names.get((response.model, response.version), ()))
        try:
            names = self._known_names(key, self.model(*key, timeout=timeout).class_names)
        except CandorError as e:
            names = VersionNames(error=e)
        return PredictResult.from_proto(response, names)

    def feedback(self, prediction_ids, labels, *, model: str, version: str | int | None = None, probabilities=None,
                 logits=None, timeout: float | None = None) -> FeedbackResult:  # fmt: skip
        """Send true labels for earlier predictions, by the ids Predict returned
        (or, with ``prediction_ids=None``, with the served ``probabilities`` or raw ``logits``). More items
        than the server takes at once go in several requests."""
        request = self._feedback_request(prediction_ids, labels, model, version, probabilities, logits)
        chunks = self._feedback_chunks(request, self._limit(model, len(request.items), timeout))
        answers = self._pipelined(self._stub.Feedback, chunks, timeout)
        return FeedbackResult.joined([FeedbackResult.from_proto(r) for r in answers])

    def calibration(self, model: str, version: str | int | None = None, *, timeout: float | None = None) -> CalibrationReport:
        """The live calibration report of a model version."""
        request = pb.GetCalibrationRequest(model=model, version=_version(version))
        return CalibrationReport.from_proto(self._call(self._stub.GetCalibration, request, timeout))

    def recalibrate(self, model: str, version: str | int | None = None, *, holdout_share: float = 0.3, min_rows: int = 100,
                    dry_run: bool = False, method: str = "temperature", since: float = 0.0, newest_rows: int = 0,
                    include_client_recorded: bool = False, timeout: float | None = None) -> Recalibration:  # fmt: skip
        """Refit the version's calibrator on a window of its feedback; publishes a new version when the held-out NLL
        decrease is significant. ``method="conformal"`` refreshes the prediction sets' scores from feedback instead;
        ``method="label_shift"`` corrects the calibrator to the class priors EM estimates on the unlabeled logged rows
        (``since`` and ``newest_rows`` then select logged rows; the result's ``prior_shift`` has the estimate). Never
        retried (see the retry policy)."""
        request = self._recalibrate_request(model, version, holdout_share, min_rows, dry_run, method, since, newest_rows,
                                            include_client_recorded)
        return Recalibration.from_proto(self._call(self._stub.Recalibrate, request, timeout))

    def models(self, *, timeout: float | None = None) -> list[ModelDescription]:
        response = self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelDescription.from_proto(m) for m in response.models]

    def model(self, name: str, version: str | int | None = None, *, timeout: float | None = None) -> ModelDescription:
        request = pb.GetModelRequest(name=name, version=_version(version))
        return ModelDescription.from_proto(self._call(self._stub.GetModel, request, timeout).model)

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """ "SERVING", "NOT_SERVING", ... for the server ("") or one model by name."""
        response = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """asyncio client with the same methods as :class:`Client`, awaited. Use ``async with`` or ``await close()``."""

    def _connect(self) -> None:
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
        else:
            self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=self._options)
        self._stub = pb_grpc.InferenceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def _call(self, method, request, timeout: float | None):
        try:
            return await method(request, **self._call_args(timeout))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from e

    async def _pipelined(self, method, requests: Iterable, timeout: float | None) -> list:
        """Answers to ``requests`` in order, with up to PIPELINE_DEPTH calls in flight; on a failure the rest
        are cancelled and its error raised."""
        slots = asyncio.Semaphore(PIPELINE_DEPTH)

        async def one(request):
            async with slots:
                return await self._call(method, request, timeout)

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            return await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _limit(self, model: str, n: int, timeout: float | None) -> int:
        limit = self._known_limit(model, n)
        if limit is not None:
            return limit
        try:
            description = await self.model(model, timeout=timeout)
        except CandorError:
            description = None
        return self._learn_limit(model, description, n)

    async def predict(self, rows, *, model: str, version: str | int | None = None, top_k: int = 1, return_logits: bool = False,
                      coverage: float | None = None, conformal_method: str = "",
                      timeout: float | None = None) -> PredictResult:  # fmt: skip
        rows = as_rows(rows)
        parts = spans(len(rows), await self._limit(model, len(rows), timeout))
        request = self._predict_request(rows[parts[0]], model, version, top_k, return_logits, coverage, conformal_method)
        first = await self._predict_answer(await self._call(self._stub.Predict, request, timeout), timeout)
        asked = (top_k, return_logits, coverage, conformal_method)
        requests = [self._predict_request(rows[s], model, first.version, *asked) for s in parts[1:]]
        rest = [await self._predict_answer(r, timeout) for r in await self._pipelined(self._stub.Predict, requests, timeout)]
        return PredictResult.joined([first, *rest])

    async def _predict_answer(self, response: pb.PredictResponse, timeout: float | None) -> PredictResult:
        key = self._names_needed(response)
        if key is None:
            return PredictResult.from_proto(response, self._class_names.get((response.model, response.version), ()))
        try:
            names = self._known_names(key, (await self.model(*key, timeout=timeout)).class_names)
        except CandorError as e:
            names = VersionNames(error=e)
        return PredictResult.from_proto(response, names)

    async def feedback(self, prediction_ids, labels, *, model: str, version: str | int | None = None, probabilities=None,
                       logits=None, timeout: float | None = None) -> FeedbackResult:  # fmt: skip
        request = self._feedback_request(prediction_ids, labels, model, version, probabilities, logits)
        chunks = self._feedback_chunks(request, await self._limit(model, len(request.items), timeout))
        answers = await self._pipelined(self._stub.Feedback, chunks, timeout)
        return FeedbackResult.joined([FeedbackResult.from_proto(r) for r in answers])

    async def calibration(
        self, model: str, version: str | int | None = None, *, timeout: float | None = None
    ) -> CalibrationReport:
        request = pb.GetCalibrationRequest(model=model, version=_version(version))
        return CalibrationReport.from_proto(await self._call(self._stub.GetCalibration, request, timeout))

    async def recalibrate(self, model: str, version: str | int | None = None, *, holdout_share: float = 0.3, min_rows: int = 100,
                          dry_run: bool = False, method: str = "temperature", since: float = 0.0, newest_rows: int = 0,
                          include_client_recorded: bool = False, timeout: float | None = None) -> Recalibration:  # fmt: skip
        request = self._recalibrate_request(model, version, holdout_share, min_rows, dry_run, method, since, newest_rows,
                                            include_client_recorded)
        return Recalibration.from_proto(await self._call(self._stub.Recalibrate, request, timeout))

    async def models(self, *, timeout: float | None = None) -> list[ModelDescription]:
        response = await self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelDescription.from_proto(m) for m in response.models]

    async def model(self, name: str, version: str | int | None = None, *, timeout: float | None = None) -> ModelDescription:
        request = pb.GetModelRequest(name=name, version=_version(version))
        return ModelDescription.from_proto((await self._call(self._stub.GetModel, request, timeout)).model)

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        response = await self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
