"""Keras layers of autonl_tf: LightNL, the MBConv block, stochastic depth."""

from autonl_tf.layers.lightnl import LightNL, lightnl_aggregate
from autonl_tf.layers.mbconv import MBConvBlock, activation_fn
from autonl_tf.layers.stochastic_depth import StochasticDepth

__all__ = ["LightNL", "MBConvBlock", "StochasticDepth", "activation_fn", "lightnl_aggregate"]
