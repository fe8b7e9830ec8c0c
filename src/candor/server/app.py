"""The server assembled in one place: options, services, health, reflection,
metrics endpoint, repository watch and graceful stop.

>>> asyncio.run(serve(Settings.load()))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from candor.kserve.v2 import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from candor.server.core.drift import DriftThresholds
from candor.server.core.events import Events, RepositoryChanged, StoreHealthChanged, VersionLoaded
from candor.server.core.feedback import MAX_ID_CHARS, FeedbackService
from candor.server.core.model import LoadedModel
from candor.server.core.plane import DataPlane
from candor.server.core.repository import READY, ModelRepository
from candor.server.core.settings import Settings
from candor.server.core.store import StoreError
from candor.server.launch import ready_line
from candor.server.observability.collectors import register_core_views
from candor.server.observability.http import MetricsEndpoint
from candor.server.observability.metrics import ServerMetrics
from candor.server.rpc.auth import HEALTH_PREFIX, REFLECTION_PREFIXES, load_tokens, warn_if_open
from candor.server.rpc.candor_service import InferenceService
from candor.server.rpc.edge import EdgeInterceptor, EdgeLimits
from candor.server.rpc.kserve_service import KServeService
from candor.server.rpc.tls import describe, server_credentials
from candor.server.store import open_store
from candor.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger("candor.server")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STORE_HEALTH = "candor.feedback_store"  # health service name of the store (NOT_SERVING while it fails)
# SERVING from start to stop whatever the models do: what a liveness probe should ask, since
# restarting a process whose repository is empty or whose models fail to load mends nothing.
LIVE_HEALTH = "candor.live"
DRAIN_QUIET_S = 0.1  # on SIGTERM, gRPC stops once no call has arrived for this long ...
DRAIN_MAX_S = 2.0  # ... or after this long at most (calls in flight then keep the rest of the grace period)
MESSAGE_FLOOR = 1 << 20  # a derived message limit is never below 1 MiB
MESSAGE_HEADROOM = 64 << 10  # field tags, names and options around the tensor


def largest_request(model: LoadedModel, max_rows: int) -> int:
    """Bytes of the largest valid request for ``model``: a Predict of ``max_rows`` rows, or a Feedback of
    as many items that carry their own probabilities and logits (whichever is larger), plus headroom."""
    k = model.manifest.num_classes
    predict = max_rows * model.num_features * 4
    feedback = max_rows * (MAX_ID_CHARS + 16 + 2 * k * 4)
    return max(predict, feedback) + MESSAGE_HEADROOM


def check_port_free(host: str, port: int, setting: str) -> None:
    """OSError naming the port and its setting when ``host:port`` is taken: checked before any model loads."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: a port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as e:
            reason = "in use by another process" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise OSError(f"cannot listen on {host}:{port}: {reason} (set {setting})") from None


def message_limit(settings: Settings, models: Iterable[LoadedModel]) -> int:
    """``max_message_bytes``, or when it is 0 the largest valid request of the loaded models (at least 1 MiB):
    a bigger message is refused as it arrives, compressed or not, before any of it is parsed."""
    if settings.max_message_bytes:
        return settings.max_message_bytes
    return max([MESSAGE_FLOOR, *(largest_request(m, settings.max_rows_per_request) for m in models)])


