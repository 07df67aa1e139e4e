"""The MBConv block of AutoNL: expand / depthwise / SE / project / optional LightNL / residual.

One implementation serves the retrained networks and the search supernet: the supernet subclasses
`MBConvBlock` and overrides the small ``_expand``/``_depthwise``/... steps to apply its decisions
to the same sublayers, so a searched decision is a frozen choice of this code, not a copy of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from autonl_tf import cost, plan
from autonl_tf.layers.lightnl import LightNL
from autonl_tf.layers.stochastic_depth import StochasticDepth

__all__ = ["ACTIVATIONS", "CONV_INITIALIZER", "MBConvBlock", "activation_fn"]

# EfficientNet's conv initialiser: normal with variance 2/fan_out.
CONV_INITIALIZER = {"class_name": "VarianceScaling",
                    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}

ACTIVATIONS = {"swish": tf.nn.silu, "relu6": tf.nn.relu6, "relu": tf.nn.relu}


def activation_fn(name: str):
    """Activation by name: 'swish', 'relu6' or 'relu'."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def _conv(filters: int, kernel: int, name: str, dtype, strides: int = 1, use_bias: bool = False):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=use_bias,
                               kernel_initializer=keras.initializers.get(CONV_INITIALIZER),
                               dtype=dtype, name=name)


