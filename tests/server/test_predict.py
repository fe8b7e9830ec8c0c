"""Predict through the SDK against a real server equals onnxruntime in-process."""

import asyncio

import grpc
import numpy as np
import pytest

from candor.client import AsyncClient, NotFound
from candor.trainer.export import run_onnx
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def test_sdk_round_trip_equals_onnxruntime(server, digits_rows):
    logits, probs = run_onnx(server.repo / "digits/1/model.onnx", digits_rows)
    with server.client() as c:
        r = c.predict(digits_rows, model="digits", top_k=3, return_logits=True)
    assert (r.model, r.version) == ("digits", "1")
    np.testing.assert_allclose(r.probabilities, probs, atol=1e-6)
    np.testing.assert_allclose(r.logits, logits, atol=1e-6)
    np.testing.assert_allclose(r.confidences, probs.max(axis=1), atol=1e-6)
    assert np.array_equal(r.top_k_indices[:, 0], probs.argmax(axis=1))
    assert np.all(np.diff(r.top_k_probabilities, axis=1) <= 0)
    assert r.labels[0][0] == str(r.top_k_indices[0, 0])  # digits' class names are "0".."9"
    assert len(set(r.prediction_ids)) == len(digits_rows)


def test_typed_floats_equal_raw_bytes(server, digits_rows):
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)
        tensor = pb.Tensor(shape=[3, 64], dtype=pb.DATA_TYPE_FLOAT32, float_data=digits_rows[:3].ravel().tolist())
        typed = stub.Predict(pb.PredictRequest(model="digits", inputs=tensor), timeout=10)
    with server.client() as c:
        raw = c.predict(digits_rows[:3], model="digits")
    assert np.frombuffer(typed.probabilities.raw_data, "<f4").reshape(3, 10) == pytest.approx(raw.probabilities)


def test_models_model_health(server):
    with server.client() as c:
        (m,) = c.models()
        assert (m.name, m.version, m.state, m.provider) == ("digits", "1", "READY", "CPUExecutionProvider")
        assert m.num_features == 64 and len(m.class_names) == 10 and m.smoothing == "uniform"
        assert c.model("digits").version == "1"
        assert c.health() == "SERVING" and c.health("digits") == "SERVING"
        with pytest.raises(NotFound) as e:
            c.health("nope")
        assert e.value.code == "NOT_FOUND"


def test_async_client_and_stream(server, digits_rows):
    async def run():
        async with AsyncClient(server.target) as c:
            results = await asyncio.gather(*(c.predict(digits_rows[i], model="digits") for i in range(10)))
            return results, await c.health()

    results, health = asyncio.run(run())
    _, probs = run_onnx(server.repo / "digits/1/model.onnx", digits_rows[:10])
    np.testing.assert_allclose(np.concatenate([r.probabilities for r in results]), probs, atol=1e-6)
    assert health == "SERVING"

    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.InferenceServiceStub(channel)

        def requests():
            yield pb.PredictStreamRequest(correlation_id="a", request=_request(digits_rows[:2]))
            yield pb.PredictStreamRequest(correlation_id="bad", request=_request(digits_rows[:2, :5]))
            yield pb.PredictStreamRequest(correlation_id="c", request=_request(digits_rows[2:3]))

        answers = list(stub.PredictStream(requests(), timeout=10))
    assert [a.correlation_id for a in answers] == ["a", "bad", "c"]
    assert answers[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "64 features" in answers[1].error.message
    assert answers[0].response.probabilities.shape == [2, 10] and answers[2].response.probabilities.shape == [1, 10]


def _request(rows, **kw):
    rows = np.asarray(rows, np.float32)
    return pb.PredictRequest(model="digits", inputs=pb.Tensor(shape=list(rows.shape), raw_data=rows.tobytes()), **kw)


def test_reflection_lists_both_services(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(server.target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"candor.v1.InferenceService", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services


def test_sdk_errors_are_its_own_and_its_results_are_typed(server, digits_rows):
    from candor.client import CandorError, InvalidArgument

    with server.client() as c:
        with pytest.raises(InvalidArgument) as e:
            c.predict(digits_rows[:2, :3], model="digits")
        assert isinstance(e.value, CandorError) and not isinstance(e.value, grpc.RpcError)
        assert e.value.code == "INVALID_ARGUMENT" and "the model takes 64 features per row, got 3" in e.value.message
        result = c.predict(digits_rows[:4], model="digits")
        report = c.calibration("digits")
        temperature = c.model("digits").temperature
    assert isinstance(report.drift.rows, int) and report.drift.rows >= 4
    assert isinstance(report.drift.confidence_psi, float) and report.drift.confidence_state in ("OK", "WARN", "DRIFT")
    assert isinstance(report.reference.confidence_histogram[0], float) and len(report.reference.class_frequencies) == 10
    assert report.temperature == [pytest.approx(t, abs=1e-6) for t in temperature]
    assert len(result.prediction_ids) == 4


def test_async_client_raises_the_same_errors(server, digits_rows):
    from candor.client import NotFound

    async def call():
        async with AsyncClient(server.target) as c:
            with pytest.raises(NotFound, match="model 'nope' not found"):
                await c.predict(digits_rows[:1], model="nope")
            return await c.calibration("digits")

    report = asyncio.run(call())
    assert isinstance(report.reference.accuracy, float)
