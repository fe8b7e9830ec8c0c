"""The serving summary: per-row figures the server needs from every batch, computed inside the graph.

Each Predict needs its rows' top class and its probability (the answer's top-1), and the drift window
needs the same plus each row's entropy. In numpy those are half a dozen passes over the batch's
probabilities after they left onnxruntime, cold in the cache by then; measured on 256-row requests they
cost more than the edge. As a few more nodes at the end of the graph they are computed while the
probabilities are still in the cache, without the GIL::

    probabilities -> ArgMax (ties: the lower index, as numpy) -> top_class [N, 1] int32
                  -> GatherElements(top index)                -> top_probability [N, 1] (the served value itself)
                  -> -ReduceSum(p * log(clip(p, 1e-12, 1)))   -> entropy [N, 1] (nats)

Added in memory when a multiclass version loads (after its file's sha256 was checked), never written to
the file: the model a user exported stays byte for byte what it was. Multi-label versions keep the
numpy path (their drift figures are per entry, not per row).

>>> proto = with_serving_summary(onnx.load("model.onnx"))   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOP_CLASS = "candor_top_class"
TOP_PROBABILITY = "candor_top_probability"
ENTROPY = "candor_entropy"
OUTPUTS = (TOP_CLASS, TOP_PROBABILITY, ENTROPY)


def with_serving_summary(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with the summary's three outputs added after ``probabilities`` (which it must have)."""
    graph = proto.graph
    if not any(o.name == "probabilities" for o in graph.output):
        raise ValueError("the graph has no 'probabilities' output")
    consts = [numpy_helper.from_array(np.array(1e-12, np.float32), "candor_summary_eps"),
              numpy_helper.from_array(np.array(1.0, np.float32), "candor_summary_one"),
              numpy_helper.from_array(np.array([1], np.int64), "candor_summary_axis")]  # fmt: skip
    nodes = [
        helper.make_node("ArgMax", ["probabilities"], ["candor_top_index"], axis=1, keepdims=1, select_last_index=0),
        helper.make_node("Cast", ["candor_top_index"], [TOP_CLASS], to=TensorProto.INT32),
        helper.make_node("GatherElements", ["probabilities", "candor_top_index"], [TOP_PROBABILITY], axis=1),
        helper.make_node("Clip", ["probabilities", "candor_summary_eps", "candor_summary_one"], ["candor_clipped"]),
        helper.make_node("Log", ["candor_clipped"], ["candor_log_p"]),
        helper.make_node("Mul", ["candor_clipped", "candor_log_p"], ["candor_p_log_p"]),
        helper.make_node("ReduceSum", ["candor_p_log_p", "candor_summary_axis"], ["candor_neg_entropy"], keepdims=1),
        helper.make_node("Neg", ["candor_neg_entropy"], [ENTROPY]),
    ]
    graph.node.extend(nodes)
    graph.initializer.extend(consts)
    graph.output.extend([helper.make_tensor_value_info(TOP_CLASS, TensorProto.INT32, ["batch", 1]),
                         helper.make_tensor_value_info(TOP_PROBABILITY, TensorProto.FLOAT, ["batch", 1]),
                         helper.make_tensor_value_info(ENTROPY, TensorProto.FLOAT, ["batch", 1])])  # fmt: skip
    return proto
