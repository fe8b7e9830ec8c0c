"""KServe's own Python SDK (kserve 0.21's InferenceGRPCClient) against a real server.

The SDK adds ``binary_data_size`` to every raw input; the server accepts and ignores the binary tensor
data extension's parameters, as Triton's gRPC endpoint does (README, "KServe v2"). The SDK runs in its own
virtual environment (tests/oracle_venv.py): its dependency tree would move the project's grpcio and protobuf.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.oracle_venv import oracle_python

pytestmark = pytest.mark.slow

# The SDK release the interop claim is made for; its own pins (grpcio, protobuf, pandas) come with it.
KSERVE = "kserve==0.21.0"
PROBE = Path(__file__).with_name("kserve_sdk_probe.py")


@pytest.fixture(scope="module")
def seen(server, digits_rows, tmp_path_factory) -> dict:
    python = oracle_python("kserve", KSERVE)
    rows = tmp_path_factory.mktemp("kserve-sdk") / "rows.npy"
    np.save(rows, digits_rows[:16])
    result = subprocess.run([str(python), str(PROBE), server.target, str(rows)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_health_and_metadata(seen):
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert seen["metadata"]["platform"] == "onnx_onnxv1"
    assert seen["metadata"]["inputs"] == [["input", "FP32", [-1, 64]]]
    assert seen["metadata"]["outputs"] == ["probabilities", "logits", "prediction_set"]


def test_raw_contents_with_the_sdks_binary_data_size_are_served(server, digits_rows, seen):
    assert seen["raw_request_parameters"] == ["binary_data_size"]  # what made the server refuse it before
    with server.client() as c:
        expected = c.predict(digits_rows[:16], model="digits", coverage=0.9)
    assert seen["raw"]["model"] == "digits" and seen["raw"]["version"] == "1"
    np.testing.assert_array_equal(np.array(seen["raw"]["probabilities"], np.float32), expected.probabilities)
    served_sets = [np.flatnonzero(row).tolist() for row in seen["raw"]["prediction_set"]]
    assert served_sets == [sorted(s) for s in expected.sets]


def test_typed_contents_give_the_same_answer(seen):
    assert seen["typed"] == seen["raw"]


def test_an_unknown_model_is_not_found_by_name(seen):
    code, details = seen["unknown"]
    assert code == "NOT_FOUND" and "model 'nope' not found" in details
    assert seen["unknown_ready"] is False
