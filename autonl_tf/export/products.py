"""LightNL's products of two activations in a full-integer model, and whether XNNPACK runs them.

A LightNL multiplies activations by activations (`autonl_tf.layers.lightnl.qkv_product`: two
einsums, BATCH_MATMUL in TFLite). In the full-integer model they are int8 x int8 -> int8
(``lightnl_products='int8'`` of `convert_to_tflite`), which the XNNPACK delegate of the pinned
LiteRT (2.3.0) runs with its int8 batch-matrix-multiply kernels only when the right-hand operand
is quantised per tensor with zero point 0 (``VisitBatchMatMulNode`` in
tflite/delegates/xnnpack/xnnpack_delegate.cc); otherwise the product goes to TFLite's builtin
int8 BATCH_MATMUL, a reference loop (``EvalInt8Int8`` -> ``reference_ops::BatchMatMul`` in
tflite/kernels/batch_matmul.cc), between two delegate partitions.

`check_int8_products` is the export's check of an int8 model: every product int8 with a
symmetric right-hand operand, no DEQUANTIZE/QUANTIZE around it, inside an XNNPACK partition,
and each product computed by XNNPACK equal to the same product computed by TFLite's reference
kernel on the operands the model produced for real images (so that a delegate that took an
operand's quantisation wrongly, as LiteRT up to 2.1.2 did with a non-zero right-hand zero point,
fails here and not on a phone).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema_fb

from autonl_tf.export.tflite import tflite_input, xnnpack_partitions

__all__ = ["MAX_PRODUCT_STEP_DIFF", "Product", "ProductCheck", "check_int8_products",
           "lightnl_products_of"]

# Largest difference allowed between XNNPACK's and the reference kernel's int8 product, in int8
# steps of the product's output. Both accumulate the same int32 sums exactly; they requantise
# them differently (XNNPACK: float32 scale and round-to-nearest-even; TFLite: a fixed-point
# multiplier and shift), which can put a value lying on a rounding boundary one step apart.
MAX_PRODUCT_STEP_DIFF = 1


@dataclasses.dataclass(frozen=True)
class Product:
    """One BATCH_MATMUL of a .tflite: operand and output types, right-hand quantisation."""

    operator: int  # index in the main subgraph
    dtypes: tuple[str, str, str]  # left, right, output
    right_scales: int  # 1: per tensor
    right_zero_point: int | None  # None when the right-hand operand is not quantised
    float_neighbours: tuple[str, ...]  # DEQUANTIZE feeding it, QUANTIZE reading it

    @property
    def int8_symmetric(self) -> bool:
        """int8 x int8 -> int8 with a per-tensor right-hand operand of zero point 0."""
        return (self.dtypes == ("int8", "int8", "int8") and self.right_scales == 1
                and self.right_zero_point == 0)


def _dtype_name(tensor: Any) -> str:
    names = {value: name.lower() for name, value in vars(schema_fb.TensorType).items()
             if not name.startswith("_")}
    return names.get(tensor.type, str(tensor.type))


def _read_model(model_bytes: bytes):
    return schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAs(model_bytes, 0))


def _operator_name(model, operator) -> str:
    from tensorflow.lite.python import schema_util

    from autonl_tf.export.tflite import _builtin_names

    code = schema_util.get_builtin_code_from_operator_code(model.operatorCodes[operator.opcodeIndex])
    return _builtin_names().get(code, f"BUILTIN_{code}")


def lightnl_products_of(model_bytes: bytes) -> list[Product]:
    """Every BATCH_MATMUL of a .tflite (the products of two activations of its LightNLs)."""
    return _products(_read_model(model_bytes))


def _products(model) -> list[Product]:
    subgraph = model.subgraphs[0]
    operators = subgraph.operators or []
    names = [_operator_name(model, operator) for operator in operators]
    producer = {int(t): i for i, op in enumerate(operators) for t in op.outputs}
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(operators):
        for t in op.inputs:
            readers.setdefault(int(t), []).append(i)
    products = []
    for index, (name, operator) in enumerate(zip(names, operators, strict=True)):
        if name != "BATCH_MATMUL":
            continue
        left, right = (subgraph.tensors[int(t)] for t in operator.inputs[:2])
        output = subgraph.tensors[int(operator.outputs[0])]
        quantization = right.quantization
        scales = len(quantization.scale) if quantization is not None and \
            quantization.scale is not None else 0
        zero_point = int(quantization.zeroPoint[0]) if scales else None
        neighbours = [names[producer[int(t)]] for t in operator.inputs[:2]
                      if int(t) in producer and names[producer[int(t)]] == "DEQUANTIZE"]
        neighbours += [names[r] for r in readers.get(int(operator.outputs[0]), [])
                       if names[r] == "QUANTIZE"]
        products.append(Product(index, (_dtype_name(left), _dtype_name(right),
                                        _dtype_name(output)),
                                scales, zero_point, tuple(neighbours)))
    return products


@dataclasses.dataclass(frozen=True)
class ProductCheck:
    """What `check_int8_products` found (``problems`` empty: the int8 products are usable)."""

    products: int  # BATCH_MATMULs in the model
    int8_symmetric: int  # of them int8 x int8 -> int8, right-hand zero point 0
    partitions: int  # XNNPACK delegate partitions of the whole model
    undelegated: tuple[str, ...]  # ops left to the builtin kernels
    images: int  # images whose products were computed two ways
    max_product_step_diff: int  # XNNPACK vs reference kernel, int8 steps of the output
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}

    def summary(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        return (f"{self.int8_symmetric} int8 products (right-hand zero point 0) in "
                f"{self.partitions} XNNPACK partition(s); XNNPACK and the reference kernel "
                f"within {self.max_product_step_diff} int8 step(s) on {self.images} images")


def _single_product_model(model, operator_index: int) -> bytes:
    """A .tflite holding one BATCH_MATMUL of ``model``: its two operands in, its output out,
    with the tensors' types and quantisation as they are in ``model``."""
    subgraph = model.subgraphs[0]
    operator = subgraph.operators[operator_index]
    single = schema_fb.ModelT()
    single.version = model.version
    single.operatorCodes = [copy.deepcopy(model.operatorCodes[operator.opcodeIndex])]
    single.buffers = [schema_fb.BufferT()]
    graph = schema_fb.SubGraphT()
    graph.tensors = []
    for index in (*operator.inputs[:2], operator.outputs[0]):
        tensor = copy.deepcopy(subgraph.tensors[int(index)])
        tensor.buffer = 0
        graph.tensors.append(tensor)
    graph.inputs, graph.outputs = [0, 1], [2]
    product = schema_fb.OperatorT()
    product.opcodeIndex = 0
    product.inputs, product.outputs = [0, 1], [2]
    product.builtinOptionsType = operator.builtinOptionsType
    product.builtinOptions = copy.deepcopy(operator.builtinOptions)
    graph.operators = [product]
    single.subgraphs = [graph]
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(single.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def check_int8_products(model_bytes: bytes, images: np.ndarray, max_images: int = 8
                        ) -> ProductCheck:
    """Checks that XNNPACK runs a full-integer model's LightNL products in int8, correctly.

    Args:
      model_bytes: a full-integer .tflite from ``convert_to_tflite(..., 'int8')``.
      images: float32 [N, S, S, 3] normalised images (`tflite_input` makes the model's input).
      max_images: how many of them to compute the products of.

    Returns:
      The findings; ``problems`` names each failed condition: a product that is not
      int8 x int8 -> int8 with a per-tensor right-hand zero point 0, a DEQUANTIZE or QUANTIZE
      around one, a product left out of the XNNPACK partitions, or a product whose XNNPACK
      result differs from the reference kernel's by more than `MAX_PRODUCT_STEP_DIFF` steps.
      A model without products has nothing to check (``products`` 0, no problems).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = _read_model(model_bytes)
    products = _products(model)
    partitions = xnnpack_partitions(model_bytes)
    problems = []
    other = [p for p in products if not p.int8_symmetric]
    if other:
        first = other[0]
        problems.append(
            f"{len(other)} of the {len(products)} BATCH_MATMULs are not int8 x int8 -> int8 with "
            f"a per-tensor right-hand zero point 0, which XNNPACK runs (first: #{first.operator}, "
            f"{' x '.join(first.dtypes[:2])} -> {first.dtypes[2]}, right-hand zero point "
            f"{first.right_zero_point}, {first.right_scales} scale(s))")
    between = [p for p in products if p.float_neighbours]
    if between:
        problems.append(f"{len(between)} BATCH_MATMULs sit between DEQUANTIZE and QUANTIZE "
                        f"(first: #{between[0].operator}, next to "
                        f"{' and '.join(between[0].float_neighbours)})")
    left_out = partitions.undelegated.count("BATCH_MATMUL")
    if left_out:
        problems.append(f"{left_out} of the {len(products)} BATCH_MATMULs are not delegated to "
                        f"XNNPACK ({partitions.partitions} partitions)")
    if not products or problems:
        return ProductCheck(len(products), sum(p.int8_symmetric for p in products),
                            partitions.partitions, partitions.undelegated, 0, 0, tuple(problems))

    # The reference kernels run the whole model and keep every tensor: the operands and
    # output of each product as TFLite computes them.
    reference = Interpreter(
        model_content=model_bytes, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    reference.allocate_tensors()
    (input_detail,) = reference.get_input_details()
    singles = {}
    for product in products:
        single = _single_product_model(model, product.operator)
        if xnnpack_partitions(single).undelegated:
            problems.append(f"XNNPACK does not take BATCH_MATMUL #{product.operator} alone")
            continue
        interpreter = Interpreter(model_content=single, num_threads=1)
        interpreter.allocate_tensors()
        operator = model.subgraphs[0].operators[product.operator]
        singles[product.operator] = (interpreter, [int(t) for t in operator.inputs[:2]],
                                     int(operator.outputs[0]))
    worst = 0
    images = np.asarray(images, np.float32)[:max_images]
    for image in tflite_input(images):
        model_input = image[None]
        if np.issubdtype(input_detail["dtype"], np.integer):
            scale, zero_point = input_detail["quantization"]
            model_input = np.clip(np.round(model_input / scale + zero_point), -128, 127)
        reference.set_tensor(input_detail["index"], model_input.astype(input_detail["dtype"]))
        reference.invoke()
        for interpreter, operands, output in singles.values():
            for detail, tensor in zip(interpreter.get_input_details(), operands, strict=True):
                interpreter.set_tensor(detail["index"], reference.get_tensor(tensor))
            interpreter.invoke()
            delegated = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            expected = reference.get_tensor(output)
            worst = max(worst, int(np.abs(delegated.astype(np.int32) - expected).max()))
    if worst > MAX_PRODUCT_STEP_DIFF:
        problems.append(f"XNNPACK's int8 products differ from the reference kernel's by up to "
                        f"{worst} int8 steps (allowed: {MAX_PRODUCT_STEP_DIFF})")
    return ProductCheck(len(products), sum(p.int8_symmetric for p in products),
                        partitions.partitions, partitions.undelegated, len(images), worst,
                        tuple(problems))
