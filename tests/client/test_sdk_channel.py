"""What the SDK puts on the wire: the bearer token and retries of UNAVAILABLE,
checked against a small real gRPC server on 127.0.0.1 that records its calls."""

from concurrent import futures

import grpc
import numpy as np
import pytest

from candor.client import Client, ResourceExhausted, Unavailable
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc


class Recording(pb_grpc.InferenceServiceServicer):
    def __init__(self, failures: int):
        self.failures = failures
        self.calls: list[dict] = []

    def Predict(self, request, context):
        self.calls.append(dict(context.invocation_metadata()))
        if len(self.calls) <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        probs = np.array([[0.25, 0.75]], "<f4")
        tensor = pb.Tensor(shape=[1, 2], raw_data=probs.tobytes())
        return pb.PredictResponse(model=request.model, version="1", probabilities=tensor, confidences=[0.75],
                                  prediction_ids=["x"], top_k=1, top_k_indices=[1], top_k_names=["b"],
                                  top_k_probabilities=[0.75])  # fmt: skip


@pytest.fixture
def recording_server():
    servers = []

    def start(failures: int = 0) -> tuple[str, Recording]:
        servicer = Recording(failures)
        server = grpc.server(futures.ThreadPoolExecutor(2))
        pb_grpc.add_InferenceServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", servicer

    yield start
    for s in servers:
        s.stop(0)


def test_bearer_token_is_sent(recording_server):
    target, servicer = recording_server()
    with Client(target, token="s3cret") as c:
        result = c.predict([[1.0, 2.0]], model="m")
    assert servicer.calls[0]["authorization"] == "Bearer s3cret"
    assert result.labels == [["b"]] and result.probabilities.tolist() == [[0.25, 0.75]]
    with Client(target) as c:
        c.predict([[1.0, 2.0]], model="m")
    assert "authorization" not in servicer.calls[1]


def test_unavailable_is_retried_by_the_channel(recording_server):
    target, servicer = recording_server(failures=2)
    with Client(target, retries=3) as c:
        assert c.predict([[0.0, 0.0]], model="m").version == "1"
    assert len(servicer.calls) == 3

    target, servicer = recording_server(failures=1)
    with Client(target, retries=0) as c:
        with pytest.raises(Unavailable) as e:
            c.predict([[0.0, 0.0]], model="m")
    assert e.value.code == "UNAVAILABLE" and not isinstance(e.value, grpc.RpcError) and len(servicer.calls) == 1


def test_client_options_are_validated():
    with pytest.raises(ValueError, match="host:port"):
        Client("")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        Client("127.0.0.1:1", timeout=0)
    with pytest.raises(ValueError, match="retries must be between 0 and 4"):
        Client("127.0.0.1:1", retries=9)


def test_channel_options_reach_the_channel_and_override_the_clients_own(recording_server):
    target, servicer = recording_server()
    with Client(target, channel_options=[("grpc.primary_user_agent", "candor-test/7"), ("grpc.keepalive_time_ms", 30000)]) as c:
        c.predict([[1.0, 2.0]], model="m")
    assert servicer.calls[0]["user-agent"].startswith("candor-test/7")
    # Last one wins: a caller may lower the client's own 64 MiB receive limit, and the answer no longer fits.
    with Client(target, retries=0, channel_options=[("grpc.max_receive_message_length", 10)]) as c:
        with pytest.raises(ResourceExhausted):
            c.predict([[1.0, 2.0]], model="m")


def test_status_codes_map_to_one_exception_class_each():
    from candor.client import CandorError, Internal, NotFound, PermissionDenied
    from candor.client._errors import from_rpc_error

    class Failed(grpc.RpcError):
        def __init__(self, code):
            self._code = code

        def code(self):
            return self._code

        def details(self):
            return f"{self._code.name} happened"

    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        error = from_rpc_error(Failed(code))
        assert isinstance(error, CandorError) and not isinstance(error, grpc.RpcError)
        assert error.code == code.name and error.message == f"{code.name} happened"
        assert str(error) == f"{code.name}: {code.name} happened"
    assert type(from_rpc_error(Failed(grpc.StatusCode.NOT_FOUND))) is NotFound
    assert type(from_rpc_error(Failed(grpc.StatusCode.PERMISSION_DENIED))) is PermissionDenied
    assert type(from_rpc_error(Failed(grpc.StatusCode.UNKNOWN))) is Internal
