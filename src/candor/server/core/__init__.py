"""The transport-neutral server core: the data plane and everything it stands on.

No grpc, no prometheus_client, no generated protocol code and no torch here (import-linter
checks it in ``make test``): the gRPC edge (:mod:`candor.server.rpc`) converts to and from
this, and observability (:mod:`candor.server.observability`) subscribes to its events and
reads its snapshots.
"""