@keras.saving.register_keras_serializable(package="autonl_tf")
class MBConvBlock(keras.layers.Layer):
    """Inverted-bottleneck block. Input [batch, H, W, input_filters] -> [batch, H/s, W/s, output_filters].

    Args:
      input_filters, output_filters: channels in and out (already width-multiplied).
      expand_ratio: expanded channels = input_filters * expand_ratio; 1 skips the expansion conv.
      kernel_sizes: depthwise kernel size(s); several = mixed depthwise conv over channel groups.
      strides: depthwise stride, 1 or 2.
      se_ratio: SE bottleneck = round(input_filters * se_ratio) on the expanded tensor; None = no SE.
      id_skip: use the identity shortcut when strides == 1 and input_filters == output_filters.
      activation: 'swish', 'relu6' or 'relu'.
      expand_kernel, project_kernel: kernel sizes of the 1x1 (by default) convolutions.
      nonlocal_ratio, nonlocal_stride: add a LightNL on the projected tensor (None = no LightNL).
      drop_connect_rate: stochastic-depth rate of the residual branch.
    """

    def __init__(self, input_filters: int, output_filters: int, expand_ratio: int = 1,
                 kernel_sizes: Sequence[int] = (3,), strides: int = 1,
                 se_ratio: float | None = None, id_skip: bool = True, activation: str = "swish",
                 expand_kernel: int = 1, project_kernel: int = 1,
                 nonlocal_ratio: float | None = None, nonlocal_stride: int = 1,
                 drop_connect_rate: float = 0.0, bn_momentum: float = 0.99,
                 bn_epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.input_filters = int(input_filters)
        self.output_filters = int(output_filters)
        self.expand_ratio = int(expand_ratio)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.strides = int(strides)
        self.se_ratio = float(se_ratio) if se_ratio else None
        self.id_skip = bool(id_skip)
        self.activation = activation
        self._act = activation_fn(activation)
        self.expand_kernel = int(expand_kernel)
        self.project_kernel = int(project_kernel)
        self.nonlocal_ratio = float(nonlocal_ratio) if nonlocal_ratio else None
        self.nonlocal_stride = int(nonlocal_stride)
        self.drop_connect_rate = float(drop_connect_rate)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon

        dtype = self.dtype_policy
        bn = lambda name: keras.layers.BatchNormalization(  # noqa: E731
            momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype, name=name)
        self.expanded_filters = self.input_filters * self.expand_ratio
        self.expand_conv = self.expand_bn = None
        if self.expand_ratio != 1:
            self.expand_conv = _conv(self.expanded_filters, self.expand_kernel, "expand_conv", dtype)
            self.expand_bn = bn("expand_bn")
        self.channel_splits = cost.mixed_kernel_channels(self.expanded_filters, len(self.kernel_sizes))
        self.depthwise_convs = [
            keras.layers.DepthwiseConv2D(
                k, strides=self.strides, padding="same", use_bias=False,
                depthwise_initializer=keras.initializers.get(CONV_INITIALIZER), dtype=dtype,
                name=f"depthwise_conv_{i}" if len(self.kernel_sizes) > 1 else "depthwise_conv")
            for i, k in enumerate(self.kernel_sizes)
        ]
        self.depthwise_bn = bn("depthwise_bn")
        self.se_reduce = self.se_expand = None
        if self.se_ratio:
            self.se_filters = cost.se_channels(self.input_filters, self.se_ratio)
            self.se_reduce = _conv(self.se_filters, 1, "se_reduce", dtype, use_bias=True)
            self.se_expand = _conv(self.expanded_filters, 1, "se_expand", dtype, use_bias=True)
        self.project_conv = _conv(self.output_filters, self.project_kernel, "project_conv", dtype)
        self.project_bn = bn("project_bn")
        self.lightnl = None
        if self.nonlocal_ratio:
            self.lightnl = LightNL(self.nonlocal_ratio, self.nonlocal_stride, bn_momentum,
                                   bn_epsilon, dtype=dtype, name="lightnl")
        self.stochastic_depth = None
        if self.has_residual and self.drop_connect_rate > 0:
            self.stochastic_depth = StochasticDepth(self.drop_connect_rate, dtype=dtype,
                                                    name="stochastic_depth")

    @classmethod
    def from_plan(cls, layer: plan.BlockLayer, **kwargs) -> MBConvBlock:
        """The block of a network plan (its block string, width-scaled channels and
        activation); kwargs: drop_connect_rate, bn_momentum, bn_epsilon, name, ..."""
        spec = layer.block
        return cls(layer.in_channels, layer.out_channels, expand_ratio=spec.expand_ratio,
                   kernel_sizes=spec.kernel_sizes, strides=spec.stride, se_ratio=spec.se_ratio,
                   id_skip=spec.id_skip, activation=layer.activation,
                   expand_kernel=spec.expand_kernel, project_kernel=spec.project_kernel,
                   nonlocal_ratio=spec.nonlocal_ratio, nonlocal_stride=spec.nonlocal_stride,
                   **kwargs)

    @property
    def has_residual(self) -> bool:
        return self.id_skip and self.strides == 1 and self.input_filters == self.output_filters

    # -- build: explicit so that a deserialised block has its variables before weights load.
    def build(self, input_shape):
        batch, height, width, _ = input_shape
        shape = (batch, height, width, self.input_filters)
        if self.expand_conv is not None:
            self.expand_conv.build(shape)
            shape = (batch, height, width, self.expanded_filters)
            self.expand_bn.build(shape)
        for conv, channels in zip(self.depthwise_convs, self.channel_splits, strict=True):
            conv.build(shape[:3] + (channels,))
        out_h = None if height is None else plan.same_output_size(height, self.strides)
        out_w = None if width is None else plan.same_output_size(width, self.strides)
        shape = (batch, out_h, out_w, self.expanded_filters)
        self.depthwise_bn.build(shape)
        if self.se_reduce is not None:
            self.se_reduce.build((batch, 1, 1, self.expanded_filters))
            self.se_expand.build((batch, 1, 1, self.se_filters))
        self.project_conv.build(shape)
        shape = (batch, out_h, out_w, self.output_filters)
        self.project_bn.build(shape)
        if self.lightnl is not None:
            self.lightnl.build(shape)

    # -- the steps; the search supernet overrides some of them to apply its decisions.
    def _expand(self, x, training):
        if self.expand_conv is None:
            return x
        return self._act(self.expand_bn(self.expand_conv(x), training=training))

    def _depthwise(self, h, training):
        if len(self.depthwise_convs) == 1:
            h = self.depthwise_convs[0](h)
        else:
            parts = tf.split(h, self.channel_splits, axis=-1)
            h = tf.concat([conv(p) for conv, p in zip(self.depthwise_convs, parts, strict=True)],
                          axis=-1)
        return self._act(self.depthwise_bn(h, training=training))

    def _squeeze_excite(self, h):
        if self.se_reduce is None:
            return h
        s = tf.reduce_mean(h, axis=[1, 2], keepdims=True)
        s = self.se_expand(self._act(self.se_reduce(s)))
        return h * tf.sigmoid(s)

    def _project(self, h, training):
        return self.project_bn(self.project_conv(h), training=training)

    def _nonlocal(self, h, training):
        return h if self.lightnl is None else self.lightnl(h, training=training)

    def _residual(self, x, h, training):
        if not self.has_residual:
            return h
        if self.stochastic_depth is not None:
            h = self.stochastic_depth(h, training=training)
        return x + h

    def call(self, inputs, training=None):
        h = self._expand(inputs, training)
        h = self._depthwise(h, training)
        h = self._squeeze_excite(h)
        h = self._project(h, training)
        h = self._nonlocal(h, training)
        return self._residual(inputs, h, training)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        size = lambda s: None if s is None else plan.same_output_size(s, self.strides)  # noqa: E731
        return (batch, size(height), size(width), self.output_filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_filters=self.input_filters, output_filters=self.output_filters,
            expand_ratio=self.expand_ratio, kernel_sizes=list(self.kernel_sizes),
            strides=self.strides, se_ratio=self.se_ratio, id_skip=self.id_skip,
            activation=self.activation, expand_kernel=self.expand_kernel,
            project_kernel=self.project_kernel, nonlocal_ratio=self.nonlocal_ratio,
            nonlocal_stride=self.nonlocal_stride, drop_connect_rate=self.drop_connect_rate,
            bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        return config
