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
from autonl_tf.export.modes import (
    LIGHTNL_PRODUCTS,
    MODE_DESCRIPTIONS,
    TFLITE_MODES,
    check_lightnl_products,
)

__all__ = [
    "DelegatePartitions",
    "OpCode",
    "activation_ranges",
    "symmetric_product_operands",
    "assert_builtin_ops_only",
    "convert_to_tflite",
    "tflite_input",
    "tflite_op_codes",
    "xnnpack_partitions",
]

# Ops the full-integer mode keeps in float32 (DEQUANTIZE -> op -> QUANTIZE) with
# ``lightnl_products='float32'``: the products of two activations in LightNL (einsum ->
# BATCH_MATMUL). The default, ``'int8'``, quantises them too (`symmetric_product_operands`).
FLOAT_OPS_IN_INT8 = ("BATCH_MATMUL",)
# Ops whose int8 kernels take the input's scale and zero point for their output: the quantiser
# gives a chain of them one range, so a product operand reached through reshapes and slices
# shares its quantisation with the tensor they start from.
SAME_SCALE_OPS = frozenset({"RESHAPE", "STRIDED_SLICE", "SLICE", "PAD", "TRANSPOSE", "SQUEEZE",
                            "EXPAND_DIMS"})
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
                      calibration_outlier_fraction: float = CALIBRATION_OUTLIER_FRACTION,
                      lightnl_products: str = "int8") -> bytes:
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
      lightnl_products: for 'int8', how LightNL's products of two activations (BATCH_MATMUL)
        are computed (`LIGHTNL_PRODUCTS`): 'int8' (their right-hand operands quantised
        symmetrically, `symmetric_product_operands`, so that XNNPACK runs them) or 'float32'
        (between DEQUANTIZE and QUANTIZE). Other modes compute them like every other op.

    Returns:
      The .tflite bytes (batch 1, see the module docstring).
    """
    if mode not in MODE_DESCRIPTIONS:
        raise ValueError(f"unknown TFLite mode {mode!r}; valid modes: {', '.join(TFLITE_MODES)}")
    if int8_io and mode != "int8":
        raise ValueError(f"int8 input/output needs the full-integer mode 'int8', not {mode!r}")
    check_lightnl_products(lightnl_products, LIGHTNL_PRODUCTS)
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
        denylisted_ops: tuple[str, ...] = FLOAT_OPS_IN_INT8
        if lightnl_products == "int8":
            ranges, denylisted_ops = symmetric_product_operands(float_model, ranges), ()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative_dataset(calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return _quantize_selectively(converter, calibration_images, int8_io, ranges,
                                     denylisted_ops)
    return converter.convert()


def activation_ranges(float_model: bytes, images: np.ndarray,
                      outlier_fraction: float = CALIBRATION_OUTLIER_FRACTION,
                      fit_products: bool = True) -> dict[str, tuple[float, float]]:
    """Per activation tensor of a float .tflite: a (min, max) range robust to outlier images.

    Args:
      float_model: the float32 .tflite of the network.
      images: float32 [N, S, S, 3] normalised calibration images.
      outlier_fraction: per tensor, the share of images whose extreme values the range may
        leave out: max = the (1 - fraction) quantile over the images of each image's maximum
        (min likewise); 0 gives min/max calibration.
      fit_products: the outputs of BATCH_MATMUL get the range `_product_output_ranges`
        chooses (False: the robust range, like every other tensor).

    Returns:
      {tensor name: (min, max)}, min <= 0 <= max.

    Min/max calibration sets each int8 range from the most extreme image. A LightNL output is
    cubic in its input (q k^T v): on a searched demo network's eval images its per-image maximum
    was 47 typically and 7500 at most, and every range downstream of the residual sum grows
    with it, leaving a few quantisation steps for a typical image (the demo config's network,
    calibrated on its 600 eval images, agreed with float on 50% of them). Per tensor, the
    extremes of a few images are clipped instead.

    The outputs of BATCH_MATMUL (LightNL's products of two activations) are the exception
    (`_product_output_ranges`): a few large entries of a product carry much of the next one,
    and clipping them cost more than rounding.
    """
    interpreter = _float_interpreter(float_model)
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
    ranges = {name: (float(lo), float(hi))
              for name, lo, hi in zip(activations.values(), low, high, strict=True)}
    widest = {name: (float(min(lo, 0.0)), float(max(hi, 0.0))) for name, lo, hi in zip(
        activations.values(), lows.min(axis=0), highs.max(axis=0), strict=True)}
    products = {operator.outputs[0] for operator in _Graph(float_model).operators
                if operator.name == "BATCH_MATMUL"}
    if products and fit_products:
        ranges.update(_product_output_ranges(
            interpreter, images, {index: activations[index] for index in products},
            ranges, widest))
    return ranges


# Candidate ranges of a product output, between the robust range and the widest one
# (`_product_output_ranges`), spaced geometrically.
PRODUCT_RANGE_CANDIDATES = 12


def _float_interpreter(float_model: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=float_model, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _product_output_ranges(interpreter, images: np.ndarray, products: dict[int, str],
                           robust: dict[str, tuple[float, float]],
                           widest: dict[str, tuple[float, float]]
                           ) -> dict[str, tuple[float, float]]:
    """The int8 range of each product output that rounds and clips it least, image by image.

    A product of two activations (a LightNL's ``k^T v`` or ``q k^T``, then the product with the
    third operand) is heavy-tailed: a sum of HW or rC terms whose few large entries carry much
    of the next product. The robust range of `activation_ranges` clips the images whose
    extremes are in the top 5%, and those clipped entries were the error: on the tests' demo
    network, the int8 context ``k^T v`` of the first LightNL (range +-808 against a per-image
    maximum of 341 typically, 1117 at most) was off by 5.6% (RMS relative to its spread) in the
    next product, 1.1% with a 1.5x wider range. Per product output, among ranges from the
    robust one to the widest the calibration images reach, the one with the least quantisation
    error (rounding and clipping, mean square relative to each image's own mean square, so that
    each image weighs alike and one atypical image does not set the range) is kept.
    """
    (input_detail,) = interpreter.get_input_details()
    candidates = {}
    for name in products.values():
        (low, high), (wide_low, wide_high) = robust[name], widest[name]
        reach = max(wide_high - wide_low, 1e-30) / max(high - low, 1e-30)
        if high > low and reach > 1.0:
            factors = np.geomspace(1.0, reach, PRODUCT_RANGE_CANDIDATES)
            # Widen each side towards its widest value in the same proportion.
            candidates[name] = [(low * f if wide_low < low else low, high * f if wide_high >
                                 high else high) for f in factors]
            candidates[name] = [(max(lo, wide_low), min(hi, wide_high))
                                for lo, hi in candidates[name]]
    if not candidates:
        return {}
    errors = {name: np.zeros(len(options)) for name, options in candidates.items()}
    for image in images:
        interpreter.set_tensor(input_detail["index"], tflite_input(image[None]))
        interpreter.invoke()
        for index, name in products.items():
            if name not in candidates:
                continue
            values = interpreter.get_tensor(index).astype(np.float64).ravel()
            power = float(np.mean(values ** 2))
            if not power > 0.0:
                continue
            for column, (low, high) in enumerate(candidates[name]):
                errors[name][column] += np.mean(
                    (_fake_quantize(values, low, high) - values) ** 2) / power
    return {name: candidates[name][int(np.argmin(errors[name]))] for name in candidates}


def _fake_quantize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` rounded to the int8 grid of the range [low, high] (the converter's affine
    scale and zero point), clipped to it, and mapped back."""
    scale = (high - low) / 255.0
    zero_point = np.round(-128.0 - low / scale)
    return (np.clip(np.round(values / scale + zero_point), -128, 127) - zero_point) * scale


def symmetric_product_operands(float_model: bytes, ranges: dict[str, tuple[float, float]]
                               ) -> dict[str, tuple[float, float]]:
    """``ranges`` with the right-hand operand of every BATCH_MATMUL made symmetric.

    XNNPACK runs an int8 x int8 -> int8 BATCH_MATMUL only when its right-hand operand is
    quantised per tensor with zero point 0 (LiteRT 2.3.0, ``VisitBatchMatMulNode`` in
    tflite/delegates/xnnpack/xnnpack_delegate.cc: "non-zero zero point ... of input 1 is not
    supported"); with any other zero point the product runs in TFLite's reference kernel, and the
    graph splits into delegate partitions around it. Calibrated ranges are asymmetric. Here
    each such operand gets the range (-128/127 m, m), m the larger of its calibrated |min| and
    |max|: int8 scale m / 127 and zero point 0 exactly. The range is set on the operand's whole
    chain of `SAME_SCALE_OPS` (a LightNL's key and value are reshapes and slices of its input,
    which the quantiser gives one scale), so the chain's root (the LightNL's input, also the
    residual) is quantised symmetrically too: one bit less for a one-signed tensor, nothing
    for the signed block outputs LightNL follows. The left-hand operand and the products keep
    their calibrated ranges.

    Args:
      float_model: the float32 .tflite `ranges` were measured on (same tensor names as the
        calibrated model).
      ranges: {tensor name: (min, max)} from `activation_ranges`.

    Returns:
      A new dict; tensors outside the operands' chains keep their ranges.
    """
    graph = _Graph(float_model)
    chains = _UnionFind()
    for operator in graph.operators:
        if operator.name in SAME_SCALE_OPS:
            chains.union(operator.inputs[0], operator.outputs[0])
    operands = {chains.find(operator.inputs[1]) for operator in graph.operators
                if operator.name == "BATCH_MATMUL"}
    members: dict[int, list[str]] = {}
    for index, name in graph.tensor_names.items():
        root = chains.find(index)
        if root in operands and name in ranges:
            members.setdefault(root, []).append(name)
    symmetric = dict(ranges)
    for names in members.values():
        bound = max(max(-ranges[name][0], ranges[name][1]) for name in names)
        for name in names:
            symmetric[name] = (-bound * 128.0 / 127.0, bound)
    return symmetric


@dataclasses.dataclass(frozen=True)
class _Operator:
    name: str
    inputs: tuple[int, ...]  # tensor indices; -1 for an omitted optional input
    outputs: tuple[int, ...]


class _Graph:
    """The operators (builtin names, tensor indices) and tensor names of a .tflite's main
    subgraph, read from its flatbuffer."""

    def __init__(self, model_bytes: bytes):
        model = schema_fb.Model.GetRootAs(model_bytes, 0)
        names = _builtin_names()
        subgraph = model.Subgraphs(0)
        self.tensor_names = {index: subgraph.Tensors(index).Name().decode()
                             for index in range(subgraph.TensorsLength())}
        self.operators = []
        for index in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(index)
            code = schema_util.get_builtin_code_from_operator_code(
                model.OperatorCodes(operator.OpcodeIndex()))
            self.operators.append(_Operator(
                names.get(code, f"BUILTIN_{code}"),
                tuple(operator.Inputs(i) for i in range(operator.InputsLength())),
                tuple(operator.Outputs(i) for i in range(operator.OutputsLength()))))


class _UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        root = item
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        self.parent[item] = root
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[root_b] = root_a


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
                          int8_io: bool, ranges: dict[str, tuple[float, float]],
                          denylisted_ops: Sequence[str]) -> bytes:
    """Calibrates and quantises everything to int8 but the ``denylisted_ops``.

    TensorFlow's selective quantisation (`tf.lite.experimental.QuantizationDebugger` with
    denylisted ops): the same calibration and MLIR quantiser as ``converter.convert()``, with
    the denylisted ops left in float32 behind DEQUANTIZE/QUANTIZE, and the activation ranges
    the calibration recorded replaced by ``ranges`` (`activation_ranges`) before quantising.
    """
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=list(denylisted_ops), fully_quantize=int8_io)
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