class CandorServer:
    """One running server. ``start()``, then ``wait()`` until ``stop()`` (or a signal)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.events = Events()
        self.metrics = ServerMetrics(max_seconds=settings.max_deadline_s)
        self.events.subscribe(self.metrics.on_event)
        self.events.subscribe(self._on_event)
        self.executor = ThreadPoolExecutor(max_workers=max(2, settings.instances * 4), thread_name_prefix="candor-infer")
        self.health = health.aio.HealthServicer()
        self.repository = ModelRepository(settings.model_repository, settings, self.executor, self.events)
        self.thresholds = DriftThresholds(settings.psi_warn, settings.psi_drift)
        self.plane: DataPlane | None = None  # built in start(), once the store is open
        self.grpc_port = 0
        self.metrics_port = 0
        self._stopping = False
        self._ready = False
        self._watch: asyncio.Task | None = None
        self._shift_watch: asyncio.Task | None = None
        self._server: grpc.aio.Server | None = None
        self._metrics_http: MetricsEndpoint | None = None
        self._edge: EdgeInterceptor | None = None
        self.message_bytes = 0
        self._published: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_event(self, event: object) -> None:
        if isinstance(event, RepositoryChanged):
            self._publish_health()
        elif isinstance(event, VersionLoaded) and self.message_bytes:
            self._check_message_limit(event)
        elif isinstance(event, StoreHealthChanged):
            # The store's state as its own health service: predictions go on either way.
            asyncio.get_running_loop().create_task(self.health.set(STORE_HEALTH, SERVING if event.ok else NOT_SERVING))

    def _notify(self, event: object) -> None:
        """Deliver an event from any thread (the prediction log's writer) on the event loop."""
        try:
            self._loop.call_soon_threadsafe(self.events.emit, event)
        except RuntimeError:
            pass  # the loop has closed: the server is gone, nobody listens any more

    def serving(self) -> bool:
        """The server as a whole serves: started, not stopping, and a model version ready (or --allow-empty)."""
        if not self._ready or self._stopping:
            return False
        return self.settings.allow_empty or any(e.state == READY for e in self.repository.entries())

    def _publish_health(self) -> None:
        """Overall status, liveness, plus one service name per model (SERVING when a version is ready)."""
        names = {e.name for e in self.repository.entries()}
        loop = asyncio.get_running_loop()
        for name in names | self._published:
            ok = self._ready and not self._stopping and self.repository.model_ready(name)
            loop.create_task(self.health.set(name, SERVING if ok else NOT_SERVING))
        self._published |= names
        loop.create_task(self.health.set("", SERVING if self.serving() else NOT_SERVING))
        loop.create_task(self.health.set(LIVE_HEALTH, SERVING if self._ready and not self._stopping else NOT_SERVING))

    def _check_message_limit(self, event: VersionLoaded) -> None:
        """A version loaded while serving may need larger messages than the limit derived at start."""
        model = next((m for m in self.repository.loaded() if (m.name, m.version) == (event.model, event.version)), None)
        if model is not None and largest_request(model, self.settings.max_rows_per_request) > self.message_bytes:
            log.warning("model %s version %s takes requests up to %d bytes, over this server's message limit of %d "
                        "derived at start; its largest requests get RESOURCE_EXHAUSTED until a restart or "
                        "--max-message-bytes", model.name, model.version,
                        largest_request(model, self.settings.max_rows_per_request), self.message_bytes)  # fmt: skip

    def _interceptor(self) -> EdgeInterceptor:
        """One pass before any handler: stopping, auth, the Watch cap, limits, decoding (rpc/edge.py)."""
        s = self.settings
        for limit in ("inflight", "deadline", "health_watch", "stopping"):
            self.metrics.limit_refusals.labels(limit)
        limits = EdgeLimits(s.max_inflight_requests, s.default_deadline_s, s.max_deadline_s, s.max_health_watches)
        stopping = lambda: self._stopping  # noqa: E731
        warn_if_open(s.auth_tokens_file)
        if not s.auth_tokens_file:
            return EdgeInterceptor(limits, stopping=stopping, on_refusal=self.metrics.edge_refused)
        table = load_tokens(s.auth_tokens_file)
        log.info("authentication on: %d token(s); health %s, reflection %s without a token", len(table.roles),
                 "open" if s.auth_open_health else "closed", "open" if s.auth_open_reflection else "closed")  # fmt: skip
        for reason in ("unauthenticated", "permission_denied"):
            self.metrics.auth_refusals.labels(reason)
        open_prefixes = ((HEALTH_PREFIX,) if s.auth_open_health else ()) + (REFLECTION_PREFIXES if s.auth_open_reflection else ())
        return EdgeInterceptor(limits, tokens=table, open_prefixes=open_prefixes, stopping=stopping,
                               on_refusal=self.metrics.edge_refused)  # fmt: skip

    async def start(self) -> None:
        s = self.settings
        # Bad tokens or certificate files stop the start before anything loads.
        self._edge = self._interceptor()
        credentials = server_credentials(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file) if s.tls_cert_file else None
        # Both ports are taken, or found taken, before anything slow: a clash is one line, not a load first.
        if not s.reuse_port:  # --workers: the supervisor holds the port and every worker shares it
            check_port_free(s.grpc_host, s.grpc_port, "--grpc-port or CANDOR_GRPC_PORT")
        try:
            self._metrics_http = MetricsEndpoint(self.metrics.registry, s.metrics_host, s.metrics_port)
        except OSError as e:
            reason = "in use by another process" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise OSError(f"cannot serve metrics on {s.metrics_host}:{s.metrics_port}: {reason} "
                          "(set --metrics-port or CANDOR_METRICS_PORT)") from None  # fmt: skip
        self.metrics_port = self._metrics_http.port
        self._loop = asyncio.get_running_loop()
        self._check_repository()
        try:
            store = await asyncio.to_thread(open_store, s)
        except (OSError, StoreError) as e:
            where = "under data_dir " + repr(s.data_dir) if not s.store else "named by the store setting"
            hint = " (--store-optional starts without it)" if s.store.startswith("postgres") else ""
            raise OSError(f"cannot open the store {where}: {e}{hint}") from e
        await self.repository.refresh()
        feedback = FeedbackService(s, self.repository, store, self.events, self._notify)
        self.plane = DataPlane(s, self.repository, feedback, self.thresholds, self.events)
        register_core_views(self.metrics.registry, self.repository, feedback, self.thresholds, self.metrics.collector_failed,
                            self.plane.label_shift)  # fmt: skip
        self.message_bytes = message_limit(s, self.repository.loaded())
        log.info("largest gRPC message accepted: %d bytes%s", self.message_bytes,
                 "" if s.max_message_bytes else " (derived from the loaded models; --max-message-bytes sets it)")  # fmt: skip
        options = [
            # Checked on the decompressed size too, so a small gzip bomb is refused as it inflates.
            ("grpc.max_receive_message_length", self.message_bytes),
            ("grpc.so_reuseport", 1 if s.reuse_port else 0),  # --workers: several processes on one port
            ("grpc.max_concurrent_streams", s.max_concurrent_streams),
            ("grpc.max_allowed_incoming_connections", s.max_connections),
            ("grpc.max_connection_idle_ms", int(s.connection_idle_s * 1000)),
            ("grpc.max_connection_age_ms", int(s.connection_age_s * 1000)),
            # Calls in flight on an aged connection get up to the longest deadline to finish.
            ("grpc.max_connection_age_grace_ms", int(s.max_deadline_s * 1000)),
        ]
        server = grpc.aio.server(options=options, interceptors=[self._edge])
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceService(self.plane, self.metrics), server)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            KServeService(self.plane, self.metrics, self.serving), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if s.reflection:
            from grpc_reflection.v1alpha import reflection

            names = (
                inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name,
                grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
                health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, server)
        address = f"{s.grpc_host}:{s.grpc_port}"
        try:
            if s.tls_cert_file:
                self.grpc_port = server.add_secure_port(address, credentials)
            else:
                self.grpc_port = server.add_insecure_port(address)
        except RuntimeError:  # grpcio raises this when the bind fails (taken since the check above)
            self.grpc_port = 0
        if self.grpc_port == 0:
            self._metrics_http.shutdown()
            raise OSError(f"cannot listen on {s.grpc_host}:{s.grpc_port} (in use or not permitted; set --grpc-port "
                          "or CANDOR_GRPC_PORT)")  # fmt: skip
        await server.start()
        self._server = server
        self._ready = True
        self._publish_health()
        if s.poll_interval_s > 0:
            self._watch = asyncio.create_task(self.repository.watch())
        if s.label_shift_interval_s > 0:
            self._shift_watch = asyncio.create_task(self.plane.label_shift.watch())
        entries = self.repository.entries()
        ready = sum(e.state == READY for e in entries)
        if not entries:
            log.warning("NO MODELS: the model repository %s holds no model version (<name>/<version>/model.onnx); "
                        "overall health is %s until one loads (train one with `candor train --model-repository %s`)",
                        s.model_repository, "SERVING (--allow-empty)" if s.allow_empty else "NOT_SERVING",
                        s.model_repository)  # fmt: skip
        log.info("candor serving %d model version(s) on %s:%d (gRPC, %s), metrics on %s:%d", ready, s.grpc_host, self.grpc_port,
                 describe(s.tls_client_ca_file, s.tls_cert_file), s.metrics_host, self.metrics_port)  # fmt: skip

    def _check_repository(self) -> None:
        """A repository folder that does not exist is a mistake in the settings, not an empty repository."""
        root = self.repository.root
        if not root.is_dir():
            self._metrics_http.shutdown()
            what = "is not a folder" if root.exists() else "does not exist"
            raise OSError(f"the model repository {str(root)!r} {what} (set --model-repository or "
                          "CANDOR_MODEL_REPOSITORY; an empty folder serves nothing until a model is published)")  # fmt: skip

    async def stop(self) -> None:
        """Graceful stop: health NOT_SERVING, new calls UNAVAILABLE, calls in flight get the grace period."""
        if self._stopping or self._server is None:
            return
        self._stopping = True
        grace = self.settings.grace_period_s
        log.info("stopping: health NOT_SERVING, %.1f s for calls in flight", grace)
        await self.health.enter_graceful_shutdown()
        for task in (self._watch, self._shift_watch):
            if task is not None:
                task.cancel()
        # Drain first: while the edge answers new calls UNAVAILABLE, the unary calls in flight
        # finish, until calls stop coming for a moment (DRAIN_QUIET_S; at most DRAIN_MAX_S). Only
        # then does gRPC stop and send GOAWAY: a call gRPC holds but has not handed to Python at
        # that instant is cancelled by it (CANCELLED), so the stop should find none arriving.
        # Bounded, because a client that keeps calling on this connection moves to another
        # replica only after the GOAWAY.
        end = time.monotonic() + grace
        drain_end = min(end, time.monotonic() + DRAIN_MAX_S)
        edge = self._edge
        while edge is not None and time.monotonic() < drain_end and (
            edge.inflight or time.monotonic() - edge.last_call < DRAIN_QUIET_S
        ):
            await asyncio.sleep(0.01)
        await self._server.stop(max(0.0, end - time.monotonic()))
        await self.repository.close()
        self.executor.shutdown(wait=True)
        if self.plane is not None:
            self.plane.feedback_service.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    server = CandorServer(settings)
    await server.start()
    print(ready_line(settings.grpc_host, server.grpc_port, settings.metrics_host, server.metrics_port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
