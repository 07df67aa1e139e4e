"""TFLite conversion of a Keras classifier in four quantisation modes, builtin ops only.

Every mode converts a concrete function with a fixed input signature: the TFLite models take a
batch of one RGB image of pixel values 0..255, float32 [1, S, S, 3], already cropped and resized,
and return float32 logits [1, num_classes]. The normalisation ``(pixel - mean) / std`` runs inside
the model, so a phone app feeds camera pixels as they are (MediaPipe's ImageClassifier, which
takes one mean/std for all channels, reads mean 0 / std 1 from the metadata). With ``int8_io``
the full-integer model takes and returns int8 tensors instead (quantisation parameters in the
model and its JSON card). Batch 1 is what on-device inference uses; the interpreter can be
resized for larger batches. Python callers here pass normalised images, as to the Keras model:
`tflite_input` turns them into the pixels the TFLite model takes.

Only the TFLite builtin op set is allowed (``TFLITE_BUILTINS``, ``TFLITE_BUILTINS_INT8`` for the
full-integer mode), never SELECT_TF_OPS / Flex or custom ops: a model that needed them fails to
convert. `tflite_op_codes` lists the ops of a converted model from its flatbuffer.
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from collections.abc import Iterator, Sequence

import flatbuffers
import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.python import schema_util

from autonl_tf.data import preprocessing
from autonl_tf.export.modes import MODE_DESCRIPTIONS, TFLITE_MODES

__all__ = [
    "DelegatePartitions",
    "OpCode",
    "activation_ranges",
    "assert_builtin_ops_only",
    "convert_to_tflite",
    "tflite_input",
    "tflite_op_codes",
    "xnnpack_partitions",
]

# Ops the full-integer mode keeps in float32 (DEQUANTIZE -> op -> QUANTIZE): the products of two
# activations in LightNL (einsum -> BATCH_MATMUL). XNNPACK runs float batch matmuls but no int8
# ones, which fall back to TFLite's reference kernels between delegate partitions (LightNL was
# then 56% of AutoNL-L's int8 latency); in float32 they are also exact where an int8 product of
# two int8 activations loses precision. Every other op stays int8.
FLOAT_OPS_IN_INT8 = ("BATCH_MATMUL",)
# XNNPACK's int8 ADD rejects an input whose scale is below 2^-10 times the output's
# (`_widen_tiny_add_inputs`).
XNNPACK_MIN_ADD_SCALE_RATIO = 2.0 ** -10
# Per activation tensor, the share of calibration images whose extremes its int8 range may clip
# (`activation_ranges`).
CALIBRATION_OUTLIER_FRACTION = 0.05


# model -> {image_size: (holder, concrete function)}: tracing a full network takes seconds and
# every mode converts the same function (the converter freezes the variables' current values).
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fixed_batch_function(model: keras.Model, image_size: int):
    """(tf.Module tracking the captured variables, concrete function [1, S, S, 3] -> logits)."""
    traced = _TRACED.setdefault(model, {})
    if image_size not in traced:
        traced[image_size] = _trace_fixed_batch_function(model, image_size)
    return traced[image_size]


def tflite_input(normalized_images: np.ndarray) -> np.ndarray:
    """float32 [N, S, S, 3] normalised images (the Keras model's input) -> RGB pixels 0..255."""
    return (np.asarray(normalized_images, np.float32) * np.float32(preprocessing.IMAGENET_STD)
            + np.float32(preprocessing.IMAGENET_MEAN))


def _trace_fixed_batch_function(model: keras.Model, image_size: int):
    forward = tf.function(
        lambda images: {"logits": tf.cast(
            model(preprocessing.normalize(images), training=False), tf.float32)},
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


def _representative_dataset(normalized_images: np.ndarray) -> Iterator[list[np.ndarray]]:
    for image in tflite_input(normalized_images):
        yield [image[None]]


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
                      int8_io: bool = False,
                      calibration_outlier_fraction: float = CALIBRATION_OUTLIER_FRACTION) -> bytes:
    """Converts a Keras classifier to a TFLite flatbuffer.

    Args:
      model: input [B, S, S, 3] normalised float images, output [B, C] logits.
      image_size: S.
      mode: one of `TFLITE_MODES`.
      calibration_images: float32 [N, S, S, 3] normalised images; required for 'int8'
        (a few hundred eval/train images are typical; N is the calibration cost).
      int8_io: for 'int8' only, int8 input and output tensors instead of float32.
      calibration_outlier_fraction: for 'int8', the share of the calibration images whose
        extremes each activation range may clip (`activation_ranges`); 0: plain min/max.

    Returns:
      The .tflite bytes (batch 1, see the module docstring).
    """
    if mode not in MODE_DESCRIPTIONS:
        raise ValueError(f"unknown TFLite mode {mode!r}; valid modes: {', '.join(TFLITE_MODES)}")
    if int8_io and mode != "int8":
        raise ValueError(f"int8 input/output needs the full-integer mode 'int8', not {mode!r}")
    holder, concrete = _fixed_batch_function(model, image_size)
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
        float_model = converter.convert()
        ranges = activation_ranges(float_model, calibration_images, calibration_outlier_fraction)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative_dataset(calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return _quantize_selectively(converter, calibration_images, int8_io, ranges)
    return converter.convert()


def activation_ranges(float_model: bytes, images: np.ndarray,
                      outlier_fraction: float = CALIBRATION_OUTLIER_FRACTION
                      ) -> dict[str, tuple[float, float]]:
    """Per activation tensor of a float .tflite: a (min, max) range robust to outlier images.

    Args:
      float_model: the float32 .tflite of the network.
      images: float32 [N, S, S, 3] normalised calibration images.
      outlier_fraction: per tensor, the share of images whose extreme values the range may
        leave out: max = the (1 - fraction) quantile over the images of each image's maximum
        (min likewise); 0 gives min/max calibration.

    Returns:
      {tensor name: (min, max)}, min <= 0 <= max.

    Min/max calibration sets each int8 range from the most extreme image. A LightNL output is
    cubic in its input (q k^T v): on a searched demo network's eval images its per-image maximum
    was 47 typically and 7500 at most, and every range downstream of the residual sum grows
    with it, leaving a few quantisation steps for a typical image (the demo config's network,
    calibrated on its 600 eval images, agreed with float on 50% of them). Per tensor, the
    extremes of a few images are clipped instead.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=float_model, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    activations = {d["index"]: d["name"] for d in interpreter.get_tensor_details()
                   if d["dtype"] == np.float32}
    lows = np.zeros([len(images), len(activations)])
    highs = np.zeros([len(images), len(activations)])
    for row, image in enumerate(images):
        interpreter.set_tensor(input_detail["index"], tflite_input(image[None]))
        interpreter.invoke()
        for column, index in enumerate(activations):
            values = interpreter.get_tensor(index)
            finite = values[np.isfinite(values)]  # tensors the graph never writes may hold NaN
            if finite.size:
                lows[row, column], highs[row, column] = finite.min(), finite.max()
    low = np.minimum(np.quantile(lows, outlier_fraction, axis=0), 0.0)
    high = np.maximum(np.quantile(highs, 1.0 - outlier_fraction, axis=0), 0.0)
    return {name: (float(lo), float(hi))
            for name, lo, hi in zip(activations.values(), low, high, strict=True)}


def _with_ranges(calibrated_model: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    """The calibrated model with its recorded activation ranges replaced by ``ranges``."""
    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAs(calibrated_model, 0))
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            quantization = tensor.quantization
            name = tensor.name.decode()
            if quantization is None or quantization.min is None or name not in ranges:
                continue
            low, high = ranges[name]
            # A constant tensor (an all-zero branch, e.g. a LightNL whose BN gamma is 0) keeps
            # the calibrator's range: an empty int8 range has scale 0, which XNNPACK rejects.
            if high > low:
                quantization.min, quantization.max = [low], [high]
        _widen_tiny_add_inputs(model, subgraph)
    builder = flatbuffers.Builder(len(calibrated_model) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _range_width(tensor) -> float:
    quantization = tensor.quantization
    if quantization is None or quantization.min is None or len(quantization.min) != 1:
        return 0.0  # not an activation, or per-channel
    return float(quantization.max[0] - quantization.min[0])


def _widen_tiny_add_inputs(model, subgraph) -> None:
    """Widens the int8 range of an ADD input far narrower than the ADD's output range.

    XNNPACK's int8 ADD takes an input only when its scale is at least
    `XNNPACK_MIN_ADD_SCALE_RATIO` times the output's; an input below that goes to the builtin
    kernel and splits the graph into two delegate partitions. That happens to a residual branch
    ~1000x smaller than the sum it is added to: a LightNL (or SE, MBConv) branch whose BN gamma
    trained close to 0. Such a branch is under a quarter of one int8 step of the sum, so widening
    its range to the narrowest XNNPACK takes changes the sum by less than that step. Only an
    input the ADD alone reads is widened (another reader would lose precision).
    """
    names = _builtin_names()
    readers: dict[int, int] = {}
    for operator in subgraph.operators or []:
        for index in set(operator.inputs if operator.inputs is not None else []):
            readers[index] = readers.get(index, 0) + 1
    for operator in subgraph.operators or []:
        code = schema_util.get_builtin_code_from_operator_code(
            model.operatorCodes[operator.opcodeIndex])
        if names.get(code) != "ADD" or operator.outputs is None or len(operator.outputs) != 1:
            continue
        output_width = _range_width(subgraph.tensors[operator.outputs[0]])
        for index in operator.inputs:
            tensor = subgraph.tensors[index]
            width = _range_width(tensor)
            if readers.get(index) != 1 or not (
                    0.0 < width < XNNPACK_MIN_ADD_SCALE_RATIO * output_width):
                continue
            factor = XNNPACK_MIN_ADD_SCALE_RATIO * output_width / width * 1.01
            quantization = tensor.quantization
            quantization.min = [float(quantization.min[0] * factor)]
            quantization.max = [float(quantization.max[0] * factor)]


def _quantize_selectively(converter: tf.lite.TFLiteConverter, calibration_images: np.ndarray,
                          int8_io: bool, ranges: dict[str, tuple[float, float]]) -> bytes:
    """Calibrates and quantises everything to int8 but the `FLOAT_OPS_IN_INT8`.

    TensorFlow's selective quantisation (`tf.lite.experimental.QuantizationDebugger` with
    denylisted ops): the same calibration and MLIR quantiser as ``converter.convert()``, with
    the denylisted ops left in float32 behind DEQUANTIZE/QUANTIZE, and the activation ranges
    the calibration recorded replaced by ``ranges`` (`activation_ranges`) before quantising.
    """
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(FLOAT_OPS_IN_INT8), fully_quantize=int8_io)
    with warnings.catch_warnings():
        # Emitted for every float-input int8 model (the model quantises its input itself), and
        # by the debugger's own check of its instrumented model with tf.lite.Interpreter.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: _representative_dataset(calibration_images[:1]),
            debug_options=options)
        # The debugger quantises the calibrated model it holds: give it the robust ranges.
        debugger.calibrated_model = _with_ranges(debugger.calibrated_model, ranges)
        return debugger.get_nondebug_quantized_model()


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
