"""The searchable layers: `MBConvBlock` and `LightNL` with their decisions inside.

`SuperMBConvBlock` is an `MBConvBlock` built at its largest choice (largest kernel, largest
expansion, largest SE) whose steps apply the decisions to the same sublayers:

* kernel: ONE depthwise conv with the largest kernel, whose rings beyond the smallest kernel are
  multiplied by their nested indicators. 'same' padding pads a k x k kernel (k_max - k)/2 less on
  each side than the k_max one, so a zero ring computes exactly the smaller kernel (any stride,
  any size).
* expansion: ONE expansion conv to ``C_in * e_max`` channels; the channels beyond ``C_in * e`` are
  zeroed after the depthwise BN + activation (before it, the BN's beta would leak through). SE
  then sees zeros there (the pooled vector is 0 for them), the SE width ``round(C_in * se)``
  is that of every child, and the projection ignores them.
* SE: ONE bottleneck of the largest SE width; a smaller SE is its first channels (the others are
  zeroed after the activation); with "no SE" among the choices, an indicator blends
  ``h * (1 - g + g * gate)``, exactly ``h`` when off.
* keep: the residual branch (including the LightNL) is multiplied by the keep indicator; a
  dropped block is the identity.

`SearchableLightNL` is a `LightNL` whose insertion, channel ratio and key/value stride are
indicators. Ratio reuse: the query channels beyond the smallest ratio are multiplied by their
indicator, so one product over the largest ratio's channels is the smaller ratio's affinity plus
the next channels' affinity (never recomputed). Stride: the keys/values are weighted per position
by ``w_1 + w_2 * [position on the stride-2 grid]``: one aggregation serves both strides.

Indicator scores (dimensionless, ~1 at initialisation; thresholds start at 0 = all on):

* keep: mean square of the smallest kernel on the smallest expansion's channels,
* kernel ring j: mean square of ring j on the smallest expansion's channels,
* expansion chunk j: mean square of the smallest kernel on chunk j's channels,
* SE step j: mean square of the SE bottleneck channels it adds,

each divided by the mean square of its whole kernel (a normaliser, without gradient), so
thresholds need not know the initialiser's scale. LightNL insertion compares the mean square of
the LightNL's own depthwise kernel (relative to its initial value) with its threshold, as the
paper relaxes it; the ratio and stride indicators compare the constant 1 with their thresholds
(the aggregation has no weights of its own: a threshold is then a plain architecture logit).
Every threshold gets the task loss's gradient once the LightNL's BN gamma has left zero, i.e.
after the search's weights-only warm-up (docs/search.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from autonl_tf import cost
from autonl_tf.layers.lightnl import LightNL, cheaper_order, qkv_product
from autonl_tf.layers.mbconv import MBConvBlock
from autonl_tf.search.indicators import cumulative_gates, hard_indicator, nested_weights

__all__ = ["SearchableLightNL", "SuperMBConvBlock", "choice_aggregate"]

_EPSILON = 1e-12


def _segment_mask(boundaries: Sequence[int], gates: Sequence, dtype) -> tf.Tensor:
    """[boundaries[-1]] vector: 1 up to boundaries[0], then segment j times cumulative gate j."""
    parts = [tf.ones([boundaries[0]], dtype)]
    for start, end, gate in zip(boundaries, boundaries[1:], cumulative_gates(gates),
                                strict=False):
        parts.append(tf.fill([end - start], tf.cast(gate, dtype)))
    return tf.concat(parts, axis=0)


def choice_aggregate(x: tf.Tensor, ratios: Sequence[float], ratio_gates: Sequence,
                     strides: Sequence[int], stride_gates: Sequence) -> tf.Tensor:
    """The LightNL aggregation ``q k^T v / (H*W)`` with the ratio and stride chosen by gates.

    Args:
      x: [batch, H, W, C] with static H, W, C.
      ratios: ascending channel ratios; ``ratio_gates``: len(ratios)-1 nested 0/1 gates.
      strides: key/value strides from the cheapest (2) to the most expensive (1);
        ``stride_gates``: len(strides)-1 nested gates.

    Returns:
      [batch, H, W, C]; with hard gates equal (up to float rounding) to
      `autonl_tf.layers.lightnl_aggregate` at the chosen ratio and stride.
    """
    _, height, width, channels = x.shape
    batch = tf.shape(x)[0]
    counts = [cost.lightnl_channels(channels, r) for r in ratios]
    rc = counts[-1]
    query = tf.reshape(x[..., :rc], [batch, height * width, rc])
    if len(ratios) > 1:
        query = query * _segment_mask(counts, ratio_gates, x.dtype)
    if len(strides) == 1 and strides[0] > 1:  # fixed stride 2: subsample directly
        stride = strides[0]
        sub = x[:, ::stride, ::stride, :]
        num_keys = sub.shape[1] * sub.shape[2]
        key = tf.reshape(sub[..., :rc], [batch, num_keys, rc])
        value = tf.reshape(sub, [batch, num_keys, channels])
    else:
        stride = 1
        key = tf.reshape(x[..., :rc], [batch, height * width, rc])
        value = tf.reshape(x, [batch, height * width, channels])
        if len(strides) > 1:
            weights = nested_weights(stride_gates)
            position = 0.0
            for s, w in zip(strides, weights, strict=True):
                grid = np.zeros((height, width), np.float32)
                grid[::s, ::s] = 1.0
                position = position + tf.cast(w, x.dtype) * tf.constant(
                    grid.reshape(-1), x.dtype)
            value = value * position[None, :, None]
    # The supernet computes its most expensive configuration; it takes that one's cheaper order.
    order = cheaper_order(height, width, channels, ratios[-1], stride)
    y = qkv_product(query, key, value, order) * tf.cast(1.0 / (height * width), x.dtype)
    return tf.reshape(y, [batch, height, width, channels])


def _threshold(layer: keras.layers.Layer, name: str):
    # float32 and never autocast: the hard decision must not depend on the compute dtype.
    return layer.add_weight(name=name, shape=(), initializer="zeros", dtype="float32",
                            trainable=True, autocast=False)


@keras.saving.register_keras_serializable(package="autonl_tf")
class SearchableLightNL(LightNL):
    """A LightNL candidate: insert or not, channel ratio and key/value stride are indicators.

    Input and output: [batch, H, W, C]. ``ratios`` ascending, ``strides`` from 2 to 1.
    """

    def __init__(self, ratios: Sequence[float] = (0.125, 0.25), strides: Sequence[int] = (2, 1),
                 temperature: float = 1.0, score_gradient: bool = False,
                 bn_momentum: float = 0.99, bn_epsilon: float = 1e-3, **kwargs):
        super().__init__(ratio=max(ratios), stride=min(strides), bn_momentum=bn_momentum,
                         bn_epsilon=bn_epsilon, **kwargs)
        self.ratios = tuple(float(r) for r in ratios)
        self.strides = tuple(int(s) for s in strides)
        self.temperature = float(temperature)
        self.score_gradient = bool(score_gradient)

    def build(self, input_shape):
        super().build(input_shape)
        self.threshold_insert = _threshold(self, "threshold_insert")
        self.threshold_ratio = [_threshold(self, f"threshold_ratio_{j}")
                                for j in range(len(self.ratios) - 1)]
        self.threshold_stride = [_threshold(self, f"threshold_stride_{j}")
                                 for j in range(len(self.strides) - 1)]

    @property
    def thresholds(self) -> list:
        return [self.threshold_insert, *self.threshold_ratio, *self.threshold_stride]

    def scores(self) -> dict:
        """Dimensionless float32 scores {'lightnl': s, 'lightnl_ratio': [..], 'lightnl_stride': [..]}.

        Insertion compares the mean square of the block's own depthwise kernel W_d (relative to
        its He-normal initial value 2 / (9 C), so about 1 at initialisation) with its threshold,
        as the paper does. The compactness choices have no weights of their own: their scores
        are the constant 1, i.e. ``1 - t`` acts as a logit moved by the task loss and the cost
        through the straight-through gradient.
        """
        kernel = tf.cast(tf.convert_to_tensor(self.depthwise.kernel), tf.float32)
        mean_square = tf.reduce_mean(tf.square(kernel))
        if not self.score_gradient:
            mean_square = tf.stop_gradient(mean_square)
        channels = int(self.depthwise.kernel.shape[2])
        one = tf.constant(1.0)
        return {"lightnl": mean_square / (2.0 / (9.0 * channels)),
                "lightnl_ratio": [one] * len(self.threshold_ratio),
                "lightnl_stride": [one] * len(self.threshold_stride)}

    def gates(self) -> dict:
        """{'lightnl': insert, 'lightnl_ratio': [...], 'lightnl_stride': [...]}, 0/1 float32."""
        scores = self.scores()
        ind = lambda s, t: hard_indicator(s, tf.convert_to_tensor(t), self.temperature)  # noqa: E731
        return {"lightnl": ind(scores["lightnl"], self.threshold_insert),
                "lightnl_ratio": [ind(s, t) for s, t in zip(scores["lightnl_ratio"],
                                                            self.threshold_ratio, strict=True)],
                "lightnl_stride": [ind(s, t) for s, t in zip(scores["lightnl_stride"],
                                                             self.threshold_stride, strict=True)]}

    def call(self, inputs, gates=None, training=None):
        gates = self.gates() if gates is None else gates
        y = choice_aggregate(inputs, self.ratios, gates["lightnl_ratio"], self.strides,
                             gates["lightnl_stride"])
        insert = tf.cast(gates["lightnl"], inputs.dtype)
        return inputs + insert * self.bn(self.depthwise(y), training=training)

    def get_config(self):
        config = super().get_config()
        for key in ("ratio", "stride"):
            config.pop(key)
        config.update(ratios=list(self.ratios), strides=list(self.strides),
                      temperature=self.temperature, score_gradient=self.score_gradient)
        return config


@keras.saving.register_keras_serializable(package="autonl_tf")
class SuperMBConvBlock(MBConvBlock):
    """An MBConv superkernel block. Input [batch, H, W, input_filters] -> [batch, H/s, W/s, out].

    Args:
      kernel_choices: ascending depthwise kernel sizes (one entry = fixed).
      expand_choices: ascending expansion ratios (one entry = fixed).
      skippable: the block may be dropped (needs the identity shortcut).
      lightnl_ratios / lightnl_strides: LightNL candidate choices (empty ratios = none).
      temperature: of the indicators' sigmoid gradient.
      score_gradient: let the loss reach the depthwise weights through the indicator scores
        (Single-Path NAS). Off by default: a BN follows the depthwise conv, so the weights'
        norms can be rescaled without changing what the block computes; through them the cost
        term would move decisions at no cross-entropy cost and shrink the weights of dropped
        parts until they can never return. Off, decisions move through their thresholds only.
      The other arguments are `MBConvBlock`'s.
    """

    def __init__(self, input_filters: int, output_filters: int,
                 kernel_choices: Sequence[int] = (3, 5), expand_choices: Sequence[int] = (3, 6),
                 strides: int = 1, se_choices: Sequence[float | None] = (None,),
                 skippable: bool = False,
                 lightnl_ratios: Sequence[float] = (), lightnl_strides: Sequence[int] = (2, 1),
                 activation: str = "swish", temperature: float = 1.0,
                 score_gradient: bool = False, bn_momentum: float = 0.99,
                 bn_epsilon: float = 1e-3, **kwargs):
        for key in ("expand_ratio", "kernel_sizes", "se_ratio"):
            kwargs.pop(key, None)
        se_choices = tuple(float(r) if r else None for r in se_choices)
        super().__init__(input_filters, output_filters, expand_ratio=max(expand_choices),
                         kernel_sizes=(max(kernel_choices),), strides=strides,
                         se_ratio=se_choices[-1], id_skip=True, activation=activation,
                         bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, **kwargs)
        self.kernel_choices = tuple(int(k) for k in kernel_choices)
        self.expand_choices = tuple(int(e) for e in expand_choices)
        self.se_choices = se_choices
        # SE bottleneck channels of each SE choice (a smaller SE is the first channels).
        self._se_bounds = [cost.se_channels(self.input_filters, r) for r in se_choices if r]
        self.skippable = bool(skippable)
        if self.skippable and not self.has_residual:
            raise ValueError("only a block with an identity shortcut (stride 1, input_filters == "
                             "output_filters) can be skipped")
        self.lightnl_ratios = tuple(float(r) for r in lightnl_ratios)
        self.lightnl_strides = tuple(int(s) for s in lightnl_strides) if lightnl_ratios else ()
        self.temperature = float(temperature)
        self.score_gradient = bool(score_gradient)
        if self.lightnl_ratios:
            self.lightnl = SearchableLightNL(self.lightnl_ratios, self.lightnl_strides,
                                             temperature, score_gradient, bn_momentum,
                                             bn_epsilon, dtype=self.dtype_policy, name="lightnl")
        # Constant masks: centred windows of each kernel size inside the largest kernel, and the
        # channel boundaries of each expansion.
        k_max = self.kernel_choices[-1]
        self._windows = []
        for k in self.kernel_choices:
            window = np.zeros((k_max, k_max), np.float32)
            pad = (k_max - k) // 2
            window[pad:pad + k, pad:pad + k] = 1.0
            self._windows.append(window)
        self._channel_bounds = [self.input_filters * e for e in self.expand_choices]
        object.__setattr__(self, "_active_gates", None)

    def build(self, input_shape):
        super().build(input_shape)
        self.threshold_keep = _threshold(self, "threshold_keep") if self.skippable else None
        self.threshold_kernel = [_threshold(self, f"threshold_kernel_{j}")
                                 for j in range(len(self.kernel_choices) - 1)]
        self.threshold_expand = [_threshold(self, f"threshold_expand_{j}")
                                 for j in range(len(self.expand_choices) - 1)]
        self.threshold_se = [_threshold(self, f"threshold_se_{j}")
                             for j in range(len(self.se_choices) - 1)]

    @property
    def thresholds(self) -> list:
        """In `autonl_tf.search.supernet.gate_names` order: keep, kernel, expand, SE, LightNL."""
        own = [self.threshold_keep] if self.skippable else []
        own += [*self.threshold_kernel, *self.threshold_expand, *self.threshold_se]
        return own + (self.lightnl.thresholds if self.lightnl is not None else [])

    # -- indicators -----------------------------------------------------------------------------
    def scores(self) -> dict:
        """Dimensionless float32 scores of every indicator, keyed like `gates` (about 1 at
        initialisation): mean squares of the weight parts each indicator switches on, relative to
        their whole (Single-Path NAS); SE from the SE bottleneck's kernel; LightNL from
        `SearchableLightNL.scores`."""
        kernel = tf.convert_to_tensor(self.depthwise_convs[0].kernel)
        squares = tf.square(tf.cast(kernel, tf.float32))[..., 0]  # [k_max, k_max, C_exp]
        if not self.score_gradient:
            squares = tf.stop_gradient(squares)
        reference = tf.stop_gradient(tf.reduce_mean(squares)) + _EPSILON

        def mean_square(window: np.ndarray, start: int, end: int) -> tf.Tensor:
            part = tf.reduce_sum(squares[:, :, start:end] * window[:, :, None])
            return part / float(window.sum() * (end - start)) / reference

        first = self._channel_bounds[0]
        scores = {
            "keep": mean_square(self._windows[0], 0, first),
            "kernel": [mean_square(outer - inner, 0, first)
                       for inner, outer in zip(self._windows, self._windows[1:], strict=False)],
            "expand": [mean_square(self._windows[0], start, end)
                       for start, end in zip(self._channel_bounds, self._channel_bounds[1:],
                                             strict=False)],
            "se": self._se_scores(),
        }
        if self.lightnl is not None:
            scores.update(self.lightnl.scores())
        return scores

    def _se_scores(self) -> list:
        """Per SE gate: mean square of the bottleneck channels it switches on, relative to all."""
        if len(self.se_choices) < 2:
            return []
        squares = tf.square(tf.cast(tf.convert_to_tensor(self.se_reduce.kernel), tf.float32))
        squares = tf.reduce_mean(squares, axis=[0, 1, 2])  # [SE channels]
        if not self.score_gradient:
            squares = tf.stop_gradient(squares)
        reference = tf.stop_gradient(tf.reduce_mean(squares)) + _EPSILON
        starts = ([0] if self.se_choices[0] is None else []) + self._se_bounds
        return [tf.reduce_mean(squares[start:end]) / reference
                for start, end in zip(starts, starts[1:], strict=False)]

    def gates(self) -> dict:
        """The block's 0/1 indicators (see `autonl_tf.search.search_cost.BlockGates`), float32."""
        scores = self.scores()
        ind = lambda s, t: hard_indicator(s, tf.convert_to_tensor(t), self.temperature)  # noqa: E731
        gates = {
            "keep": (ind(scores["keep"], self.threshold_keep) if self.skippable
                     else tf.constant(1.0)),
            "kernel": [ind(s, t) for s, t in zip(scores["kernel"], self.threshold_kernel,
                                                 strict=True)],
            "expand": [ind(s, t) for s, t in zip(scores["expand"], self.threshold_expand,
                                                 strict=True)],
            "se": [ind(s, t) for s, t in zip(scores["se"], self.threshold_se, strict=True)],
        }
        if self.lightnl is not None:
            gates.update(self.lightnl.gates())
        else:
            gates.update(lightnl=tf.constant(0.0), lightnl_ratio=[], lightnl_stride=[])
        return gates

    # -- the MBConvBlock steps, with the decisions applied --------------------------------------
    def call(self, inputs, gates=None, training=None):
        object.__setattr__(self, "_active_gates", self.gates() if gates is None else gates)
        try:
            return super().call(inputs, training=training)
        finally:
            object.__setattr__(self, "_active_gates", None)

    def _depthwise(self, h, training):
        gates = self._active_gates
        conv = self.depthwise_convs[0]
        kernel = tf.cast(conv.kernel, h.dtype)
        if len(self.kernel_choices) > 1:
            window = tf.constant(self._windows[0], h.dtype)
            for inner, outer, gate in zip(self._windows, self._windows[1:],
                                          cumulative_gates(gates["kernel"]), strict=False):
                window = window + tf.cast(gate, h.dtype) * tf.constant(outer - inner, h.dtype)
            kernel = kernel * window[:, :, None, None]
        h = tf.nn.depthwise_conv2d(h, kernel, [1, self.strides, self.strides, 1], "SAME")
        h = self._act(self.depthwise_bn(h, training=training))
        if len(self.expand_choices) > 1:
            h = h * _segment_mask(self._channel_bounds, gates["expand"], h.dtype)
        return h

    def _squeeze_excite(self, h):
        if self.se_reduce is None or len(self.se_choices) < 2:
            return super()._squeeze_excite(h)
        gates = [tf.cast(g, h.dtype) for g in self._active_gates["se"]]
        optional = self.se_choices[0] is None  # the first gate switches SE on at all
        extend = gates[1:] if optional else gates
        s = tf.reduce_mean(h, axis=[1, 2], keepdims=True)
        # Bottleneck channels beyond the chosen SE width are zeroed after the activation
        # (act(x) * 0 = 0), so the expand conv sees exactly the smaller SE's channels.
        s = self._act(self.se_reduce(s)) * _segment_mask(self._se_bounds, extend, h.dtype)
        gate = tf.sigmoid(self.se_expand(s))
        if not optional:
            return h * gate
        on = gates[0]
        return h * (1.0 - on + on * gate)  # exactly h when SE is off

    def _nonlocal(self, h, training):
        if self.lightnl is None:
            return h
        return self.lightnl(h, gates=self._active_gates, training=training)

    def _residual(self, x, h, training):
        if self.skippable:
            h = tf.cast(self._active_gates["keep"], h.dtype) * h
        return super()._residual(x, h, training)

    def get_config(self):
        config = super().get_config()
        for key in ("expand_ratio", "kernel_sizes", "id_skip", "nonlocal_ratio",
                    "nonlocal_stride", "se_ratio"):
            config.pop(key, None)
        config.update(kernel_choices=list(self.kernel_choices),
                      expand_choices=list(self.expand_choices),
                      se_choices=list(self.se_choices), skippable=self.skippable,
                      lightnl_ratios=list(self.lightnl_ratios),
                      lightnl_strides=list(self.lightnl_strides), temperature=self.temperature,
                      score_gradient=self.score_gradient)
        return config
