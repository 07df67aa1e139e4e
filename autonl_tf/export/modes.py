"""What an export may be asked for: the TFLite modes (what each means, which are the defaults
and why), parsing ``--tflite``, and `ExportError`.

No TensorFlow here: ``python -m autonl_tf.export`` checks its flags before loading it.
"""

from __future__ import annotations

from collections.abc import Iterable

from autonl_tf.errors import UserError

__all__ = ["DEFAULT_TFLITE_MODES", "MODE_DESCRIPTIONS", "MODE_SELECTION", "TFLITE_MODES",
           "ExportError", "parse_tflite_modes"]


class ExportError(UserError, RuntimeError):
    """An export could not be produced; the message says why and what to do."""


# mode -> what it means (also written into the model card).
MODE_DESCRIPTIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights (dequantised to float32 at load), float32 activations",
    "dynamic_int8": "dynamic-range quantisation: int8 weights, activations quantised on the fly; "
                    "float32 input/output",
    "int8": "full-integer quantisation: int8 weights and activations calibrated on a "
            "representative set (per tensor, the extremes of 5% of the images clipped), "
            "except the products "
            "of two activations in LightNL (BATCH_MATMUL), computed in float32 between "
            "DEQUANTIZE and QUANTIZE; float32 input/output unless int8_io",
}
TFLITE_MODES = tuple(MODE_DESCRIPTIONS)
# What `python -m autonl_tf.export` and the pipeline write unless told otherwise: the modes that
# are accurate (each is verified against TensorFlow at export) and fast on a phone CPU.
DEFAULT_TFLITE_MODES = ("float32", "int8")
# mode -> why it is or is not a default (written into its card). Latencies: batch 1, 224 px,
# one thread, XNNPACK, `python benchmarks/tflite_latency.py` (README, "Serving and phones").
MODE_SELECTION = {
    "float32": "default: the exact reference (top-1 agrees with TensorFlow on every image), runs "
               "on every delegate (XNNPACK CPU, GPU)",
    "int8": "default: 3.5x smaller and 1.8-1.9x faster than float32 on CPU for AutoNL-S/L (XNNPACK "
            "runs the whole graph), top-1 verified against TensorFlow at export",
    "float16": "not a default: half the size of float32 but no faster on CPU (weights are "
               "dequantised to float32 at load); for GPU delegates",
    "dynamic_int8": "not a default: measured slower than float32 with XNNPACK (it does not "
                    "take the hybrid depthwise convolutions: the graph splits at each of them)",
}


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
