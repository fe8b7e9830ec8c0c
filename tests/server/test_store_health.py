"""The store's health flag: who may end which failure."""

from __future__ import annotations

from candor.server.core.events import StoreHealthChanged
from candor.server.core.store import StoreError, StoreFull
from candor.server.core.store_health import FEEDBACK, LOG, PING, READ, StoreHealth


def flag() -> tuple[StoreHealth, list[bool]]:
    told: list[bool] = []
    return StoreHealth(lambda e: told.append(e.ok) if isinstance(e, StoreHealthChanged) else None), told


def test_a_failure_for_lack_of_room_ends_only_when_the_same_writer_succeeds():
    health, told = flag()
    health.succeeded(PING)
    health.failed(FEEDBACK, StoreFull("database or disk is full"))
    for _ in range(3):  # a prediction-log flush that still fits, a ping: the feedback batch still did not fit
        health.succeeded(LOG)
        health.succeeded(PING)
    assert not health.ok and told == [True, False]
    health.failed(LOG, StoreFull("database or disk is full"))
    health.succeeded(FEEDBACK)
    assert not health.ok  # the log's own full write stands
    health.succeeded(LOG)
    assert health.ok and told == [True, False, True]


def test_a_store_that_did_not_answer_is_back_with_any_success():
    health, told = flag()
    health.failed(FEEDBACK, StoreError("PostgreSQL db:5432/candor cannot be reached"))
    health.failed(READ, StoreError("PostgreSQL db:5432/candor cannot be reached"))
    health.failed(LOG, StoreError("PostgreSQL db:5432/candor cannot be reached"))
    assert told == [False]  # told once, when it changed
    health.succeeded(PING)
    assert health.ok and told == [False, True]
