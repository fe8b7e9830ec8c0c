"""A teacher's probabilities as the smoothing distribution (distillation).

q = (1 - alpha) onehot(y) + alpha * softmax(teacher_logits / T_teacher): the
student is trained at temperature 1 against this mix, so alpha (the
smoothing epsilon) is the mixing weight and T_teacher softens the teacher.
The teacher is any ONNX model with input ``input`` [N, F] and output
``logits`` [N, K]; a Candor model.onnx qualifies (its preprocessing is inside).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from candor.calibration import softmax


def teacher_probabilities(model_path: str | Path, X: np.ndarray, temperature: float, n_classes: int) -> np.ndarray:
    import onnxruntime as ort

    if not temperature > 0:
        raise ValueError(f"--teacher-temperature must be > 0, got {temperature}")
    path = Path(model_path)
    if not path.is_file():
        raise ValueError(f"{path}: teacher model not found")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        logits = session.run(["logits"], {"input": np.asarray(X, dtype=np.float32)})[0]
    except Exception as e:  # onnxruntime raises its own types for bad graphs and feeds
        raise ValueError(
            f"{path}: cannot run the teacher (needs input 'input' [N, {X.shape[1]}] and output 'logits'): {e}"
        ) from e
    if logits.shape != (X.shape[0], n_classes):
        raise ValueError(f"{path}: teacher logits have shape {logits.shape}, expected {(X.shape[0], n_classes)}")
    return softmax(logits, temperature)
