"""The small TFLite models a latency table is measured with, built from the package's own layers.

Every model takes an RGB image ``[1, size, size, 3]`` (what `autonl_tf.export.convert_to_tflite`
converts: batch 1, normalisation inside) at the part's input map size:

* part model of a block or LightNL: image -> 1x1 conv to the part's input channels (the
  *adapter*) -> the part (`MBConvBlock.from_plan` / `LightNL`, exactly the layers
  `autonl_tf.models.build_model` stacks) -> its output;
* part model of the stem: image -> stem (`stem_layers`); of the head: image -> adapter -> head
  (`head_layers`) -> global pooling -> classifier (`classifier_layers`);
* baseline: the same model without the part (image -> adapter, or the image alone for the stem).

A part's latency is ``t(part model) - t(its baseline)``: what the part adds to a network, the
invoke overhead, input handling and adapter cancelled. Weights are random, BatchNorm statistics
and scales too (a LightNL's BN starts at gamma = 0, an all-zero branch a converter could treat
specially); latency does not depend on their values. The int8 models are calibrated on a few
random images: enough for latency, not for accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from autonl_tf.arch import BlockSpec
from autonl_tf.layers.lightnl import LightNL
from autonl_tf.layers.mbconv import MBConvBlock
from autonl_tf.models import build_model
from autonl_tf.models.builder import classifier_layers, head_layers, stem_layers
from autonl_tf.plan import BlockLayer
from autonl_tf.search.latency_cost import Part
from autonl_tf.search.space import BlockDecision, SearchSpace

__all__ = ["baseline_model", "child_model", "convert", "part_model", "randomize_batch_norms"]

NUM_CALIBRATION_IMAGES = 4


def randomize_batch_norms(model: keras.Model, seed: int = 0) -> keras.Model:
    """Gives every BatchNorm of ``model`` random non-trivial scales and statistics."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.normal(0.0, 0.1, beta.shape).astype(np.float32),
                               rng.normal(0.0, 0.1, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 1.5, variance.shape).astype(np.float32)])
    return model


def _layers(part: Part) -> list[keras.layers.Layer]:
    if part.kind == "stem":
        return stem_layers(part.output_filters, part.activation)
    if part.kind == "mbconv":
        spec = BlockSpec(1, (part.kernel_size,), (part.stride, part.stride), part.expand_ratio,
                         part.input_filters, part.output_filters, part.se_ratio,
                         swish=part.activation == "swish")
        layer = BlockLayer(0, spec, part.size, part.input_filters, part.output_filters,
                           part.activation)
        return [MBConvBlock.from_plan(layer, name="block")]
    if part.kind == "lightnl":
        return [LightNL(part.lightnl_ratio, part.lightnl_stride, name="lightnl")]
    if part.kind == "head":
        return (head_layers(part.output_filters, part.activation)
                + classifier_layers(part.num_classes, dropout_rate=0.0))
    raise ValueError(f"unknown part kind {part.kind!r}")


def _model(part: Part, with_part: bool, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((part.size, part.size, 3), name="images")
    x = inputs
    if part.kind != "stem":
        x = keras.layers.Conv2D(part.input_filters, 1, use_bias=False, name="adapter")(x)
    if with_part:
        for layer in _layers(part):
            x = layer(x)
    elif part.kind == "stem":
        # The image alone: the converted model is the normalisation (its output must differ
        # from its input for the converter to keep a graph).
        x = keras.layers.Activation("linear", name="identity")(x)
    model = keras.Model(inputs, x, name=f"{part.kind}_{'part' if with_part else 'baseline'}")
    return randomize_batch_norms(model, seed)


def part_model(part: Part, seed: int = 0) -> keras.Model:
    """The part after its adapter (see the module docstring)."""
    return _model(part, True, seed)


def baseline_model(part: Part, seed: int = 0) -> keras.Model:
    """The part's model without the part (see the module docstring)."""
    return _model(part, False, seed)


def child_model(space: SearchSpace, decisions: Sequence[BlockDecision], image_size: int,
                num_classes: int, width_multiplier: float, depth_divisor: int = 8,
                seed: int = 0) -> keras.Model:
    """A child of the space as `autonl_tf.models.build_model` builds it (random weights)."""
    keras.utils.set_random_seed(seed)
    model = build_model(space.child_spec(decisions), num_classes, image_size, width_multiplier,
                        dropout_rate=0.0, depth_divisor=depth_divisor)
    return randomize_batch_norms(model, seed)


def convert(model: keras.Model, image_size: int, mode: str, seed: int = 1) -> bytes:
    """`autonl_tf.export.convert_to_tflite` of ``model`` in ``mode`` (int8: random calibration
    images)."""
    from autonl_tf.export import convert_to_tflite

    calibration = np.random.default_rng(seed).normal(
        size=(NUM_CALIBRATION_IMAGES, image_size, image_size, 3)).astype(np.float32)
    return convert_to_tflite(model, image_size, mode,
                             calibration if mode == "int8" else None)
