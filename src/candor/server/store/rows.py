"""How both backends lay rows out: float32 little-endian blobs, one column order, one busy message."""

from __future__ import annotations

import numpy as np

from candor.server.core.store import FeedbackRow, LoggedRequest, StoreBusy

# Column order of SELECTs on the two tables (the backends' DDL matches it).
FEEDBACK_COLUMNS = "prediction_id, model, version, label, probabilities, logits, predicted_at, received_at, client_recorded"
LOG_COLUMNS = "request_id, model, version, predicted_at, num_rows, num_classes, probabilities, logits"

# The newest logged requests of one version that together hold at most a number of rows (the request that
# crosses it is kept), oldest first; {mark} is the backend's placeholder.
RECENT_LOG = (f"SELECT {LOG_COLUMNS} FROM (SELECT {LOG_COLUMNS}, SUM(num_rows) OVER (ORDER BY predicted_at DESC, "
              "request_id DESC) AS upto FROM prediction_log WHERE model = {mark} AND version = {mark} AND predicted_at >= "
              "{mark}) AS newest WHERE upto - num_rows < {mark} ORDER BY predicted_at, request_id")  # fmt: skip
NO_ROW_LIMIT = 2**62
# Unix seconds of a version's newest logged request from any replica; NULL when it has none.
LAST_PREDICTION = "SELECT MAX(predicted_at) FROM prediction_log WHERE model = {mark} AND version = {mark}"


# Rows stored before schema 3 knew no such column: a client-recorded row then had no served prediction
# behind it, and was stored with predicted_at equal to received_at, which a joined row never has.
BACKFILL_CLIENT_RECORDED = "UPDATE feedback SET client_recorded = TRUE WHERE predicted_at = received_at"


def blob(values: np.ndarray | None) -> bytes | None:
    return None if values is None else np.ascontiguousarray(values, dtype="<f4").tobytes()


def feedback_params(r: FeedbackRow) -> tuple:
    # Plain Python numbers: a column of PostgreSQL's unnest arrays must hold one type.
    return (r.prediction_id, r.model, int(r.version), int(r.label), blob(r.probabilities), blob(r.logits),
            float(r.predicted_at), None if r.received_at is None else float(r.received_at),
            bool(r.client_recorded))  # fmt: skip


def feedback_row(r) -> FeedbackRow:
    logits = None if r[5] is None else np.frombuffer(r[5], "<f4")
    return FeedbackRow(r[0], r[1], int(r[2]), int(r[3]), np.frombuffer(r[4], "<f4"), logits, float(r[6]), float(r[7]),
                       bool(r[8]))  # fmt: skip


def log_params(q: LoggedRequest) -> tuple:
    # Logits only (schema 4): the probabilities served are the version's calibrator applied to them, re-derived
    # when a label arrives (FeedbackService), so storing them too doubled the bytes every request writes.
    n, k = q.logits.shape
    return (q.request_id, q.model, int(q.version), float(q.at), n, k, b"", blob(q.logits))


def logged_request(r) -> LoggedRequest:
    """A log entry; ``probabilities`` None when only the logits were kept (schema 4 and later)."""
    shape = (int(r[4]), int(r[5]))
    probs = np.frombuffer(r[6], "<f4").reshape(shape) if len(r[6]) else None
    return LoggedRequest(r[0], r[1], int(r[2]), float(r[3]), probs, np.frombuffer(r[7], "<f4").reshape(shape))


def busy(model: str, holder: str) -> StoreBusy:
    return StoreBusy(f"a recalibration of model {model!r} is already running ({holder or 'holder unknown'}); "
                     "wait for it to finish, then check the versions it published")  # fmt: skip
