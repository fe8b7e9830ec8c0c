"""Loaded into a benchmark's server process (PYTHONPATH=benchmarks/sets_step_timer; Python imports any
``sitecustomize`` on its path at start): times, by the calling thread's CPU clock, what a Predict spends ranking its
rows, ``PredictionSets.serve`` for a request with sets and ``top_classes`` for one without, and writes the totals
as JSON to $CANDOR_STEP_TIMES when the server exits. Used by benchmarks/prediction_sets.py; never by the server."""

import atexit
import json
import os
import time

from candor.server.core import plane
from candor.server.core.sets import PredictionSets

totals: dict[str, list[int]] = {}  # step -> [calls, nanoseconds]; the event loop's thread is the only caller


def timed(step: str, function):
    def wrapper(*args, **kwargs):
        started = time.thread_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            spent = totals.setdefault(step, [0, 0])
            spent[0] += 1
            spent[1] += time.thread_time_ns() - started

    return wrapper


PredictionSets.serve = staticmethod(timed("sets", PredictionSets.serve))
plane.top_classes = timed("top-k", plane.top_classes)


@atexit.register
def write() -> None:
    with open(os.environ["CANDOR_STEP_TIMES"], "w") as f:
        json.dump({step: {"calls": calls, "us_per_call": ns / calls / 1000} for step, (calls, ns) in totals.items()}, f)
