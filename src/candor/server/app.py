"""The server assembled in one place: options, services, health, reflection,
metrics endpoint, repository watch and graceful stop.

>>> asyncio.run(serve(Settings.load()))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import start_http_server

from candor.kserve.v2 import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from candor.server.core.drift import DriftThresholds
from candor.server.core.events import Events, RepositoryChanged, StoreHealthChanged
from candor.server.core.feedback import FeedbackService
from candor.server.core.plane import DataPlane
from candor.server.core.repository import READY, ModelRepository
from candor.server.core.settings import Settings
from candor.server.core.store import StoreError
from candor.server.launch import ready_line
from candor.server.observability.collectors import register_core_views
from candor.server.observability.metrics import ServerMetrics
from candor.server.rpc.auth import AuthInterceptor, load_tokens, warn_if_open
from candor.server.rpc.candor_service import InferenceService
from candor.server.rpc.decoding import RequestDecoding
from candor.server.rpc.kserve_service import KServeService
from candor.server.rpc.limits import LimitsInterceptor
from candor.server.rpc.tls import describe, server_credentials
from candor.server.store import open_store
from candor.v1 import inference_pb2, inference_pb2_grpc

log = logging.getLogger("candor.server")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STORE_HEALTH = "candor.feedback_store"  # health service name of the store (NOT_SERVING while it fails)


class CandorServer:
    """One running server. ``start()``, then ``wait()`` until ``stop()`` (or a signal)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.events = Events()
        self.metrics = ServerMetrics()
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
        self._server: grpc.aio.Server | None = None
        self._metrics_http = None
        self._published: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_event(self, event: object) -> None:
        if isinstance(event, RepositoryChanged):
            self._publish_health()
        elif isinstance(event, StoreHealthChanged):
            # The store's state as its own health service: predictions go on either way.
            asyncio.get_running_loop().create_task(self.health.set(STORE_HEALTH, SERVING if event.ok else NOT_SERVING))

    def _notify(self, event: object) -> None:
        """Deliver an event from any thread (the prediction log's writer) on the event loop."""
        try:
            self._loop.call_soon_threadsafe(self.events.emit, event)
        except RuntimeError:
            pass  # the loop has closed: the server is gone, nobody listens any more

    def _publish_health(self) -> None:
        """Overall status plus one service name per model (SERVING when a version is ready)."""
        names = {e.name for e in self.repository.entries()}
        loop = asyncio.get_running_loop()
        for name in names | self._published:
            ok = self._ready and not self._stopping and self.repository.model_ready(name)
            loop.create_task(self.health.set(name, SERVING if ok else NOT_SERVING))
        self._published |= names
        overall = SERVING if self._ready and not self._stopping else NOT_SERVING
        loop.create_task(self.health.set("", overall))

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Auth first (an unauthenticated call costs nothing further), then the limits, then request decoding."""
        s = self.settings
        for limit in ("inflight", "deadline"):
            self.metrics.limit_refusals.labels(limit)
        limits = LimitsInterceptor(s.max_inflight_requests, s.default_deadline_s, s.max_deadline_s, self.metrics.limit_refused)
        warn_if_open(s.auth_tokens_file)
        if not s.auth_tokens_file:
            return [limits, RequestDecoding()]
        table = load_tokens(s.auth_tokens_file)
        log.info("authentication on: %d token(s); health %s, reflection %s without a token", len(table.roles),
                 "open" if s.auth_open_health else "closed", "open" if s.auth_open_reflection else "closed")  # fmt: skip
        for reason in ("unauthenticated", "permission_denied"):
            self.metrics.auth_refusals.labels(reason)
        auth = AuthInterceptor(table, s.auth_open_health, s.auth_open_reflection, self.metrics.auth_refused)
        return [auth, limits, RequestDecoding()]

    async def start(self) -> None:
        s = self.settings
        # Bad tokens or certificate files stop the start before anything loads.
        interceptors = self._interceptors()
        credentials = server_credentials(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file) if s.tls_cert_file else None
        self._metrics_http, _ = start_http_server(s.metrics_port, addr=s.metrics_host, registry=self.metrics.registry)
        self.metrics_port = self._metrics_http.server_port
        self._loop = asyncio.get_running_loop()
        try:
            store = await asyncio.to_thread(open_store, s)
        except (OSError, StoreError) as e:
            where = "under data_dir " + repr(s.data_dir) if not s.store else "named by the store setting"
            hint = " (--store-optional starts without it)" if s.store.startswith("postgres") else ""
            raise OSError(f"cannot open the store {where}: {e}{hint}") from e
        await self.repository.refresh()
        feedback = FeedbackService(s, self.repository, store, self.events, self._notify)
        register_core_views(self.metrics.registry, self.repository, feedback, self.thresholds)
        self.plane = DataPlane(s, self.repository, feedback, self.thresholds, self.events)
        options = [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", s.max_concurrent_streams),
        ]
        server = grpc.aio.server(options=options, interceptors=interceptors)
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceService(self.plane, self.metrics), server)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            KServeService(self.plane, self.metrics, lambda: self._ready and not self._stopping), server
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
        if s.tls_cert_file:
            self.grpc_port = server.add_secure_port(address, credentials)
        else:
            self.grpc_port = server.add_insecure_port(address)
        if self.grpc_port == 0:
            raise OSError(f"cannot listen on {s.grpc_host}:{s.grpc_port} (in use or not permitted)")
        await server.start()
        self._server = server
        self._ready = True
        self._publish_health()
        if s.poll_interval_s > 0:
            self._watch = asyncio.create_task(self.repository.watch())
        entries = self.repository.entries()
        ready = sum(e.state == READY for e in entries)
        log.info("candor serving %d model version(s) on %s:%d (gRPC, %s), metrics on %s:%d", ready, s.grpc_host, self.grpc_port,
                 describe(s.tls_client_ca_file, s.tls_cert_file), s.metrics_host, self.metrics_port)  # fmt: skip

    async def stop(self) -> None:
        """Graceful stop: health NOT_SERVING, refuse new calls, let calls in flight finish."""
        if self._stopping or self._server is None:
            return
        self._stopping = True
        log.info("stopping: health NOT_SERVING, %.1f s for calls in flight", self.settings.grace_period_s)
        await self.health.enter_graceful_shutdown()
        if self._watch is not None:
            self._watch.cancel()
        await self._server.stop(self.settings.grace_period_s)
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
