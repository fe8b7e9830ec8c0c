"""KServe v2 / Open Inference Protocol, driven by Triton's own client and stubs.

tritonclient registers the `inference.*` messages in protobuf's default pool,
as does candor.kserve.v2; one process cannot hold both, so this test talks
to the server (its own process) only through tritonclient's modules.
"""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as kpb
from tritonclient.grpc import service_pb2_grpc as kpb_grpc
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow


def test_tritonclient_round_trip_equals_predict(server, digits_rows):
    client = triton.InferenceServerClient(server.target)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert client.get_server_metadata().name == "candor"
    meta = client.get_model_metadata("digits")
    assert meta.platform == "onnx_onnxv1" and list(meta.inputs[0].shape) == [-1, 64]
    assert [o.name for o in meta.outputs] == ["probabilities", "logits", "prediction_set"]
    inp = triton.InferInput("input", list(digits_rows.shape), "FP32")
    inp.set_data_from_numpy(digits_rows)
    result = client.infer("digits", [inp], outputs=[triton.InferRequestedOutput("probabilities")], request_id="r1")
    with server.client() as c:
        expected = c.predict(digits_rows, model="digits").probabilities
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected)
    assert result.get_response().id == "r1"
    client.close()


def test_typed_contents_and_both_outputs(server, digits_rows):
    request = kpb.ModelInferRequest(model_name="digits", model_version="1")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[2, 64])
    tensor.contents.fp32_contents.extend(digits_rows[:2].ravel().tolist())
    with grpc.insecure_channel(server.target) as channel:
        response = kpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert [o.name for o in response.outputs] == ["probabilities", "logits", "prediction_set"]  # every output, unasked
    assert [o.datatype for o in response.outputs] == ["FP32", "FP32", "BOOL"]
    assert all(list(o.shape) == [2, 10] for o in response.outputs)
    probs = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(2, 10)
    assert probs.sum(axis=1) == pytest.approx([1, 1], abs=1e-5)


@pytest.mark.parametrize(
    "datatype, shape, model, message, code",
    [
        ("INT64", [1, 64], "digits", "dtype must be float32 (FP32), got INT64", grpc.StatusCode.INVALID_ARGUMENT),
        ("FP32", [1, 10], "digits", "takes 64 features per row, got 10", grpc.StatusCode.INVALID_ARGUMENT),
        ("FP32", [1, 64], "nope", "model 'nope' not found", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_bad_infer(server, datatype, shape, model, message, code):
    client = triton.InferenceServerClient(server.target)
    inp = triton.InferInput("input", shape, datatype)
    inp.set_data_from_numpy(np.zeros(shape, np.int64 if datatype == "INT64" else np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer(model, [inp])
    assert message in e.value.message()
    assert e.value.status() == f"StatusCode.{code.name}"
    client.close()


def _infer_request(**kw) -> kpb.ModelInferRequest:
    request = kpb.ModelInferRequest(model_name="digits", **kw)
    request.raw_input_contents.append(np.zeros((1, 64), "<f4").tobytes())
    return request


def test_unknown_output_and_model_ready_for_unknown(server):
    wanted = kpb.ModelInferRequest.InferRequestedOutputTensor(name="embedding")
    request = _infer_request(outputs=[wanted])
    request.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    with grpc.insecure_channel(server.target) as channel:
        stub = kpb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(request, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown output 'embedding'" in e.value.details()
    # As Triton answers: OK with ready=false, so tritonclient's is_model_ready() returns False instead of raising.
    client = triton.InferenceServerClient(server.target)
    assert client.is_model_ready("nope") is False
    assert client.is_model_ready("digits", "7") is False
    assert client.is_model_ready("digits", "1") is True
    client.close()


def _refused(server, request: kpb.ModelInferRequest) -> str:
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as e:
        kpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    return e.value.details()


@pytest.mark.parametrize("name", ["INPUT__0", ""])
def test_input_name_is_checked(server, name):
    request = _infer_request()
    request.inputs.add(name=name, datatype="FP32", shape=[1, 64])
    assert f"unexpected input {name!r} for model 'digits'; its input is 'input'" in _refused(server, request)


def test_output_asked_twice_and_unsupported_parameters_are_refused(server):
    out = kpb.ModelInferRequest.InferRequestedOutputTensor
    twice = _infer_request(outputs=[out(name="probabilities"), out(name="probabilities")])
    twice.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    assert "output 'probabilities' is requested more than once" in _refused(server, twice)

    classification = out(name="probabilities")
    classification.parameters["classification"].int64_param = 3
    request = _infer_request(outputs=[classification])
    request.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    assert "output 'probabilities' parameter 'classification' is not supported: for the top classes" in _refused(server,
                                                                                                                 request)

    shared = _infer_request()
    tensor = shared.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    tensor.parameters["shared_memory_region"].string_param = "region0"
    assert "input parameter 'shared_memory_region' is not supported: shared memory is not supported" in _refused(server,
                                                                                                                shared)
    unknown = _infer_request()
    unknown.parameters["priority"].int64_param = 1
    unknown.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    assert ("request parameter 'priority' is not supported; request parameters accepted (and ignored): "
            "binary_data_output, content_type") in _refused(server, unknown)  # fmt: skip
    typed = _infer_request()
    tensor = typed.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    tensor.parameters["content_type"].string_param = "str"
    assert "input parameter content_type must name what was sent ('fp32' or 'np'), got 'str'" in _refused(server, typed)


def test_parameters_other_clients_add_are_accepted_and_change_nothing(server, digits_rows):
    """KServe's SDK sends binary_data_size with raw inputs; HTTP-minded clients binary_data(_output);
    MLServer content_type: the answer is the one without them."""
    out = kpb.ModelInferRequest.InferRequestedOutputTensor

    def infer(with_parameters: bool) -> bytes:
        probs = out(name="probabilities")
        request = kpb.ModelInferRequest(model_name="digits", outputs=[probs])
        tensor = request.inputs.add(name="input", datatype="FP32", shape=list(digits_rows.shape))
        request.raw_input_contents.append(digits_rows.astype("<f4").tobytes())
        if with_parameters:
            tensor.parameters["binary_data_size"].int64_param = digits_rows.nbytes
            tensor.parameters["content_type"].string_param = "np"
            probs.parameters["binary_data"].bool_param = True
            probs.parameters["content_type"].string_param = "FP32"
            request.parameters["binary_data_output"].bool_param = True
            request.parameters["content_type"].string_param = "np"
        with grpc.insecure_channel(server.target) as channel:
            return kpb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10).raw_output_contents[0]

    assert infer(True) == infer(False)


def test_tritonclient_aio_health_metadata_infer_and_an_unknown_model(server, digits_rows):
    import asyncio

    import tritonclient.grpc.aio as triton_aio

    async def run():
        client = triton_aio.InferenceServerClient(server.target)
        try:
            assert await client.is_server_live() and await client.is_model_ready("digits")
            assert (await client.get_model_metadata("digits")).inputs[0].name == "input"
            inp = triton.InferInput("input", list(digits_rows.shape), "FP32")
            inp.set_data_from_numpy(digits_rows)
            result = await client.infer("digits", [inp], outputs=[triton.InferRequestedOutput("probabilities")])
            with pytest.raises(InferenceServerException, match="model 'nope' not found"):
                await client.infer("nope", [inp])
            assert not await client.is_model_ready("nope")
            return result.as_numpy("probabilities")
        finally:
            await client.close()

    with server.client() as c:
        np.testing.assert_array_equal(asyncio.run(run()), c.predict(digits_rows, model="digits").probabilities)
