"""Requests parsed inside the handler rather than by gRPC, so that bytes that are not the
expected protobuf message get INVALID_ARGUMENT with a message naming the type, instead of
gRPC's UNKNOWN ("Exception deserializing request")."""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError


def _type_name(parse) -> str:
    owner = getattr(parse, "__self__", None)  # generated code passes Message.FromString
    return getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request")


class RequestDecoding(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None or handler.response_streaming != handler.request_streaming:
            return handler  # unary-stream and stream-unary shapes: none of ours; left to gRPC
        parse, expected = handler.request_deserializer, _type_name(handler.request_deserializer)
        rpc = details.method.rsplit("/", 1)[-1]

        if not handler.request_streaming:
            inner = handler.unary_unary

            async def unary(raw: bytes, context: grpc.aio.ServicerContext):
                try:
                    request = parse(raw)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: the request is not a valid {expected} message")
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, response_serializer=handler.response_serializer)

        inner_stream = handler.stream_stream

        async def parsed(raw_iterator, context: grpc.aio.ServicerContext):
            n = 0
            async for raw in raw_iterator:
                n += 1
                try:
                    yield parse(raw)
                except DecodeError:
                    message = f"{rpc}: message {n} of the stream is not a valid {expected}"
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

        async def stream(raw_iterator, context: grpc.aio.ServicerContext):
            async for response in inner_stream(parsed(raw_iterator, context), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream, response_serializer=handler.response_serializer)
