"""The gRPC server (grpc.aio + onnxruntime): built in the serving issue.

Imports ``candor.calibration`` and the generated protos, never torch.
"""
