"""The JSON cards written next to exported models: what a deployer needs without reading code."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import keras
import tensorflow as tf

from autonl_tf.data import preprocessing
from autonl_tf.models import ModelSpec, resolve_model_spec

__all__ = ["ModelInfo", "export_metadata", "model_info", "preprocessing_card", "write_json"]


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


def preprocessing_card(image_size: int, crop_padding: int) -> dict[str, Any]:
    """How raw images become the model input (the eval preprocessing of autonl_tf.data)."""
    return {
        "color": "RGB",
        "central_crop_fraction": image_size / (image_size + crop_padding),
        "central_crop": f"square of {image_size}/({image_size}+{crop_padding}) of the shorter side",
        "resize": f"bicubic to {image_size}x{image_size}, clipped to 0..255",
        "normalization": {
            "formula": "(pixel - mean) / std, pixel in 0..255",
            "mean": list(preprocessing.IMAGENET_MEAN),
            "std": list(preprocessing.IMAGENET_STD),
        },
    }


def export_metadata() -> dict[str, str]:
    return {"created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "tensorflow_version": tf.__version__, "keras_version": keras.__version__}


def write_json(path: str, content: dict[str, Any]) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(content, indent=2, sort_keys=False) + "\n")
