"""LightNL: the lightweight non-local block of AutoNL (Li et al., CVPR 2020).

No theta/phi/g/W_z convolutions: the query is the first ``r*C`` channels of the input, the key the
same channels subsampled by ``s``, the value all channels subsampled by ``s``. The aggregation
``y = q k^T v / (H*W)`` is computed in whichever association order is cheaper
(`autonl_tf.cost.lightnl_orders`), then ``z = x + BN(DepthwiseConv3x3(y))`` with BN gamma
initialised to zero, so a freshly inserted block is the identity.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from autonl_tf import cost

__all__ = ["LightNL", "cheaper_order", "lightnl_aggregate", "qkv_product", "subsample"]


ORDERS = ("auto", "affinity_first", "context_first")


def subsample(x: tf.Tensor, stride: int) -> tf.Tensor:
    """``x[:, ::stride, ::stride, :]`` of a [batch, H, W, C] tensor with static H, W, C.

    Written as pad -> reshape -> stride-1 slice rather than a strided slice: the same values,
    but ops that TFLite's XNNPACK delegate runs in float32 and int8 alike (it rejects strided
    slices with a stride above 1, which would split the graph into delegate partitions).
    """
    if stride == 1:
        return x
    _, height, width, channels = x.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h, pad_w = out_h * stride - height, out_w * stride - width
    if pad_h or pad_w:
        x = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    # [B, H', s, W', s*C]: element (i, a, j, b*C + c) is x[i*s + a, j*s + b, c].
    grouped = tf.reshape(x, [-1, out_h, stride, out_w, stride * channels])
    return tf.reshape(grouped[:, :, :1, :, :channels], [-1, out_h, out_w, channels])


def lightnl_aggregate(x: tf.Tensor, ratio: float, stride: int, order: str = "auto") -> tf.Tensor:
    """The non-local aggregation ``(q k^T) v / (H*W)`` of a LightNL, without conv/BN/residual.

    Args:
      x: [batch, H, W, C] channels-last tensor. H, W and C must be static (they decide the order).
      ratio: channel ratio r of the query/key; ``lightnl_channels(C, r)`` channels are used.
      stride: spatial stride s of the key/value (``x[:, ::s, ::s]``).
      order: 'auto' picks the cheaper association by `autonl_tf.cost.lightnl_orders`;
        'affinity_first' computes ``(q k^T) v``, 'context_first' ``q (k^T v)`` (for tests).

    Returns:
      [batch, H, W, C] tensor of ``x``'s dtype.
    """
    return _aggregate_unscaled(x, ratio, stride, order) * tf.cast(
        1.0 / (x.shape[1] * x.shape[2]), x.dtype)


def _aggregate_unscaled(x: tf.Tensor, ratio: float, stride: int, order: str) -> tf.Tensor:
    """``q k^T v`` (without the 1/(H*W)), [batch, H, W, C], in as few ops as it takes.

    Few ops because each costs a fixed overhead on phones: one flattening of x feeds the query,
    one of the subsampled x the value and, by a channel slice, the key.
    """
    _, height, width, channels = x.shape
    if height is None or width is None or channels is None:
        raise ValueError(
            f"LightNL needs static height, width and channels to pick its multiplication order; "
            f"got input shape {tuple(x.shape)}. Build the model with a fixed image size."
        )
    if order not in ORDERS:
        raise ValueError(f"unknown LightNL order {order!r}; expected one of {ORDERS}")
    rc = cost.lightnl_channels(channels, ratio)
    query = tf.reshape(x, [-1, height * width, channels])[..., :rc]  # [B, HW, rC]
    sub = subsample(x, stride)
    value = tf.reshape(sub, [-1, sub.shape[1] * sub.shape[2], channels])  # [B, HW', C]
    key = value[..., :rc]  # [B, HW', rC]
    if order == "auto":
        order = cheaper_order(height, width, channels, ratio, stride)
    return tf.reshape(qkv_product(query, key, value, order), [-1, height, width, channels])


def cheaper_order(height: int, width: int, channels: int, ratio: float, stride: int) -> str:
    """'affinity_first' or 'context_first', whichever costs fewer MACs (`cost.lightnl_orders`)."""
    affinity_first, context_first = cost.lightnl_orders(height, width, channels, ratio, stride)
    return "affinity_first" if affinity_first < context_first else "context_first"


def qkv_product(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, order: str) -> tf.Tensor:
    """``q k^T v``: query [B, N, rC], key [B, M, rC], value [B, M, C] -> [B, N, C].

    'affinity_first' computes ``(q k^T) v`` through a [B, N, M] affinity, 'context_first'
    ``q (k^T v)`` through a [B, rC, C] context; the same product, different costs. The one
    place both the LightNL layer and the search's superkernel LightNL multiply.
    """
    if order == "affinity_first":
        return tf.einsum("bnm,bmc->bnc", tf.einsum("bnc,bmc->bnm", query, key), value)
    return tf.einsum("bnc,bcd->bnd", query, tf.einsum("bmc,bmd->bcd", key, value))


@keras.saving.register_keras_serializable(package="autonl_tf")
class LightNL(keras.layers.Layer):
    """Lightweight non-local block. Input and output: [batch, H, W, C], channels last.

    Args:
      ratio: fraction of channels used by query and key (0.125, 0.25, ... 1.0).
      stride: key/value spatial stride, 1 or 2.
      bn_momentum, bn_epsilon: BatchNorm settings (TF convention: momentum 0.99).
    """

    def __init__(self, ratio: float = 0.25, stride: int = 1, bn_momentum: float = 0.99,
                 bn_epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"LightNL ratio must be in (0, 1], got {ratio}")
        if stride not in (1, 2):
            raise ValueError(f"LightNL stride must be 1 or 2, got {stride}")
        self.ratio = float(ratio)
        self.stride = int(stride)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.depthwise = keras.layers.DepthwiseConv2D(
            3, padding="same", use_bias=False, depthwise_initializer="he_normal",
            dtype=self.dtype_policy, name="depthwise")
        self.bn = keras.layers.BatchNormalization(
            momentum=bn_momentum, epsilon=bn_epsilon, gamma_initializer="zeros",
            dtype=self.dtype_policy, name="bn")

    def build(self, input_shape):
        self.depthwise.build(input_shape)
        self.bn.build(input_shape)

    def call(self, inputs, training=None):
        # depthwise(y / HW) computed as a depthwise conv of y with the kernel / HW: the same
        # linear map, and the converters fold the kernel scaling into the constant weights, so
        # the graph has no elementwise op for the 1/(H*W).
        y = _aggregate_unscaled(inputs, self.ratio, self.stride, "auto")
        kernel = self.depthwise.kernel * (1.0 / (inputs.shape[1] * inputs.shape[2]))
        y = tf.nn.depthwise_conv2d(y, tf.cast(kernel, y.dtype), strides=[1, 1, 1, 1],
                                   padding="SAME")
        return inputs + self.bn(y, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(ratio=self.ratio, stride=self.stride, bn_momentum=self.bn_momentum,
                      bn_epsilon=self.bn_epsilon)
        return config
