"""Transport-neutral prediction: resolve the model, batch, run, count."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from candor.server.errors import InvalidArgument, ResourceExhausted
from candor.server.metrics import ServerMetrics
from candor.server.model import LoadedModel
from candor.server.predictions import new_prediction_ids
from candor.server.repository import ModelRepository


@dataclass
class Answer:
    model: LoadedModel
    logits: np.ndarray  # [N, K] raw
    probabilities: np.ndarray  # [N, K] calibrated

    def top_k(self, k: int) -> np.ndarray:
        """Indices [N, k] of the k most probable classes, most probable first (ties: lower index)."""
        return np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]

    def prediction_ids(self) -> list[str]:
        """One id per row: the second it was made and 96 random bits (see candor.server.predictions)."""
        return new_prediction_ids(len(self.probabilities))


class Engine:
    def __init__(self, repository: ModelRepository, metrics: ServerMetrics):
        self.repository = repository
        self.metrics = metrics

    def model(self, name: str, version: str) -> LoadedModel:
        if not name:
            raise InvalidArgument("model name is empty; name the model to use (ListModels shows them)")
        return self.repository.resolve(name, version)

    async def predict(self, model: LoadedModel, rows: np.ndarray, time_remaining: float | None) -> Answer:
        """Run validated rows [N, F] through ``model``'s batcher."""
        deadline = None if time_remaining is None else time.monotonic() + time_remaining
        try:
            logits, probs = await model.batcher.submit(rows, deadline)
        except ResourceExhausted:
            self.metrics.rejected.labels(model.name, model.version).inc()
            raise
        return Answer(model, logits, probs)


def check_top_k(top_k: int, num_classes: int) -> int:
    """0 means 1; more than K is an error."""
    k = top_k or 1
    if k > num_classes:
        raise InvalidArgument(f"top_k must be between 1 and the number of classes ({num_classes}), got {top_k}")
    return k
