"""The network builder: stem, MBConv blocks (with LightNL), head, dropout, classifier.

Functional Keras models in the style of ``keras.applications``. A network is built from its
plan (`autonl_tf.plan.NetworkPlan`, `ModelSpec.plan`): every layer's channels, kernel and stride
are read from there; the analytic cost of exactly this network is `autonl_tf.cost.model_cost`
of the same plan (`ModelSpec.cost(...)`).
"""

from __future__ import annotations

import keras

from autonl_tf.layers.mbconv import CONV_INITIALIZER, MBConvBlock, activation_fn
from autonl_tf.models.spec import ModelSpec, check_image_size
from autonl_tf.plan import NetworkPlan

__all__ = ["build_model", "build_network", "classifier_layers", "head_layers", "stem_layers"]


def _conv_bn_activation(prefix: str, filters: int, kernel_size: int, strides: int,
                        activation: str, bn_momentum: float, bn_epsilon: float,
                        kernel_initializer: keras.initializers.Initializer | None
                        ) -> list[keras.layers.Layer]:
    return [keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                use_bias=False,
                                kernel_initializer=(kernel_initializer
                                                    or keras.initializers.get(CONV_INITIALIZER)),
                                name=f"{prefix}_conv"),
            keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon,
                                            name=f"{prefix}_bn"),
            keras.layers.Activation(activation, name=f"{prefix}_activation")]


def stem_layers(filters: int, activation: str, bn_momentum: float = 0.99,
                bn_epsilon: float = 1e-3,
                kernel_initializer: keras.initializers.Initializer | None = None
                ) -> list[keras.layers.Layer]:
    """The stem, applied in order: 3x3 stride-2 conv, BN, activation.

    [batch, S, S, 3] -> [batch, S/2, S/2, filters]. Shared by `build_model` and the supernet
    (the layer names are what the search's weight copy relies on). ``kernel_initializer``:
    one instance shared with the head (as a seeded build has always drawn it), default new.
    """
    return _conv_bn_activation("stem", filters, 3, 2, activation, bn_momentum, bn_epsilon,
                               kernel_initializer)


def head_layers(filters: int, activation: str, bn_momentum: float = 0.99,
                bn_epsilon: float = 1e-3,
                kernel_initializer: keras.initializers.Initializer | None = None
                ) -> list[keras.layers.Layer]:
    """The head, applied in order: 1x1 conv, BN, activation. [b, h, w, c] -> [b, h, w, filters]."""
    return _conv_bn_activation("head", filters, 1, 1, activation, bn_momentum, bn_epsilon,
                               kernel_initializer)


def classifier_layers(num_classes: int, dropout_rate: float) -> list[keras.layers.Layer]:
    """Global average pooling, dropout (when > 0) and the float32 logits.

    [b, h, w, c] -> [b, num_classes] float32 (also under a mixed-precision policy).
    """
    layers = [keras.layers.GlobalAveragePooling2D(name="avg_pool")]
    if dropout_rate > 0:
        layers.append(keras.layers.Dropout(dropout_rate, name="top_dropout"))
    layers.append(keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in",
                                                                           "uniform"),
        dtype="float32", name="logits"))
    return layers


def build_model(
    spec: ModelSpec,
    num_classes: int = 1000,
    image_size: int = 224,
    width_multiplier: float = 1.0,
    dropout_rate: float = 0.2,
    drop_connect_rate: float = 0.0,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    depth_divisor: int = 8,
    name: str | None = None,
) -> keras.Model:
    """Builds the classifier of ``spec`` (its plan at these arguments, `build_network`).

    Input: [batch, image_size, image_size, 3] normalised images. Output: [batch, num_classes]
    float32 logits (also under a mixed-precision policy). ``drop_connect_rate`` is the
    stochastic-depth rate of the last block, scaled linearly from 0 over the block index
    (EfficientNet schedule).
    """
    check_image_size(image_size)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    activation_fn(spec.activation)  # validates the name early
    return build_network(spec.plan(image_size, num_classes, width_multiplier, depth_divisor),
                         dropout_rate=dropout_rate, drop_connect_rate=drop_connect_rate,
                         bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name)


def build_network(plan: NetworkPlan, *, dropout_rate: float = 0.2,
                  drop_connect_rate: float = 0.0, bn_momentum: float = 0.99,
                  bn_epsilon: float = 1e-3, name: str | None = None) -> keras.Model:
    """The Keras classifier of a network plan: stem, one `MBConvBlock` per plan block
    (``block_<i>``), head, classifier. [batch, S, S, 3] -> [batch, classes] float32 logits."""
    conv_init = keras.initializers.get(CONV_INITIALIZER)
    inputs = keras.Input((plan.image_size, plan.image_size, 3), name="images")
    x = inputs
    for layer in stem_layers(plan.stem.out_channels, plan.activation, bn_momentum, bn_epsilon,
                             conv_init):
        x = layer(x)
    for block in plan.blocks:
        x = MBConvBlock.from_plan(
            block, drop_connect_rate=drop_connect_rate * block.index / len(plan.blocks),
            bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=f"block_{block.index}")(x)
    for layer in (*head_layers(plan.head.out_channels, plan.activation, bn_momentum,
                               bn_epsilon, conv_init),
                  *classifier_layers(plan.num_classes, dropout_rate)):
        x = layer(x)
    logits = x
    return keras.Model(inputs, logits, name=name or plan.name)
