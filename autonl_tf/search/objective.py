"""The search loss: cross-entropy + lambda * cost term, with a cost-free warm-up.

Cost terms (``SearchObjective.cost_loss``), all on ``log(cost)`` so that their gradient is
``d cost / cost``: scale-free, the same for a 1M-MAC toy space and a 400M-MAC ImageNet one.

* ``target`` (default): ``|log(cost / target)|`` -- two-sided, pulls the cost onto the target
  from above and from below.
* ``target_squared``: ``log(cost / target)**2`` -- two-sided, fading near the target.
* ``hinge``: ``max(0, log(cost / target))`` -- only pushes down, never up.
* ``log``: ``log(cost)`` -- Single-Path NAS; ignores the target (trade-off set by lambda alone).

``target_tolerance`` adds a dead zone of +-tolerance around the target. ``discrete_gradient``
(default) differentiates the cost term per indicator by the exact effect of flipping it, which is
what makes a short search settle on the target instead of oscillating around it (see
`SearchObjective.indicator_cost_term`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

__all__ = ["COST_LOSSES", "SearchObjective"]

COST_LOSSES = ("target", "target_squared", "hinge", "log")


@dataclasses.dataclass(frozen=True)
class SearchObjective:
    """What the supernet's ``train_step`` minimises.

    Attributes:
      target_macs: the MACs target (required by the target forms, unless target_latency_ms).
      target_latency_ms: a latency target instead (ms); the cost is then the expected latency
        of `autonl_tf.search.latency_cost.LatencyCost`, through the same terms.
      cost_loss: one of `COST_LOSSES`.
      cost_weight: lambda.
      warmup_steps: steps with lambda = 0 (the weights learn before the cost acts).
      label_smoothing: of the cross-entropy.
      weight_decay: L2 coefficient on conv/dense kernels (not on BN, biases or thresholds),
        as ``weight_decay * sum(w**2) / 2`` (the training recipe's convention).
      target_tolerance: relative dead zone around the target (0 = none).
      discrete_gradient: see `indicator_cost_term`.
    """

    target_macs: float | None = None
    cost_loss: str = "target"
    cost_weight: float = 1.0
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    target_tolerance: float = 0.0
    discrete_gradient: bool = True
    target_latency_ms: float | None = None

    def __post_init__(self):
        if self.cost_loss not in COST_LOSSES:
            raise ValueError(f"cost_loss={self.cost_loss!r}: expected one of {COST_LOSSES}")
        if self.cost_loss != "log" and not (self.target and self.target > 0):
            raise ValueError(f"cost_loss={self.cost_loss!r} needs a positive target_macs "
                             "(--target_flops) or target_latency_ms (--target_latency_ms); use "
                             "cost_loss='log' to search without a target")
        if self.cost_weight < 0 or self.warmup_steps < 0:
            raise ValueError("cost_weight and warmup_steps must be >= 0")

    @property
    def target(self) -> float | None:
        """The cost's target: the latency (ms) when one is set, else the MACs."""
        return self.target_latency_ms if self.target_latency_ms else self.target_macs

    def cost_term(self, macs: tf.Tensor) -> tf.Tensor:
        """The cost term (before lambda) of the expected cost (MACs or ms), a float32 scalar."""
        macs = tf.cast(macs, tf.float32)
        if self.cost_loss == "log":
            return tf.math.log(macs)
        log_ratio = tf.math.log(macs / self.target)
        if self.target_tolerance > 0:  # a dead zone: no pull within +-tolerance of the target
            band = float(np.log1p(self.target_tolerance))
            log_ratio = tf.sign(log_ratio) * tf.nn.relu(tf.abs(log_ratio) - band)
        if self.cost_loss == "target":
            return tf.abs(log_ratio)
        if self.cost_loss == "target_squared":
            return tf.square(log_ratio)
        return tf.nn.relu(log_ratio)

    def indicator_cost_term(self, gates: list[tf.Tensor], macs_fn) -> tuple[tf.Tensor, tf.Tensor]:
        """The cost term of ``macs_fn(gates)``, differentiated per indicator by its flip.

        The expected MACs are multilinear in the 0/1 indicators, so ``d = dMACs/dg_j`` is exactly
        what flipping indicator j changes. With ``discrete_gradient`` the gradient of the cost
        term w.r.t. g_j is ``f(MACs with g_j on) - f(MACs with g_j off)`` instead of the chain
        rule's ``f'(MACs) * d``: a flip that would jump over the target (worse than staying) is
        not pushed, which is what lets the search settle on the target instead of oscillating
        around it with its largest decisions. Without it, the plain chain rule.

        Args:
          gates: flat list of float32 0/1 scalars.
          macs_fn: gates -> float32 expected MACs (multilinear).

        Returns:
          (cost term, expected MACs), float32 scalars.
        """
        if not self.discrete_gradient:
            macs = macs_fn(gates)
            return self.cost_term(macs), macs

        @tf.custom_gradient
        def term(*flat):
            with tf.GradientTape() as tape:
                tape.watch(flat)
                macs = macs_fn(list(flat))
            slopes = tape.gradient(macs, flat, unconnected_gradients="zero")
            value = self.cost_term(macs)

            def grad(upstream, _unused_macs_upstream=None):
                # Every flip at once, as [num_gates] vectors: a handful of ops whatever the
                # number of decisions (a search space has up to a few hundred).
                on, change = tf.stack(flat), tf.stack(slopes)
                flips = (self.cost_term(macs + (1.0 - on) * change)
                         - self.cost_term(macs - on * change))
                return tf.unstack(upstream * flips, num=len(flat))

            return (value, tf.stop_gradient(macs)), grad

        return term(*gates)

    def cost_weight_at(self, step: tf.Tensor) -> tf.Tensor:
        """lambda at a (0-based) step: 0 during the warm-up."""
        on = tf.cast(tf.cast(step, tf.int64) >= self.warmup_steps, tf.float32)
        return on * self.cost_weight
