"""Hard indicators with a straight-through sigmoid gradient, and nested choice weights.

An indicator is ``1[score > threshold]``: the forward pass uses this exact 0/1 step (so the
supernet computes exactly what the decoded child computes), the backward pass uses the gradient
of ``sigmoid((score - threshold) / temperature)`` (Single-Path NAS). Scores are dimensionless
(about 1 at initialisation, see the ``scores`` of `autonl_tf.search.layers`), thresholds start at 0: every
indicator starts on, i.e. the search starts from the largest child.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

__all__ = ["hard_indicator", "nested_weights"]


def hard_indicator(score: tf.Tensor, threshold: tf.Tensor, temperature: float = 1.0) -> tf.Tensor:
    """``1[score > threshold]`` forward; ``d sigmoid((score - threshold)/temperature)`` backward.

    Args:
      score, threshold: float32 scalars.
      temperature: width of the sigmoid whose gradient the step borrows.

    Returns:
      float32 scalar, exactly 0.0 or 1.0.
    """
    return _step((score - threshold) / temperature)


@tf.custom_gradient
def _step(x):
    # A custom gradient rather than `soft + stop_gradient(hard - soft)`: the forward value must be
    # exactly 0 or 1 whatever the compiler does with that sum.
    def grad(upstream):
        sig = tf.sigmoid(x)
        return upstream * sig * (1.0 - sig)

    return tf.cast(x > 0.0, x.dtype), grad


def nested_weights(gates: Sequence[tf.Tensor | float]) -> list:
    """Weights of n+1 nested choices from n gates, the choice j needing gates 1..j on.

    ``w_j = g_1 ... g_j (1 - g_{j+1})``; with 0/1 gates exactly one weight is 1. Works on tensors
    and Python floats alike. ``nested_weights([]) == [1.0]`` (a fixed choice).
    """
    weights = []
    prefix = 1.0
    for gate in gates:
        weights.append(prefix * (1.0 - gate))
        prefix = prefix * gate
    weights.append(prefix)
    return weights


def cumulative_gates(gates: Sequence[tf.Tensor | float]) -> list:
    """``[g_1, g_1 g_2, ...]``: whether the choice beyond each step is on (nested)."""
    out = []
    prefix = 1.0
    for gate in gates:
        prefix = prefix * gate
        out.append(prefix)
    return out
