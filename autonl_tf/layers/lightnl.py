"""LightNL: the lightweight non-local block of AutoNL (brief section 1).

No theta/phi/g/W_z convolutions: the query is the first ``r*C`` channels of the input, the key the
same channels subsampled by ``s``, the value all channels subsampled by ``s``. The aggregation
``y = q k^T v / (H*W)`` is computed in whichever association order is cheaper
(`autonl_tf.cost.lightnl_orders`), then ``z = x + BN(DepthwiseConv3x3(y))`` with BN gamma
initialised to zero, so a freshly inserted block is the identity.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import keras
import tensorflow as tf

from autonl_tf import cost

__all__ = ["LightNL", "broadcast_products", "lightnl_aggregate", "subsample"]


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


_BROADCAST_PRODUCTS = contextvars.ContextVar("lightnl_broadcast_products", default=False)


@contextlib.contextmanager
def broadcast_products(enabled: bool = True) -> Iterator[None]:
    """Within this context LightNL builds its two products as broadcast MUL + SUM.

    Same values as the default batch matmuls (einsum), but the ops XNNPACK runs in full-integer
    int8 (it takes no int8 matmul of two activations). The TFLite export traces int8 models
    inside it; training keeps the batch matmuls, which do not materialise the [.., K, ..]
    product tensor.
    """
    token = _BROADCAST_PRODUCTS.set(enabled)
    try:
        yield
    finally:
        _BROADCAST_PRODUCTS.reset(token)


def _product(equation: str, layout: str, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``tf.einsum(equation, a, b)`` for a product of two activations with one summed axis.

    ``layout`` orders all axes of the equation so that both operands and the output are
    subsequences of it (e.g. 'bnc,bmc->bnm' in 'bnmc'): under `broadcast_products` each operand
    is reshaped into that layout (size-1 axes where it has none), multiplied with broadcasting
    and summed over the one axis missing from the output, with no transposes.
    """
    if not _BROADCAST_PRODUCTS.get():
        return tf.einsum(equation, a, b)
    inputs, output = equation.split("->")
    (summed,) = set(layout) - set(output)

    def expand(t: tf.Tensor, axes: str) -> tf.Tensor:
        sizes = dict(zip(axes, t.shape, strict=True))
        return tf.reshape(t, [-1] + [sizes.get(axis, 1) for axis in layout[1:]])

    a_axes, b_axes = inputs.split(",")
    return tf.reduce_sum(expand(a, a_axes) * expand(b, b_axes), axis=layout.index(summed))


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

    The 1/(H*W) is split over the two products so that every intermediate stays at the scale of
    the activations (what full-integer int8 quantises well): the first product is averaged over
    its summed axis (1/rC for the affinity, 1/HW' for the context), the second gets the rest.
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
    num_queries = height * width
    sub = subsample(x, stride)
    num_keys = sub.shape[1] * sub.shape[2]
    query = tf.reshape(x[..., :rc], [-1, num_queries, rc])
    key = tf.reshape(sub[..., :rc], [-1, num_keys, rc])
    value = tf.reshape(sub, [-1, num_keys, channels])
    if order == "auto":
        affinity_first, context_first = cost.lightnl_orders(height, width, channels, ratio, stride)
        order = "affinity_first" if affinity_first < context_first else "context_first"
    if order == "affinity_first":
        # [B, HW, HW'] = q k^T / rC, then [B, HW, C] = affinity v * rC / HW.
        affinity = _product("bnc,bmc->bnm", "bnmc", query, key * (1.0 / rc))
        y = _product("bnm,bmc->bnc", "bnmc", affinity * (rc / num_queries), value)
    else:
        # [B, rC, C] = k^T v / HW', then [B, HW, C] = q context * HW' / HW.
        context = _product("bmc,bmd->bcd", "bmcd", key * (1.0 / num_keys), value)
        y = _product("bnc,bcd->bnd", "bncd", query, context * (num_keys / num_queries))
    return tf.reshape(y, [-1, height, width, channels])


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
        y = lightnl_aggregate(inputs, self.ratio, self.stride)
        return inputs + self.bn(self.depthwise(y), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(ratio=self.ratio, stride=self.stride, bn_momentum=self.bn_momentum,
                      bn_epsilon=self.bn_epsilon)
        return config
