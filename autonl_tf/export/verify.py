"""Agreement between an exported model and the TensorFlow model it came from.

The TFLite models run in the LiteRT interpreter (`ai_edge_litert`), one image at a time (they
have batch 1), on the same normalised images the reference logits were computed on.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from autonl_tf.export.tflite import tflite_input

__all__ = ["Agreement", "compare_logits", "count_nonfinite_rows", "tflite_logits"]


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How closely candidate logits follow reference logits on the same images."""

    num_images: int
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    top1_agreement: float  # fraction of images whose argmax is the same

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return (f"top-1 agreement {self.top1_agreement:.2%} on {self.num_images} images, "
                f"max |logit diff| {self.max_abs_logit_diff:.3g}, "
                f"mean {self.mean_abs_logit_diff:.3g}")


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """reference, candidate: float [N, C] logits of the same N images."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(f"logit shapes differ or are not [N, C]: {reference.shape} vs "
                         f"{candidate.shape}")
    if len(reference) == 0:
        raise ValueError("no images to compare")
    # A row that is finite on one side only disagrees (an infinite difference), never "agrees"
    # through the argmax of a NaN row; rows non-finite on both sides are left to
    # `count_nonfinite_rows`, which the export checks first.
    finite_ref = np.isfinite(reference).all(-1)
    finite_cand = np.isfinite(candidate).all(-1)
    both = finite_ref & finite_cand
    diff = np.abs(reference[both] - candidate[both])
    one_sided = finite_ref != finite_cand
    same_top1 = (np.argmax(reference, -1) == np.argmax(candidate, -1)) & ~one_sided
    max_diff = math.inf if one_sided.any() else (float(diff.max()) if diff.size else 0.0)
    return Agreement(num_images=len(reference), max_abs_logit_diff=max_diff,
                     mean_abs_logit_diff=float(diff.mean()) if diff.size else 0.0,
                     top1_agreement=float(same_top1.mean()))


def count_nonfinite_rows(logits: np.ndarray) -> int:
    """Rows (images) of float [N, C] logits holding a NaN or Inf."""
    return int((~np.isfinite(np.asarray(logits, np.float64)).all(-1)).sum())


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if scale == 0:  # not quantised
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def tflite_logits(model_bytes: bytes, images: np.ndarray, num_threads: int | None = None,
                  delegate: bool = True) -> np.ndarray:
    """Runs a batch-1 classifier on every image.

    Args:
      model_bytes: a .tflite model from `convert_to_tflite` (float or int8 input/output).
      images: float32 [N, S, S, 3] normalised images, as for the Keras model (the TFLite
        model takes them as pixels, `tflite_input`).
      num_threads: interpreter threads (None: LiteRT's default).
      delegate: run with LiteRT's default delegate (XNNPACK on CPU), as a phone app does;
        False: TFLite's builtin kernels alone.

    Returns:
      float32 [N, C] logits (dequantised for an int8 output).
    """
    resolver = (OpResolverType.AUTO if delegate
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads,
                              experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    quantized_input = np.issubdtype(input_detail["dtype"], np.integer)
    rows = []
    for image in tflite_input(images):
        batch = image[None]
        batch = _quantize(batch, input_detail) if quantized_input else batch
        interpreter.set_tensor(input_detail["index"], batch.astype(input_detail["dtype"]))
        interpreter.invoke()
        rows.append(_dequantize(interpreter.get_tensor(output_detail["index"]), output_detail)[0])
    return np.stack(rows)
