"""MACs as TensorFlow's own graph profiler counts them: an independent check of `autonl_tf.cost`.

Works for any Keras model (ours or ``keras.applications``): the model is traced at batch 1, frozen,
and profiled with ``tf.compat.v1.profiler``. Convolutions and matrix products report 2 flops per
MAC, global pooling (Mean) one add per input element, which matches the paper's convention.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from autonl_tf import cost

__all__ = ["PROFILED_OP_TYPES", "analytic_macs_as_profiled", "graph_profiler_macs"]

PROFILED_OP_TYPES = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "BatchMatMulV3",
                     "Mean")


def graph_profiler_macs(model: keras.Model, image_size: int) -> dict[str, int]:
    """MACs per op type of ``model`` on one [1, image_size, image_size, 3] image."""
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, image_size, image_size, 3]))
    graph = convert_variables_to_constants_v2(fn).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    # The name-scope view stays shallow; the 'graph' view overflows protobuf's nesting limit.
    root = tf.compat.v1.profiler.profile(graph, options=options, cmd="scope")
    op_types = {op.name: op.type for op in graph.get_operations()}
    flops: dict[str, int] = {}

    def walk(node) -> None:
        for child in node.children:
            op_type = op_types.get(child.name)
            if op_type in PROFILED_OP_TYPES:
                flops[op_type] = flops.get(op_type, 0) + child.float_ops
            walk(child)

    walk(root)
    return {t: (f if t == "Mean" else f // 2) for t, f in flops.items()}


def analytic_macs_as_profiled(analytic: cost.ModelCost, measured: dict[str, int]) -> int:
    """The analytic MACs that `graph_profiler_macs` must report in total for this network.

    The LightNL aggregation is an einsum -> BatchMatMul, which some TensorFlow versions leave
    uncounted: it is taken out of the analytic figure where the profiler counted no BatchMatMul.
    """
    aggregation = sum(min(cost.lightnl_orders(b.out_size, b.out_size, b.out_channels,
                                              b.spec.nonlocal_ratio, b.spec.nonlocal_stride))
                      for b in analytic.blocks if b.spec.has_nonlocal)
    profiled_batch_matmul = measured.get("BatchMatMulV2", 0) + measured.get("BatchMatMulV3", 0)
    return analytic.macs - (aggregation if profiled_batch_matmul == 0 else 0)
