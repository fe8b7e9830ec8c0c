"""ONNX export with the calibrator folded in as rewritable initializers.

Graph: ``input`` [N, F] float32 -> (standardise, network) -> ``logits`` [N, K]
-> the calibrated head of :mod:`candor.graph` (any registered method, temperature to
Dirichlet) -> ``probabilities`` [N, K]. ``logits`` stay raw (before calibration)
so that a server can refit on stored logits; :func:`candor.graph.set_calibrator`
rewrites the head without re-exporting.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from candor.calibration.calibrators import Calibrator
from candor.graph import append_head
from candor.trainer.conventions import DEFAULT_OPSET

PARITY_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    """The exported graph is invalid or disagrees with torch."""


def to_onnx(
    model: nn.Module, n_features: int, calibrator: Calibrator, multilabel: bool, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """Trace ``model`` (the torch exporter) and append the calibrated head."""
    if opset < 17:
        raise ValueError(f"--opset must be 17 or newer, got {opset}")
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo,
        # which needs onnxscript; this one is exact for these small graphs.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(2, n_features),), buffer, dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    proto = onnx.load_from_string(buffer.getvalue())
    append_head(proto, calibrator, multilabel)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported graph failed onnx.checker: {e}") from e
    return proto


def run_onnx(model_bytes: bytes | str | Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) from onnxruntime on the CPU."""
    import onnxruntime as ort

    src = str(model_bytes) if isinstance(model_bytes, str | Path) else model_bytes
    session = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probabilities"], {"input": np.asarray(X, dtype=np.float32)})
    return logits, probs


def parity_gap(model: nn.Module, proto: onnx.ModelProto, X: np.ndarray, calibrator: Calibrator, multilabel: bool) -> float:
    """Max |p_onnx - p_torch| over ``X``, the calibrator applied in float64 numpy to torch's logits."""
    with torch.no_grad():
        torch_logits = model(torch.as_tensor(X, dtype=torch.float32)).numpy()
    expected = calibrator.probabilities(torch_logits, "multilabel" if multilabel else "multiclass")
    _, got = run_onnx(proto.SerializeToString(), X)
    return float(np.max(np.abs(got - expected)))


def export_model(
    model: nn.Module,
    path: Path,
    X_check: np.ndarray,
    calibrator: Calibrator,
    multilabel: bool,
    opset: int = DEFAULT_OPSET,
) -> float:
    """Export, check, verify parity on ``X_check`` and write ``path``; return the parity gap.

    Nothing is written when the graph is invalid or the gap exceeds 1e-5.
    """
    proto = to_onnx(model, X_check.shape[1], calibrator, multilabel, opset)
    gap = parity_gap(model, proto, X_check, calibrator, multilabel)
    if not gap <= PARITY_TOLERANCE:
        raise ExportError(f"ONNX and torch disagree: max |probability difference| {gap:.3g} > {PARITY_TOLERANCE}")
    onnx.save(proto, str(path))
    return gap
