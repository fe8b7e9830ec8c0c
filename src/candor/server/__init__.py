"""The Candor server: grpc.aio and onnxruntime, never torch.

* :mod:`candor.server.core`: the transport-neutral data plane (models, batching, predict,
  feedback, drift, recalibration) and the store interface;
* :mod:`candor.server.store`: feedback store backends;
* :mod:`candor.server.rpc`: the gRPC edge (candor.v1, KServe v2, interceptors, TLS);
* :mod:`candor.server.observability`: Prometheus, fed by core events and snapshots;
* :mod:`candor.server.app`: all of it assembled; :mod:`candor.server.cli`: ``candor serve``.
"""
