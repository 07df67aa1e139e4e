"""Losses of the recipe: label-smoothed cross-entropy on integer labels, L2 weight decay.

Plus `NaNAfterStep`, a test hook (``train.debug_nan_at_step``) that makes the loss NaN from a given
step on, to exercise the divergence handling of the driver end to end.
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = [
    "NaNAfterStep",
    "SmoothedSparseCategoricalCrossentropy",
    "apply_l2_weight_decay",
    "l2_penalty",
    "weight_decay_variables",
]

# Variables that get weight decay: convolution / dense kernels. Biases, BN gamma/beta and BN moving
# statistics are excluded (recipe: "L2 weight decay on non-BN weights"; biases excluded too).
_DECAYED_VARIABLE_NAMES = frozenset({"kernel", "depthwise_kernel", "pointwise_kernel"})


@keras.saving.register_keras_serializable(package="autonl_tf")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy of logits against integer labels with label smoothing.

    ``y_true``: [batch] or [batch, 1] integer class ids (0-based). ``y_pred``: [batch, classes]
    logits. The smoothed target is ``(1 - s) * one_hot + s / classes`` (Keras/TF convention).
    Computed in float32 whatever the logits' dtype.
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "sum_over_batch_size",
                 name: str = "smoothed_sparse_categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        logits = tf.cast(y_pred, tf.float32)
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        targets = tf.one_hot(labels, tf.shape(logits)[-1], dtype=tf.float32)
        return keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=self.label_smoothing)

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing)
        return config


def weight_decay_variables(model: keras.Model) -> list:
    """The trainable variables that get L2 weight decay: kernels of conv/dense layers.

    Excludes every variable of a BatchNormalization layer and all biases.
    """
    batch_norm_ids = {id(v) for layer in model._flatten_layers(include_self=False)
                      if isinstance(layer, keras.layers.BatchNormalization)
                      for v in layer.weights}
    return [v for v in model.trainable_variables
            if id(v) not in batch_norm_ids and v.name in _DECAYED_VARIABLE_NAMES]


def l2_penalty(variables, weight_decay: float) -> tf.Tensor:
    """``weight_decay * sum(w^2) / 2`` over ``variables`` (float32): the term that
    `apply_l2_weight_decay` adds through Keras regularizers, for models with their own
    train_step (the search's supernet)."""
    return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])


def apply_l2_weight_decay(model: keras.Model, weight_decay: float) -> int:
    """Adds ``weight_decay * sum(w^2) / 2`` per decayed kernel to ``model.losses``.

    The factor 1/2 follows the TPU reference (``weight_decay * tf.nn.l2_loss(w)``), which is what
    "L2 weight decay 1e-5" meant in the recipe. Implemented as Keras weight regularizers attached
    to the existing variables, so Keras's ``compute_loss`` adds them (and scales them per replica
    under tf.distribute). Returns the number of decayed variables.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if weight_decay == 0:
        return 0
    variables = weight_decay_variables(model)
    for variable in variables:
        variable.regularizer = keras.regularizers.L2(weight_decay / 2.0)
    return len(variables)


@keras.saving.register_keras_serializable(package="autonl_tf")
class NaNAfterStep(keras.losses.Loss):
    """Test hook: ``loss`` as is before 1-based step ``nan_step``, NaN from that step on.

    ``step_counter`` is a callable returning the number of optimizer updates applied so far
    (``optimizer.iterations``), so step k (1-based) sees ``iterations == k - 1``.
    """

    def __init__(self, loss: keras.losses.Loss, nan_step: int, step_counter,
                 name: str = "nan_after_step"):
        super().__init__(reduction=loss.reduction, name=name)
        self.loss = loss
        self.nan_step = int(nan_step)
        self.step_counter = step_counter

    def call(self, y_true, y_pred):
        values = self.loss.call(y_true, y_pred)
        poisoned = tf.cast(self.step_counter(), tf.int64) + 1 >= self.nan_step
        return values + tf.where(poisoned, float("nan"), 0.0)
