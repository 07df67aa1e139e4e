"""TFLite conversion of a Keras classifier in four quantisation modes, builtin ops only.

Every mode converts a concrete function with a fixed input signature: the TFLite models take a
batch of one normalised image float32 [1, S, S, 3] ((pixel - mean) / std, RGB, 0..255 scale) and
return float32 logits [1, num_classes]; with ``int8_io`` the full-integer model takes and returns
int8 tensors instead (quantisation parameters in the model and its JSON card). Batch 1 is what
on-device inference uses; the interpreter can be resized for larger batches.

Only the TFLite builtin op set is allowed (``TFLITE_BUILTINS``, ``TFLITE_BUILTINS_INT8`` for the
full-integer mode), never SELECT_TF_OPS / Flex or custom ops: a model that needed them fails to
convert. `tflite_op_codes` lists the ops of a converted model from its flatbuffer.
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.python import schema_util

from autonl_tf.layers import lightnl

__all__ = [
    "MODE_DESCRIPTIONS",
    "TFLITE_MODES",
    "DelegatePartitions",
    "OpCode",
    "assert_builtin_ops_only",
    "xnnpack_partitions",
    "convert_to_tflite",
    "parse_tflite_modes",
    "tflite_op_codes",
]

# mode -> what it means (also written into the model card).
MODE_DESCRIPTIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights (dequantised to float32 at load), float32 activations",
    "dynamic_int8": "dynamic-range quantisation: int8 weights, activations quantised on the fly; "
                    "float32 input/output",
    "int8": "full-integer quantisation: int8 weights and activations calibrated on a "
            "representative set; float32 input/output unless int8_io",
}
TFLITE_MODES = tuple(MODE_DESCRIPTIONS)
# Modes whose LightNL products are traced as broadcast MUL + SUM instead of batch matmuls: the
# XNNPACK delegate runs float batch matmuls but no int8 ones (those would fall back to the
# reference kernels, splitting the graph into delegate partitions).
BROADCAST_PRODUCT_MODES = ("int8",)


def parse_tflite_modes(modes: str | Iterable[str] | None) -> list[str]:
    """'float32,int8' (or a list) -> ['float32', 'int8']; unknown modes raise a ValueError.

    Empty/None gives []. Duplicates are dropped, order is kept.
    """
    if modes is None:
        return []
    items = modes.split(",") if isinstance(modes, str) else list(modes)
    parsed: list[str] = []
    for item in (m.strip() for m in items):
        if not item:
            continue
        if item not in MODE_DESCRIPTIONS:
            raise ValueError(f"unknown TFLite mode {item!r}; valid modes: {', '.join(TFLITE_MODES)}")
        if item not in parsed:
            parsed.append(item)
    return parsed


# model -> {image_size: (holder, concrete function)}: tracing a full network takes seconds and
# every mode converts the same function (the converter freezes the variables' current values).
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fixed_batch_function(model: keras.Model, image_size: int, broadcast: bool):
    """(tf.Module tracking the captured variables, concrete function [1, S, S, 3] -> logits).

    ``broadcast``: trace LightNL's products as broadcast MUL + SUM (`lightnl.broadcast_products`).
    """
    traced = _TRACED.setdefault(model, {})
    if (image_size, broadcast) not in traced:
        with lightnl.broadcast_products(broadcast):
            traced[image_size, broadcast] = _trace_fixed_batch_function(model, image_size)
    return traced[image_size, broadcast]


def _trace_fixed_batch_function(model: keras.Model, image_size: int):
    forward = tf.function(
        lambda images: {"logits": tf.cast(model(images, training=False), tf.float32)},
        input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32,
                                       name="images")])
    concrete = forward.get_concrete_function()
    # The converter wants a trackable owner of the function (without one it takes a deprecated
    # path). It holds the captured TF variables, not the Keras model: a tracked Keras model
    # leaves unfrozen VAR_HANDLE/READ_VARIABLE ops (NaN outputs) when the converter goes through
    # a SavedModel.
    holder = tf.Module()
    holder.captured_variables = list(concrete.variables)
    holder.forward = forward
    return holder, concrete


def _representative_dataset(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    for image in images:
        yield [image[None].astype(np.float32)]


def _check_finite_logits(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> None:
    # The int8 quantiser crashes the process (segfault) on infinite calibration ranges; fail
    # with a message instead when the network overflows on the calibration images.
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size], training=False)
        if not np.all(np.isfinite(np.asarray(logits))):
            raise ValueError("the model produces non-finite logits on the calibration images; "
                             "full-integer quantisation needs finite activations (check the "
                             "weights and that the images are normalised)")


def convert_to_tflite(model: keras.Model, image_size: int, mode: str,
                      calibration_images: np.ndarray | None = None,
                      int8_io: bool = False) -> bytes:
    """Converts a Keras classifier to a TFLite flatbuffer.

    Args:
      model: input [B, S, S, 3] normalised float images, output [B, C] logits.
      image_size: S.
      mode: one of `TFLITE_MODES`.
      calibration_images: float32 [N, S, S, 3] normalised images; required for 'int8'
        (a few hundred eval/train images are typical; N is the calibration cost).
      int8_io: for 'int8' only, int8 input and output tensors instead of float32.

    Returns:
      The .tflite bytes (batch 1, see the module docstring).
    """
    if mode not in MODE_DESCRIPTIONS:
        raise ValueError(f"unknown TFLite mode {mode!r}; valid modes: {', '.join(TFLITE_MODES)}")
    if int8_io and mode != "int8":
        raise ValueError(f"int8 input/output needs the full-integer mode 'int8', not {mode!r}")
    holder, concrete = _fixed_batch_function(model, image_size, mode in BROADCAST_PRODUCT_MODES)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    # Convert the frozen graph directly instead of round-tripping through a temporary
    # SavedModel: same flatbuffer, 5-10x faster for the full networks (the SavedModel save
    # spends most of its time tracing gradient functions).
    converter.experimental_lower_to_saved_model = False
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("the full-integer mode 'int8' needs calibration images "
                             "(representative normalised images [N, S, S, 3])")
        calibration_images = np.asarray(calibration_images, np.float32)
        if calibration_images.shape[1:] != (image_size, image_size, 3):
            raise ValueError(f"calibration images have shape {calibration_images.shape}; "
                             f"expected [N, {image_size}, {image_size}, 3]")
        _check_finite_logits(model, calibration_images)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative_dataset(calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # Emitted for every float-input int8 model; the input is quantised by the model itself.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


@dataclasses.dataclass(frozen=True)
class OpCode:
    """One operator code of a TFLite model: builtin name, or the custom code of a custom op."""

    name: str
    builtin: bool


def _builtin_names() -> dict[int, str]:
    return {value: name for name, value in vars(schema_fb.BuiltinOperator).items()
            if not name.startswith("_") and isinstance(value, int)}


def tflite_op_codes(model_bytes: bytes) -> list[OpCode]:
    """The distinct operators a .tflite model uses (read from its flatbuffer), sorted by name."""
    model = schema_fb.Model.GetRootAs(model_bytes, 0)
    names = _builtin_names()
    codes = set()
    for index in range(model.OperatorCodesLength()):
        operator_code = model.OperatorCodes(index)
        code = schema_util.get_builtin_code_from_operator_code(operator_code)
        if code == schema_fb.BuiltinOperator.CUSTOM:
            custom = operator_code.CustomCode()
            codes.add(OpCode(custom.decode() if custom else "CUSTOM", builtin=False))
        else:
            codes.add(OpCode(names.get(code, f"BUILTIN_{code}"), builtin=True))
    return sorted(codes, key=lambda c: c.name)


def assert_builtin_ops_only(model_bytes: bytes, what: str = "model") -> Sequence[str]:
    """Raises ValueError if the model has custom or Flex ops; returns the builtin op names."""
    codes = tflite_op_codes(model_bytes)
    custom = [c.name for c in codes if not c.builtin or c.name.startswith("Flex")]
    if custom:
        raise ValueError(f"{what} uses non-builtin TFLite ops {custom}: it would need "
                         "SELECT_TF_OPS/Flex or custom kernels")
    return [c.name for c in codes]


@dataclasses.dataclass(frozen=True)
class DelegatePartitions:
    """How the XNNPACK delegate of the LiteRT interpreter splits a model.

    ``partitions``: delegate nodes (each a subgraph XNNPACK runs); ``undelegated``: the op names
    left to the builtin kernels, in execution order. A model XNNPACK takes whole has one
    partition and nothing undelegated; every undelegated op between two partitions costs a
    hand-over between XNNPACK and the reference kernels.
    """

    partitions: int
    undelegated: tuple[str, ...]


def xnnpack_partitions(model_bytes: bytes) -> DelegatePartitions:
    """Loads the model in the LiteRT interpreter (default delegates) and reads its node list."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # the only Python view of the delegated node list
    nodes = [op for op in ops if op["op_name"] != "DELEGATE"]
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    inside: set[int] = set()
    for delegate in delegates:
        inputs, outputs = set(delegate["inputs"]), set(delegate["outputs"])
        # A node belongs to this partition when it lies between the partition's inputs and
        # outputs: reachable forward from the inputs and backward from the outputs without
        # crossing the partition boundary.
        after = _reachable(nodes, inputs, stop=outputs, forward=True)
        before = _reachable(nodes, outputs, stop=inputs, forward=False)
        inside |= after & before
    return DelegatePartitions(len(delegates), tuple(
        node["op_name"] for node in nodes if node["index"] not in inside))


def _reachable(nodes: list[dict], start: set[int], stop: set[int], forward: bool) -> set[int]:
    tensors, reached = set(start), set()
    source, target = ("inputs", "outputs") if forward else ("outputs", "inputs")
    changed = True
    while changed:
        changed = False
        for node in nodes:
            if node["index"] not in reached and set(node[source]) & tensors:
                reached.add(node["index"])
                tensors |= set(node[target]) - stop
                changed = True
    return reached
