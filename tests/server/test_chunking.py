"""The SDK splits calls larger than the server's max_rows_per_request, pipelines the pieces and
joins the answers in order; the CLI does the same through it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sklearn.datasets import load_digits

from candor.client import AsyncClient, Client
from candor.client._client import CHUNK_CHECK_ROWS, spans, with_default_port
from tests.conftest import run_candor
from tests.server.conftest import start_server, wait_for

pytestmark = pytest.mark.slow  # a real server in a child process

LIMIT = 100


@pytest.fixture(scope="module")
def small_server(digits_repo, tmp_path_factory):
    """A server that takes at most 100 rows per request."""
    import shutil

    repo = tmp_path_factory.mktemp("chunks") / "models"
    shutil.copytree(digits_repo, repo)
    server = start_server(repo, "--poll-interval-seconds", "0", "--max-rows-per-request", str(LIMIT), "--max-queue-rows", "1000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    X = load_digits().data.astype(np.float32)
    return np.concatenate([X, X])[:450]  # 4.5 times the limit, duplicates included


def test_the_limit_is_published_in_get_model(small_server):
    with small_server.client() as client:
        assert client.model("digits").max_rows_per_request == LIMIT


def test_a_large_predict_is_split_and_joined_in_order(small_server, rows):
    with small_server.client() as client:
        whole = client.predict(rows, model="digits", top_k=2, return_logits=True)
        pieces = [client.predict(rows[s], model="digits", top_k=2, return_logits=True) for s in spans(len(rows), LIMIT)]
    assert whole.probabilities.shape == (450, 10) and whole.logits.shape == (450, 10)
    np.testing.assert_array_equal(whole.probabilities, np.concatenate([p.probabilities for p in pieces]))
    np.testing.assert_array_equal(whole.top_k_indices, np.concatenate([p.top_k_indices for p in pieces]))
    assert whole.labels == [label for p in pieces for label in p.labels]
    assert len(set(whole.prediction_ids)) == 450  # one id per row, from five requests
    # One GetModel learned the limit (and the names): not one per call.
    wait_for(lambda: small_server.metric("candor_requests_total", rpc="Predict", code="OK") >= 10)
    assert small_server.metric("candor_requests_total", rpc="GetModel") == 2  # this test's and the one above
    assert small_server.metric("candor_requests_total", code="INVALID_ARGUMENT") == 0


def test_feedback_for_a_split_predict_is_split_too_and_every_item_joins(small_server, rows):
    with small_server.client() as client:
        result = client.predict(rows, model="digits")
        labels = load_digits().target.tolist() * 2
        answer = client.feedback(result.prediction_ids, labels[:450], model="digits")
        again = client.feedback(result.prediction_ids, labels[:450], model="digits")
    assert answer.accepted == 450 and answer.outcomes == ["ACCEPTED"] * 450
    assert again.duplicate == 450 and again.accepted == 0


def test_the_async_client_splits_the_same_way(small_server, rows):
    async def run():
        async with AsyncClient(small_server.target) as client:
            result = await client.predict(rows, model="digits")
            answer = await client.feedback(result.prediction_ids, [0] * len(rows), model="digits")
            return result, answer

    result, answer = asyncio.run(run())
    with small_server.client() as client:
        expected = client.predict(rows[:LIMIT], model="digits")
    np.testing.assert_array_equal(result.probabilities[:LIMIT], expected.probabilities)
    assert len(result.probabilities) == 450 and answer.accepted == 450


def test_small_calls_never_ask_for_the_limit(small_server):
    before = small_server.metric("candor_requests_total", rpc="GetModel")
    with Client(small_server.target) as client:
        client._class_names[("digits", "1")] = client._known_names(("digits", "1"), [str(i) for i in range(10)])
        client.predict(load_digits().data[:CHUNK_CHECK_ROWS // 4], model="digits")
    assert small_server.metric("candor_requests_total", rpc="GetModel") == before


def test_the_cli_predicts_and_sends_feedback_beyond_the_limit(small_server, rows, tmp_path):
    np.save(tmp_path / "rows.npy", rows)
    out = run_candor("predict", "--target", small_server.target, "--model", "digits", "--input", str(tmp_path / "rows.npy"),
                     "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    import json

    predictions = json.loads(out.stdout)["predictions"]
    assert len(predictions) == 450
    csv = "prediction_id,label\n" + "".join(f"{p['prediction_id']},{p['labels'][0]}\n" for p in predictions)
    (tmp_path / "labels.csv").write_text(csv)
    sent = run_candor("feedback", "--target", small_server.target, "--model", "digits", "--input", str(tmp_path / "labels.csv"))
    assert sent.returncode == 0, sent.stderr
    assert "accepted 450" in sent.stdout


@pytest.mark.parametrize(("given", "expected"), [("localhost", "localhost:8001"), ("10.0.0.2", "10.0.0.2:8001"),
                                                  ("host:9001", "host:9001"), ("::1", "[::1]:8001"), ("[::1]", "[::1]:8001"),
                                                  ("[::1]:9", "[::1]:9"), ("dns:///svc:8001", "dns:///svc:8001"),
                                                  ("unix:/tmp/s", "unix:/tmp/s")])  # fmt: skip
def test_a_target_without_a_port_means_8001(given, expected):
    assert with_default_port(given) == expected
    with Client(given) as client:
        assert client.target == expected
