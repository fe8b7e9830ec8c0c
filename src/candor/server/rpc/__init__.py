"""The gRPC edge: thin servicers for candor.v1 and KServe v2 over the core's data plane,
the converters between protocol messages and core values, one wrapper that counts, logs and
maps errors for unary and streaming calls alike, the interceptors, and TLS."""
