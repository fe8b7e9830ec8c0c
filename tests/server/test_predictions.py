"""Prediction ids, and the in-memory cache of recent requests in front of the prediction log."""

import numpy as np

from candor.server.core.predictions import (
    PredictionCache,
    id_time,
    new_prediction_ids,
    new_request_id,
    prediction_ids,
    split_id,
)
from candor.server.core.store import LoggedRequest


def test_ids_carry_their_second_request_and_row():
    ids = new_prediction_ids(1000, now=1_700_000_000)
    assert len(set(ids)) == 1000 and all(len(i) == 32 for i in ids)
    assert id_time(ids[0]) == 1_700_000_000
    assert split_id(ids[7]) == (ids[0][:24], 7) and {i[:24] for i in ids} == {ids[0][:24]}
    assert len({new_request_id(1) for _ in range(1000)}) == 1000  # 64 random bits per request
    assert id_time("not-an-id") is None and id_time("z" * 32) is None and split_id("a" * 31) is None


def _request(n: int, at: float) -> LoggedRequest:
    probs = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    return LoggedRequest(new_request_id(at), "m", 1, at, probs, probs * 2)


def test_cache_holds_whole_requests_bounded_by_rows_and_age_and_tells_expired_from_unknown():
    cache = PredictionCache(max_rows=4, ttl_s=100)
    first, second = _request(3, 1000), _request(3, 1001)
    cache.add(first)
    cache.add(second)
    assert len(cache) == 3  # the whole first request made room
    ids = prediction_ids(second.request_id, 3)
    assert cache.get(prediction_ids(first.request_id, 1)[0]) is None
    kept = cache.get(ids[2])
    assert kept.version == 1 and kept.probabilities.tolist() == [0, 0, 1] and kept.logits.tolist() == [0, 0, 2]
    assert cache.get(f"{second.request_id}{3:08x}") is None  # past the request's rows
    # EXPIRED means older than the log keeps predictions, never "this replica evicted it".
    assert not cache.expired(prediction_ids(first.request_id, 1)[0], now=1001)
    assert cache.expired(ids[0], now=1102) and not cache.expired("x" * 32, now=1102)
    cache.add(_request(1, 1200))
    assert cache.get(ids[2]) is None and len(cache) == 1  # older than the TTL
