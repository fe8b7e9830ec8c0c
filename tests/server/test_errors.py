"""Every bad input gets the documented status code and a message that says what was expected."""

import grpc
import numpy as np
import pytest

from candor.client import InvalidArgument, NotFound
from candor.v1 import inference_pb2 as pb
from candor.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

ROW = np.zeros((1, 64), np.float32)
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


def tensor(rows=ROW, **kw):
    rows = np.asarray(rows, np.float32)
    base = {"shape": list(rows.shape), "dtype": pb.DATA_TYPE_FLOAT32, "raw_data": rows.tobytes()}
    return pb.Tensor(**{**base, **kw})


CASES = [
    ("unknown model", pb.PredictRequest(model="nope", inputs=tensor()), NOT_FOUND, "model 'nope' not found"),
    ("unknown version", pb.PredictRequest(model="digits", version="9", inputs=tensor()), NOT_FOUND, "no version 9"),
    ("bad version text", pb.PredictRequest(model="digits", version="v1", inputs=tensor()), INVALID,
     "positive whole number"),
    ("empty model name", pb.PredictRequest(inputs=tensor()), INVALID, "model name is empty"),
    ("wrong feature count", pb.PredictRequest(model="digits", inputs=tensor(np.zeros((2, 63)))), INVALID,
     "takes 64 features per row, got 63"),
    ("not 2-D", pb.PredictRequest(model="digits", inputs=tensor(shape=[64])), INVALID, "(2-D)"),
    ("byte length", pb.PredictRequest(model="digits", inputs=tensor(shape=[2, 64])), INVALID,
     "holds 256 bytes; shape [2, 64] of float32 needs 512"),
    ("typed count", pb.PredictRequest(model="digits", inputs=pb.Tensor(shape=[1, 64], float_data=[0.0] * 10)),
     INVALID, "holds 10 values"),
    ("raw and typed", pb.PredictRequest(model="digits", inputs=tensor(float_data=[0.0] * 64)), INVALID,
     "not both"),
    ("NaN", pb.PredictRequest(model="digits", inputs=tensor(np.full((3, 64), np.nan))), INVALID,
     "NaN or infinite"),
    ("infinite", pb.PredictRequest(model="digits", inputs=tensor(np.vstack([ROW, np.full((1, 64), np.inf)]))),
     INVALID, "first in row 1"),
    ("empty batch", pb.PredictRequest(model="digits", inputs=tensor(np.zeros((0, 64)))), INVALID,
     "the batch is empty"),
    ("too many rows", pb.PredictRequest(model="digits", inputs=tensor(np.zeros((4097, 64)))), INVALID,
     "too many rows: 4097, at most 4096"),
    ("top_k > K", pb.PredictRequest(model="digits", inputs=tensor(), top_k=11), INVALID,
     "top_k must be between 1 and the number of classes (10), got 11"),
    ("dtype", pb.PredictRequest(model="digits", inputs=tensor(dtype=7)), INVALID, "dtype must be float32"),
]  # fmt: skip


@pytest.mark.parametrize("name, request_, code, message", CASES, ids=[c[0] for c in CASES])
def test_bad_predict(server, name, request_, code, message):
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            pb_grpc.InferenceServiceStub(channel).Predict(request_, timeout=10)
    assert e.value.code() == code, e.value.details()
    assert message in e.value.details()


def test_errors_are_counted_by_code_and_the_server_stays_healthy(server):
    before = server.metric("candor_requests_total", rpc="Predict", code="INVALID_ARGUMENT")
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError):
            pb_grpc.InferenceServiceStub(channel).Predict(CASES[4][1], timeout=10)
    assert server.metric("candor_requests_total", rpc="Predict", code="INVALID_ARGUMENT") == before + 1
    with server.client() as c:
        assert c.health() == "SERVING"
        assert c.predict(ROW, model="digits").probabilities.shape == (1, 10)


def test_get_model_errors(server):
    with server.client() as c:
        with pytest.raises(InvalidArgument, match="name is empty"):
            c.model("")
        with pytest.raises(NotFound, match="has no version 5"):
            c.model("digits", 5)


def test_sdk_refuses_bad_arguments_before_sending(server):
    with server.client() as c:
        with pytest.raises(ValueError, match="model is required"):
            c.predict(ROW, model="")
        with pytest.raises(ValueError, match="top_k must be >= 1"):
            c.predict(ROW, model="digits", top_k=0)
        with pytest.raises(ValueError, match="2-D"):
            c.predict(np.zeros((1, 2, 3)), model="digits")


BOTH_FORMS = pb.FeedbackItem(label=1, probabilities=[0.1] * 10, logits=[0.0] * 10)


@pytest.mark.parametrize(
    "method, request_, code, message",
    [
        ("GetCalibration", pb.GetCalibrationRequest(), INVALID, "model is empty"),
        ("GetCalibration", pb.GetCalibrationRequest(model="nope"), NOT_FOUND, "model 'nope' not found"),
        ("Recalibrate", pb.RecalibrateRequest(), INVALID, "model is empty"),
        ("Recalibrate", pb.RecalibrateRequest(model="digits", holdout_share=1.5), INVALID, "holdout_share must lie in (0, 1)"),
        ("Recalibrate", pb.RecalibrateRequest(model="digits", min_rows=10**6), grpc.StatusCode.FAILED_PRECONDITION,
         "recalibration needs at least 1000000"),
        ("Feedback", pb.FeedbackRequest(items=[pb.FeedbackItem(prediction_id="x")]), INVALID, "model is empty"),
        ("Feedback", pb.FeedbackRequest(model="digits", items=[BOTH_FORMS]), INVALID, "not both"),
        ("Feedback", pb.FeedbackRequest(model="digits", items=[pb.FeedbackItem(prediction_id="x")] * 4097), INVALID,
         "too many feedback items: 4097"),
    ],
    ids=["calibration-no-model", "calibration-unknown", "recalibrate-no-model", "recalibrate-share", "recalibrate-rows",
         "feedback-no-model", "feedback-both-forms", "feedback-too-many"],
)  # fmt: skip
def test_bad_monitoring_calls(server, method, request_, code, message):
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            getattr(pb_grpc.InferenceServiceStub(channel), method)(request_, timeout=10)
    assert e.value.code() == code, e.value.details()
    assert message in e.value.details()
