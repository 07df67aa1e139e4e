"""Learning-rate schedule of the recipe: linear warm-up, then exponential decay (x0.97 / 2.4 epochs).

Same formula as the Cloud TPU MnasNet/EfficientNet ``build_learning_rate``: the decay is counted
from step 0 (not from the end of the warm-up), and during the warm-up the rate is
``peak * step / warmup_steps``; afterwards ``peak * decay_rate ** floor(step / decay_steps)``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["WarmupExponentialDecay", "scaled_learning_rate"]


def scaled_learning_rate(learning_rate_per_256: float, global_batch_size: int) -> float:
    """Linear scaling rule of the recipe: ``lr = base_lr * global_batch / 256``."""
    return learning_rate_per_256 * global_batch_size / 256.0


@keras.saving.register_keras_serializable(package="autonl_tf")
class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_learning_rate`` then (staircase) exponential decay.

    Args:
      peak_learning_rate: rate reached at the end of the warm-up (already batch-scaled).
      warmup_steps: length of the linear warm-up from 0; 0 disables it.
      decay_steps: steps per decay period (2.4 epochs in the recipe).
      decay_rate: factor per period (0.97).
      staircase: decay in discrete jumps (the recipe) rather than continuously.
      minimum_learning_rate: floor of the decayed rate (0 = none, as in the recipe).
    """

    def __init__(self, peak_learning_rate: float, warmup_steps: int, decay_steps: float,
                 decay_rate: float, staircase: bool = True, minimum_learning_rate: float = 0.0,
                 name: str = "warmup_exponential_decay"):
        super().__init__()
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be > 0, got {decay_steps}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = float(decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)
        self.minimum_learning_rate = float(minimum_learning_rate)
        self.name = name

    def __call__(self, step):
        with tf.name_scope(self.name):
            step = tf.cast(step, tf.float32)
            periods = step / self.decay_steps
            if self.staircase:
                periods = tf.floor(periods)
            decayed = self.peak_learning_rate * tf.pow(self.decay_rate, periods)
            decayed = tf.maximum(decayed, self.minimum_learning_rate)
            if self.warmup_steps == 0:
                return decayed
            warmup = self.peak_learning_rate * step / float(self.warmup_steps)
            return tf.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "minimum_learning_rate": self.minimum_learning_rate,
            "name": self.name,
        }
