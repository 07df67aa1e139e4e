"""Stochastic depth (drop-path) for residual branches."""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["StochasticDepth"]


@keras.saving.register_keras_serializable(package="autonl_tf")
class StochasticDepth(keras.layers.Layer):
    """Drops a whole residual branch per example with probability `rate` during training.

    Input: the branch output [batch, ...]; kept branches are scaled by 1/(1-rate) so the
    expectation is unchanged and inference is the identity.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"StochasticDepth rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = [tf.shape(inputs)[0]] + [1] * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype)
        mask = tf.floor(keep + noise)
        return inputs * mask / tf.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
