"""What an export may be asked for: the TFLite modes (what each means, which are the defaults
and why), parsing ``--tflite``, and `ExportError`.

No TensorFlow here: ``python -m autonl_tf.export`` checks its flags before loading it.
"""

from __future__ import annotations

from collections.abc import Iterable

from autonl_tf.errors import UserError

__all__ = ["DEFAULT_TFLITE_MODES", "LIGHTNL_PRODUCTS", "LIGHTNL_PRODUCT_CHOICES",
           "MODE_DESCRIPTIONS", "MODE_SELECTION", "TFLITE_MODES", "ExportError",
           "check_lightnl_products", "parse_tflite_modes"]


class ExportError(UserError, RuntimeError):
    """An export could not be produced; the message says why and what to do."""


# mode -> what it means (also written into the model card).
MODE_DESCRIPTIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights (dequantised to float32 at load), float32 activations",
    "dynamic_int8": "dynamic-range quantisation: int8 weights, activations quantised on the fly; "
                    "float32 input/output",
    "int8": "full-integer quantisation: int8 weights and activations calibrated on a "
            "representative set (per tensor, the extremes of 5% of the images clipped); "
            "LightNL's products of two activations (BATCH_MATMUL) as the card's "
            "'lightnl_products' says; float32 input/output unless int8_io",
}
# How the full-integer mode computes LightNL's products of two activations (einsum ->
# BATCH_MATMUL); written into the int8 model's card. docs/phones.md has the measurements.
LIGHTNL_PRODUCTS = {
    "int8": "int8 x int8 -> int8 BATCH_MATMUL inside the XNNPACK partition: the right-hand "
            "operand of each product is quantised symmetrically (zero point 0, which XNNPACK's "
            "int8 batch matmul requires; any other zero point leaves the product to TFLite's "
            "reference kernel, outside the delegate)",
    "float32": "float32 BATCH_MATMUL between DEQUANTIZE and QUANTIZE (float32 islands inside "
               "the XNNPACK partition): the fallback when the int8 products fail their check "
               "at export",
}
# What an export may be asked for: 'auto' tries the int8 products and falls back to the float32
# islands, with the reason in the card, when their check or verification fails.
LIGHTNL_PRODUCT_CHOICES = ("auto", *LIGHTNL_PRODUCTS)
TFLITE_MODES = tuple(MODE_DESCRIPTIONS)
# What `python -m autonl_tf.export` and the pipeline write unless told otherwise: the modes that
# are accurate (each is verified against TensorFlow at export) and fast on a phone CPU.
DEFAULT_TFLITE_MODES = ("float32", "int8")
# mode -> why it is or is not a default (written into its card). Latencies: batch 1, 224 px,
# one thread, XNNPACK, `python benchmarks/tflite_latency.py` (docs/phones.md).
MODE_SELECTION = {
    "float32": "default: the exact reference (top-1 agrees with TensorFlow on every image), runs "
               "on every delegate (XNNPACK CPU, GPU)",
    "int8": "default: 3.5x smaller than float32, and faster on CPUs with int8 dot-product "
            "instructions (phones' ARM dotprod, x86 VNNI; measured 1.8-1.9x for AutoNL-S/L on "
            "one, docs/phones.md) but not on CPUs without them (AVX2 alone: level or slower); "
            "XNNPACK runs the whole graph, LightNL's products included; top-1 verified "
            "against TensorFlow at export",
    "float16": "not a default: half the size of float32 but no faster on CPU (weights are "
               "dequantised to float32 at load); for GPU delegates",
    "dynamic_int8": "not a default: measured slower than float32 with XNNPACK (it does not "
                    "take the hybrid depthwise convolutions: the graph splits at each of them)",
}


def check_lightnl_products(choice: str, allowed: Iterable[str] = LIGHTNL_PRODUCT_CHOICES) -> str:
    """``choice`` if it is one of ``allowed``, else a ValueError naming the valid ones."""
    allowed = tuple(allowed)
    if choice not in allowed:
        raise ValueError(f"unknown LightNL product mode {choice!r}; valid: {', '.join(allowed)}")
    return choice


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
