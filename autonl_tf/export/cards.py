"""The JSON cards written next to exported models: what a deployer needs without reading code.

Every model input of an export (each SavedModel signature, each .tflite) states its contract in
two separate fields, so that a client never has to guess which side does what:

``client``    what the caller does to a raw image before calling the model: an ordered list
              of machine-readable ``steps`` (`EVAL_STEPS` spells each out) ending in the
              ``input`` tensor's dtype and shape;
``in_model``  what the model does inside before its first layer (the client must not do it
              again).

Together the two lists are always the eval preprocessing of training (`autonl_tf.data.
preprocessing.preprocess_for_eval`), split at a different place per input. A client driven
only by these fields gets the SavedModel's top-1 (tests/test_export_contract.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from autonl_tf.data import preprocessing
from autonl_tf.models import ModelSpec, resolve_model_spec

__all__ = ["EVAL_STEPS", "STEP_MEANINGS", "ModelInfo", "contract", "eval_step", "export_metadata",
           "model_info", "write_json"]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Identity and analytic cost of the exported network (`autonl_tf.cost` conventions)."""

    name: str
    arch: str | None
    image_size: int
    num_classes: int
    width_multiplier: float
    macs: int | None
    params: int | None
    keras_params: int  # every weight of the Keras model, BN moving statistics included


def model_info(model: keras.Model, image_size: int, model_spec: ModelSpec | str | None = None,
               width_multiplier: float = 1.0) -> ModelInfo:
    """MACs/params come from the ModelSpec's analytic cost; None when no spec is given."""
    num_classes = int(model.output_shape[-1])
    spec = resolve_model_spec(model_spec) if isinstance(model_spec, str) else model_spec
    cost = spec.cost(image_size, num_classes, width_multiplier) if spec is not None else None
    return ModelInfo(
        name=spec.name if spec is not None else model.name,
        arch=spec.arch_string if spec is not None else None,
        image_size=int(image_size), num_classes=num_classes,
        width_multiplier=float(width_multiplier),
        macs=int(cost.macs) if cost is not None else None,
        params=int(cost.params) if cost is not None else None,
        keras_params=int(model.count_params()))


# The eval preprocessing as steps, in order; each input of an export is this list cut in two.
EVAL_STEPS = ("decode", "central_crop", "resize", "normalize")
# What each step means, written into the cards (``client.how`` / ``in_model.how``).
STEP_MEANINGS = {
    "decode": "decode the JPEG/PNG file to RGB uint8 [height, width, 3] (3 channels: grey "
              "images repeated, alpha dropped)",
    "central_crop": "keep the central square of side max(1, floor(fraction * min(height, "
                    "width))) (the product in float32), top = (height - side + 1) // 2, "
                    "left = (width - side + 1) // 2",
    "resize": "resize to [size, size] with bicubic interpolation (Keys cubic, a = -0.5, "
              "half-pixel centres, no antialiasing: tf.image.resize(method='bicubic')), as "
              "float32, then clip to 0..255",
    "normalize": "per channel, (pixel - mean) / std on the 0..255 scale",
    "round_to_uint8": "round to the nearest integer and store as uint8",
    "quantize": "per value, clip(round(x / scale + zero_point), -128, 127) as int8",
}


def eval_step(step: str, image_size: int, crop_padding: int) -> dict[str, Any]:
    """One step of the eval preprocessing as a card entry: its name and its parameters."""
    if step == "decode":
        return {"op": "decode", "color": "RGB", "formats": ["JPEG", "PNG"]}
    if step == "central_crop":
        return {"op": "central_crop", "fraction": image_size / (image_size + crop_padding)}
    if step == "resize":
        return {"op": "resize", "size": [image_size, image_size], "method": "bicubic",
                "antialias": False, "clip": [0.0, 255.0]}
    if step == "normalize":
        return {"op": "normalize", "mean": list(preprocessing.IMAGENET_MEAN),
                "std": list(preprocessing.IMAGENET_STD)}
    raise ValueError(f"unknown preprocessing step {step!r}; steps: {', '.join(EVAL_STEPS)}")


def contract(image_size: int, crop_padding: int, *, client_until: str,
             client_extra: Sequence[dict[str, Any]] = (), input_tensor: dict[str, Any]
             ) -> dict[str, Any]:
    """``{'client': ..., 'in_model': ...}`` of one model input: the eval steps up to and
    including ``client_until`` are the client's ('' for none), the rest the model's.

    Args:
      image_size, crop_padding: the export's S and eval crop padding.
      client_until: the last of `EVAL_STEPS` the client performs ('' when it sends files).
      client_extra: steps the client adds after those (e.g. 'round_to_uint8', 'quantize').
      input_tensor: {'dtype', 'shape', ...} of the input the client then feeds.
    """
    if client_until and client_until not in EVAL_STEPS:
        raise ValueError(f"unknown preprocessing step {client_until!r}")
    cut = EVAL_STEPS.index(client_until) + 1 if client_until else 0
    client = [eval_step(s, image_size, crop_padding) for s in EVAL_STEPS[:cut]]
    client += [dict(step) for step in client_extra]
    in_model = [eval_step(s, image_size, crop_padding) for s in EVAL_STEPS[cut:]]
    return {
        "client": {"steps": client, "input": dict(input_tensor),
                   "how": {step["op"]: STEP_MEANINGS[step["op"]] for step in client}},
        "in_model": {"steps": in_model,
                     "how": {step["op"]: STEP_MEANINGS[step["op"]] for step in in_model}},
    }


def export_metadata() -> dict[str, str]:
    return {"created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "tensorflow_version": tf.__version__, "keras_version": keras.__version__}


def write_json(path: str, content: dict[str, Any]) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(content, indent=2, sort_keys=False) + "\n")
