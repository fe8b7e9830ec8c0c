"""The in-memory store of recent predictions that feedback joins against."""

import numpy as np

from candor.server.core.predictions import PredictionStore, id_time, new_prediction_ids


def test_ids_carry_their_second_and_are_unique():
    ids = new_prediction_ids(1000, now=1_700_000_000)
    assert len(set(ids)) == 1000 and all(len(i) == 32 for i in ids)
    assert id_time(ids[0]) == 1_700_000_000
    assert id_time("not-an-id") is None and id_time("z" * 32) is None


def test_store_bounds_and_tells_expired_from_unknown():
    store = PredictionStore(max_rows=4, ttl_s=100)
    probs = np.eye(3)[[0, 1, 2]].astype(np.float32)
    first = new_prediction_ids(3, now=1000)
    store.add("m", 1, first, probs * 2, probs, now=1000)
    second = new_prediction_ids(3, now=1001)
    store.add("m", 1, second, probs * 2, probs, now=1001)
    assert len(store) == 4  # two of the first request made room
    assert store.get(first[0]) is None and store.expired(first[0], now=1001)
    kept = store.get(second[2])
    assert kept.version == 1 and kept.probabilities.tolist() == [0, 0, 1] and kept.logits.tolist() == [0, 0, 2]
    assert not store.expired(new_prediction_ids(1, now=1001)[0], now=1001)  # recent but never seen: unknown
    store.add("m", 1, new_prediction_ids(1, now=1200), probs[:1], probs[:1], now=1200)
    assert store.get(second[2]) is None and len(store) == 1  # older than the TTL
    store.remove([second[2], "absent"])
