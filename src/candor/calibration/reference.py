"""What healthy predictions look like: the reference the server compares live traffic with.

A version's reference is the statistics of its *served* probabilities on held-out rows.
So that any later calibrator can re-derive it, the raw logits of those rows (and the
validation rows) are stored once, in ``reference.npz`` next to the graph, with their
sha256 in the manifest; a child that only changes the calibrator copies the file and
applies its own calibrator to the same logits. Its reference then describes the same
clean traffic as the parent's did, whatever data the new calibrator was fitted on.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.calibration._inputs import as_multilabel, as_probs_and_labels
from candor.calibration.binning import bin_index
from candor.calibration.calibrators import Calibrator
from candor.calibration.intervals import ece_interval, multilabel_ece_interval
from candor.calibration.manifest import Reference, ReferenceSample

REFERENCE_BINS = 100  # fine enough for PSI and JS distance on live histograms
SAMPLE_FILE = "reference.npz"
# A cap on the rows stored per split: enough for a 100-bin histogram and a class mix
# with K in the hundreds, small enough (float32) to copy with every child version.
SAMPLE_MAX_ROWS = 20_000


def confidence_histogram(confidence: np.ndarray, n_bins: int = REFERENCE_BINS) -> np.ndarray:
    """Shares of ``confidence`` in equal-width ``(lo, hi]`` bins of [0, 1] (0 in the first)."""
    counts = np.bincount(bin_index(np.asarray(confidence, dtype=np.float64), n_bins), minlength=n_bins)
    return counts / max(counts.sum(), 1)


def build_reference(probs: np.ndarray, labels: np.ndarray, split: str, multilabel: bool = False, *,
                    source: str | None = None, sample: ReferenceSample | None = None) -> Reference:  # fmt: skip
    """Reference statistics of calibrated ``probs`` on held-out data.

    Multiclass: top-label confidence histogram, predicted-class mix, mean
    confidence, accuracy and top-label ECE. Multi-label: every entry's
    confidence in its own decision, max(p, 1 - p); the share of rows
    predicting each class present; macro ECE of P(present).
    """
    source = source or f"{split} split ({len(probs)} rows)"
    if multilabel:
        p, y = as_multilabel(probs, labels)
        conf = np.maximum(p, 1 - p).ravel()
        interval = multilabel_ece_interval(p, y)
        return Reference(
            split=split, source=source, sample=sample,
            n_samples=int(p.shape[0]),
            confidence_histogram=confidence_histogram(conf).tolist(),
            class_frequencies=np.mean(p > 0.5, axis=0).tolist(),
            mean_confidence=float(conf.mean()),
            accuracy=float(np.mean((p > 0.5) == (y == 1))),
            ece=interval.value,
            ece_interval=[interval.low, interval.high],
        )  # fmt: skip
    p, y = as_probs_and_labels(probs, labels)
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    interval = ece_interval(p, y)
    return Reference(
        split=split, source=source, sample=sample,
        n_samples=int(p.shape[0]),
        confidence_histogram=confidence_histogram(conf).tolist(),
        class_frequencies=(np.bincount(pred, minlength=p.shape[1]) / len(pred)).tolist(),
        mean_confidence=float(conf.mean()),
        accuracy=float(np.mean(pred == y)),
        ece=interval.value,
        ece_interval=[interval.low, interval.high],
    )  # fmt: skip


@dataclass(frozen=True)
class Sample:
    """Raw logits and labels of the reference rows (``test``) and the validation rows."""

    test_logits: np.ndarray
    test_labels: np.ndarray
    val_logits: np.ndarray
    val_labels: np.ndarray


def _capped(a: np.ndarray) -> np.ndarray:
    return a[:SAMPLE_MAX_ROWS]  # split rows are already in random order


def write_sample(folder: Path, sample: Sample, split: str, stored_with: str) -> ReferenceSample:
    """Write ``reference.npz`` atomically into ``folder`` and describe it for the manifest."""
    buffer = io.BytesIO()
    np.savez(buffer, test_logits=_capped(sample.test_logits).astype(np.float32), test_labels=_capped(sample.test_labels),
             val_logits=_capped(sample.val_logits).astype(np.float32), val_labels=_capped(sample.val_labels))  # fmt: skip
    data = buffer.getvalue()
    fd, tmp = tempfile.mkstemp(prefix=f".{SAMPLE_FILE}.", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, folder / SAMPLE_FILE)
    return ReferenceSample(SAMPLE_FILE, hashlib.sha256(data).hexdigest(), split, min(len(sample.test_logits), SAMPLE_MAX_ROWS),
                           stored_with)  # fmt: skip


def read_sample(folder: Path, spec: ReferenceSample) -> Sample:
    """Read a version's stored sample, refusing a file that is not the one its manifest names."""
    path = folder / spec.file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the reference sample: {e.strerror or e}") from e
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        raise ValueError(f"{path}: sha256 does not match the manifest; the reference sample was changed or corrupted")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return Sample(z["test_logits"].astype(np.float64), z["test_labels"], z["val_logits"].astype(np.float64), z["val_labels"])


def derive_reference(sample: Sample, spec: ReferenceSample, calibrator: Calibrator, multilabel: bool, who: str) -> Reference:
    """The reference of version ``who`` ("name/version"): its calibrator on the stored logits."""
    task = "multilabel" if multilabel else "multiclass"
    probs = calibrator.probabilities(sample.test_logits, task)
    source = (f"{spec.split} split ({spec.rows} rows, logits stored with {spec.stored_with}) "
              f"through {who}'s {calibrator.method} calibrator")  # fmt: skip
    return build_reference(probs, sample.test_labels, spec.split, multilabel, source=source, sample=spec)
