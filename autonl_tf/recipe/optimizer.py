"""RMSProp with the TensorFlow 1 semantics the AutoNL/MnasNet/EfficientNet recipes were tuned with.

``tf.compat.v1.train.RMSPropOptimizer`` (and the fused ``ApplyRMSProp`` kernel it runs) updates

    ms  <- rho * ms + (1 - rho) * g^2                  (ms initialised to 1.0, not 0)
    mom <- momentum * mom + lr * g / sqrt(ms + eps)     (epsilon INSIDE the square root)
    var <- var - mom

Two details matter with the recipe's epsilon of 1e-3:

* epsilon inside the root: with ms ~ g^2 ~ 1e-6 the denominators ``sqrt(ms + eps)`` ~ 0.03 and
  ``sqrt(ms) + eps`` ~ 0.002 differ by >10x. Keras 3.15's ``RMSprop.update_step`` happens to put
  epsilon inside the root too, but that has changed between Keras versions (Keras 2's
  ``optimizers.experimental.RMSprop`` added it outside); this class spells the formula out so the
  recipe does not depend on the installed Keras.
* the mean square starts at 1.0 (TF1's ``rms`` slot uses a ones initialiser), so the first updates
  are ~``lr * g`` rather than ~``lr * g / |g|``: a built-in warm-up the recipe relies on together
  with its 5 warm-up epochs. Configurable (``initial_mean_square``); 1.0 is the TF1 value.

Weight EMA: Keras's ``use_ema``/``ema_momentum``/``ema_overwrite_frequency`` all keep working.
With ``ema_dynamic_decay=True`` (default) the decay follows TF1's
``tf.train.ExponentialMovingAverage(decay, num_updates=step)``: ``min(decay, (1+t)/(10+t))``, so the
average tracks the weights early in training instead of staying near the initial weights for
~1/(1-decay) = 10000 steps (which would make EMA evaluation useless for short runs).
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["TF1RMSprop"]


@keras.saving.register_keras_serializable(package="autonl_tf")
class TF1RMSprop(keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with TF1 epsilon placement, mean-square init and EMA decay.

    Args:
      learning_rate: float or `LearningRateSchedule`.
      rho: mean-square decay (TF1 ``decay``), 0.9 in the recipe.
      momentum: 0.9 in the recipe.
      epsilon: added to the mean square inside the square root (TF1), 1e-3 in the recipe.
      centered: TF1 centered RMSProp (``ms - mg^2 + eps`` under the root).
      initial_mean_square: initial value of the mean-square accumulator (TF1: 1.0).
      ema_dynamic_decay: use ``min(ema_momentum, (1+t)/(10+t))`` as EMA decay at step t (TF1
        ``num_updates`` semantics); False = Keras's constant ``ema_momentum``.
      **kwargs: the usual Keras optimizer arguments (use_ema, ema_momentum,
        ema_overwrite_frequency, clipnorm, loss_scale_factor, ...).
    """

    def __init__(self, learning_rate=0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-3, centered: bool = False,
                 initial_mean_square: float = 1.0, ema_dynamic_decay: bool = True,
                 name: str = "tf1_rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, rho=rho, momentum=momentum,
                         epsilon=epsilon, centered=centered, name=name, **kwargs)
        if initial_mean_square < 0:
            raise ValueError(f"initial_mean_square must be >= 0, got {initial_mean_square}")
        self.initial_mean_square = float(initial_mean_square)
        self.ema_dynamic_decay = bool(ema_dynamic_decay)

    def build(self, var_list):
        if self.built:
            return
        # Skip RMSprop.build (zeros for the mean square); the base class builds EMA slots etc.
        keras.optimizers.Optimizer.build(self, var_list)
        self._velocities = self.add_optimizer_variables(
            var_list, "velocity",
            initializer=keras.initializers.Constant(self.initial_mean_square))
        self._momentums = []
        if self.momentum > 0:
            self._momentums = self.add_optimizer_variables(var_list, "momentum")
        self._average_gradients = []
        if self.centered:
            self._average_gradients = self.add_optimizer_variables(var_list, "average_gradient")

    def update_step(self, gradient, variable, learning_rate):
        """One TF1 ``ApplyRMSProp`` / ``ApplyCenteredRMSProp`` update of ``variable``."""
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        mean_square = self._velocities[index]
        self.assign(mean_square,
                    self.rho * mean_square + (1.0 - self.rho) * ops.square(gradient))
        denominator = mean_square + self.epsilon
        if self.centered:
            mean_grad = self._average_gradients[index]
            self.assign(mean_grad, self.rho * mean_grad + (1.0 - self.rho) * gradient)
            denominator = denominator - ops.square(mean_grad)
        increment = lr * gradient * ops.rsqrt(denominator)
        if self.momentum > 0:
            momentum = self._momentums[index]
            self.assign(momentum, self.momentum * momentum + increment)
            self.assign_sub(variable, momentum)
        else:
            self.assign_sub(variable, increment)

    def ema_decay(self):
        """The EMA decay used by the next update (a scalar tensor); 0 on the first step (copy)."""
        step = ops.cast(self.iterations, "float32")
        decay = ops.convert_to_tensor(self.ema_momentum, "float32")
        if self.ema_dynamic_decay:
            decay = ops.minimum(decay, (1.0 + step) / (10.0 + step))
        # Keras's averages start at zero: the first update copies the weights (as Keras does).
        return ops.where(ops.equal(self.iterations, 0), 0.0, decay)

    def _update_model_variables_moving_average(self, trainable_variables):
        # Same contract as the Keras base method (called after each update when use_ema=True),
        # with the TF1 num_updates decay.
        if not self.use_ema:
            return
        decay = self.ema_decay()
        for var, average in zip(trainable_variables, self._model_variables_moving_average,
                                strict=True):
            if average is None:
                continue
            d = ops.cast(decay, var.dtype)
            average.assign(d * average + (1.0 - d) * var)

    def get_config(self):
        config = super().get_config()
        config.update(initial_mean_square=self.initial_mean_square,
                      ema_dynamic_decay=self.ema_dynamic_decay)
        return config
