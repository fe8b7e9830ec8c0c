"""The temperature of a Candor ONNX graph: read it, or write a copy with another.

Shared by the trainer (export, ``candor calibrate``) and the server
(``Recalibrate``); needs only the ``onnx`` package, never torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

TEMPERATURE = "temperature"


def temperature_tensor(temperature: float | np.ndarray) -> onnx.TensorProto:
    t = np.asarray(temperature, dtype=np.float32)
    if t.size == 1:
        t = t.reshape(())
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"temperature must be finite and > 0, got {t.tolist()}")
    return numpy_helper.from_array(t, TEMPERATURE)


def read_temperature(path: str | Path) -> np.ndarray:
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        if init.name == TEMPERATURE:
            return numpy_helper.to_array(init).astype(np.float64)
    raise ValueError(f"{path}: no '{TEMPERATURE}' initializer; not a Candor model")


def set_temperature(src: str | Path, dst: str | Path, temperature: float | np.ndarray) -> None:
    """Copy the graph at ``src`` to ``dst`` with a new temperature; weights untouched."""
    proto = onnx.load(str(src))
    inits = proto.graph.initializer
    index = next((i for i, t in enumerate(inits) if t.name == TEMPERATURE), None)
    if index is None:
        raise ValueError(f"{src}: no '{TEMPERATURE}' initializer; not a Candor model")
    inits[index].CopyFrom(temperature_tensor(temperature))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))
