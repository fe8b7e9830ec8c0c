"""The calibrated head of a Candor ONNX graph: build it, read it, or write a copy with another.

Every Candor graph ends in the same head after the network's raw ``logits``::

    logits -> Div(temperature) -> [calibrator] -> Softmax (multiclass) | Sigmoid (multi-label) -> probabilities

where ``[calibrator]`` is the method's :attr:`~candor.calibration.calibrators.Calibrator.head`
rendered as ONNX nodes: nothing for temperature scaling, ``* calibration_scale +
calibration_bias`` for vector scaling, ``@ calibration_weight^T + calibration_bias`` for
matrix scaling, and LogSoftmax followed by the same affine map for Dirichlet calibration.
Its parameters are initializers, so a refit rewrites the head and keeps the network's
weights byte for byte. Shared by the trainer (export, ``candor calibrate``) and the server
(``Recalibrate``); needs only the ``onnx`` package, never torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from candor.calibration.calibrators import Calibrator, CalibratorError, HeadStep, TemperatureScaling, with_head

TEMPERATURE = "temperature"
# Each parameter's initializer. The weight is stored transposed, so its step is one MatMul.
INITIALIZERS = {"scale": "calibration_scale", "weight": "calibration_weight_t", "bias": "calibration_bias"}
SCALE, WEIGHT, BIAS = INITIALIZERS["scale"], INITIALIZERS["weight"], INITIALIZERS["bias"]
HEAD_INITIALIZERS = (TEMPERATURE, *INITIALIZERS.values())
# Each step's node and output, by ONNX op: a head has each op at most once.
STEP_NODES = {"Mul": ("apply_scale", "vector_scaled"), "LogSoftmax": ("log_softmax", "log_probabilities"),
              "MatMul": ("apply_weight", "mapped"), "Add": ("apply_bias", "calibrated_logits")}  # fmt: skip
# Nodes of the head by name; a rewrite removes these and builds them again.
HEAD_NODES = ("apply_temperature", *(node for node, _ in STEP_NODES.values()), "softmax", "sigmoid")


def temperature_tensor(temperature: float | np.ndarray) -> onnx.TensorProto:
    t = np.asarray(temperature, dtype=np.float32)
    if t.size == 1:
        t = t.reshape(())
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"temperature must be finite and > 0, got {t.tolist()}")
    return numpy_helper.from_array(t, TEMPERATURE)


def _tensor(value: np.ndarray, name: str) -> onnx.TensorProto:
    a = np.asarray(value, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return numpy_helper.from_array(a, name)


def _step(step: HeadStep, last: str, calibrator: Calibrator) -> tuple[onnx.NodeProto, list[onnx.TensorProto], str]:
    node, out = STEP_NODES[step.op]
    if step.parameter is None:
        return helper.make_node(step.op, [last], [out], name=node, axis=-1), [], out
    value = getattr(calibrator, step.parameter)
    name = INITIALIZERS[step.parameter]
    stored = np.asarray(value).T if step.op == "MatMul" else value
    return helper.make_node(step.op, [last, name], [out], name=node), [_tensor(stored, name)], out


def head(calibrator: Calibrator, multilabel: bool) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers from ``logits`` to ``probabilities``: the temperature, then the method's steps."""
    nodes = [helper.make_node("Div", ["logits", TEMPERATURE], ["scaled_logits"], name="apply_temperature")]
    inits = [temperature_tensor(calibrator.temperature)]
    last = "scaled_logits"
    for step in calibrator.head:
        node, tensors, last = _step(step, last, calibrator)
        nodes.append(node)
        inits.extend(tensors)
    if multilabel:
        nodes.append(helper.make_node("Sigmoid", [last], ["probabilities"], name="sigmoid"))
    else:
        nodes.append(helper.make_node("Softmax", [last], ["probabilities"], name="softmax", axis=-1))
    return nodes, inits


def append_head(proto: onnx.ModelProto, calibrator: Calibrator, multilabel: bool) -> None:
    """Add the head to a graph whose only output so far is ``logits`` [N, K]."""
    graph = proto.graph
    k = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    nodes, inits = head(calibrator, multilabel)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", k]))
    squash = "sigmoid" if multilabel else "softmax"
    proto.doc_string = f"Candor model: probabilities = {squash}({calibrator.method} calibrator(logits))"


def read_calibrator(path: str | Path) -> Calibrator:
    """The calibrator a graph's head applies: the registered method whose steps the head's nodes are."""
    proto = onnx.load(str(path))
    found = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer if t.name in HEAD_INITIALIZERS}
    if TEMPERATURE not in found:
        raise ValueError(f"{path}: no '{TEMPERATURE}' initializer; not a Candor model")
    by_node = {node: op for op, (node, _) in STEP_NODES.items()}
    parameter_of = {init: part for part, init in INITIALIZERS.items()}
    steps, values = [], {}
    for n in proto.graph.node:
        if n.name in by_node:
            init = next((i for i in n.input if i in parameter_of), None)
            steps.append(HeadStep(by_node[n.name], parameter_of.get(init)))
            if init is not None:
                values[parameter_of[init]] = found[init].T if n.op_type == "MatMul" else found[init]
    cls = with_head(tuple(steps))
    if cls is None:
        raise ValueError(f"{path}: its calibration head ({', '.join(s.op for s in steps)}) is no registered method's")
    try:
        return cls(found[TEMPERATURE], **values)
    except CalibratorError as e:
        raise ValueError(f"{path}: {e}") from None


def read_temperature(path: str | Path) -> np.ndarray:
    return read_calibrator(path).temperature


def set_calibrator(src: str | Path, dst: str | Path, calibrator: Calibrator) -> None:
    """Copy the graph at ``src`` to ``dst`` with a new head; the network's weights untouched."""
    proto = onnx.load(str(src))
    graph = proto.graph
    if not any(t.name == TEMPERATURE for t in graph.initializer):
        raise ValueError(f"{src}: no '{TEMPERATURE}' initializer; not a Candor model")
    multilabel = any(n.name == "sigmoid" for n in graph.node)
    kept_nodes = [n for n in graph.node if n.name not in HEAD_NODES]
    kept_inits = [t for t in graph.initializer if t.name not in HEAD_INITIALIZERS]
    kept_outputs = [o for o in graph.output if o.name != "probabilities"]
    del graph.node[:], graph.initializer[:], graph.output[:]
    graph.node.extend(kept_nodes)
    graph.initializer.extend(kept_inits)
    graph.output.extend(kept_outputs)
    append_head(proto, calibrator, multilabel)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(dst))


def set_temperature(src: str | Path, dst: str | Path, temperature: float | np.ndarray) -> None:
    """Copy the graph at ``src`` to ``dst`` with temperature scaling at ``temperature``."""
    set_calibrator(src, dst, TemperatureScaling.of(temperature))
