"""The search loss: cross-entropy + lambda * cost term, with a cost-free warm-up.

Cost terms (``SearchObjective.cost_loss``), all on ``log(cost)`` so that their gradient is
``d cost / cost``: scale-free, the same for a 1M-MAC toy space and a 400M-MAC ImageNet one.

* ``target`` (default): ``|log(cost / target)|`` -- two-sided, pulls the cost onto the target
  from above and from below.
* ``target_squared``: ``log(cost / target)**2`` -- two-sided, fading near the target.
* ``hinge``: ``max(0, log(cost / target))`` -- only pushes down, never up.
* ``log``: ``log(cost)`` -- Single-Path NAS; ignores the target (trade-off set by lambda alone).
* ``lagrangian`` (default of the search configs): the target as a constraint, by the augmented
  Lagrangian ``m * c + c**2 / 2`` of ``c = log(cost / target)``, whose multiplier ``m`` starts at
  0 and is raised by ``multiplier_rate * c`` at every decision step (lowered below the target).
  The cost term then weighs only as much as it takes to hold the target: the decisions that
  buy the least cross-entropy per MAC go first, and networks near the target compete on the
  cross-entropy (docs/search.md, "Objective").

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

COST_LOSSES = ("lagrangian", "target", "target_squared", "hinge", "log")


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
      multiplier_rate: 'lagrangian' only: the multiplier's step per decision step and unit of
        ``log(cost / target)``.
      settle_step: 'lagrangian' only: from this (0-based) step on, the cost term is the
        'target' form ``|log(cost / target)|`` with lambda ``settle_weight`` and the multiplier
        rests, so that the search ends on the target (None = never).
      settle_weight: lambda of that last phase.
    """

    target_macs: float | None = None
    cost_loss: str = "target"
    cost_weight: float = 1.0
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    target_tolerance: float = 0.0
    discrete_gradient: bool = True
    multiplier_rate: float = 0.02
    settle_step: int | None = None
    settle_weight: float = 5.0
    target_latency_ms: float | None = None

    def __post_init__(self):
        if self.cost_loss not in COST_LOSSES:
            raise ValueError(f"cost_loss={self.cost_loss!r}: expected one of {COST_LOSSES}")
        if self.cost_loss != "log" and not (self.target and self.target > 0):
            raise ValueError(f"cost_loss={self.cost_loss!r} needs a positive target_macs "
                             "(--target_flops) or target_latency_ms (--target_latency_ms); use "
                             "cost_loss='log' to search without a target")
        if min(self.cost_weight, self.warmup_steps, self.multiplier_rate,
               self.settle_weight) < 0:
            raise ValueError("cost_weight, warmup_steps, multiplier_rate and settle_weight must "
                             "be >= 0")

    @property
    def target(self) -> float | None:
        """The cost's target: the latency (ms) when one is set, else the MACs."""
        return self.target_latency_ms if self.target_latency_ms else self.target_macs

    def cost_term(self, macs: tf.Tensor, multiplier: tf.Tensor | float = 0.0,
                  settling: tf.Tensor | float = 0.0) -> tf.Tensor:
        """The cost term (before lambda) of the expected cost (MACs or ms), a float32 scalar.

        ``multiplier``, ``settling`` (0/1): the 'lagrangian' form's current multiplier and
        whether it is in its settling phase (`settling`); the other forms ignore them.
        """
        macs = tf.cast(macs, tf.float32)
        if self.cost_loss == "log":
            return tf.math.log(macs)
        log_ratio = self.log_ratio(macs)
        if self.cost_loss == "lagrangian":
            settling = tf.cast(settling, tf.float32)
            lagrangian = tf.cast(multiplier, tf.float32) * log_ratio + 0.5 * tf.square(log_ratio)
            return (1.0 - settling) * lagrangian + settling * tf.abs(log_ratio)
        if self.cost_loss == "target":
            return tf.abs(log_ratio)
        if self.cost_loss == "target_squared":
            return tf.square(log_ratio)
        return tf.nn.relu(log_ratio)

    def log_ratio(self, macs: tf.Tensor) -> tf.Tensor:
        """``log(cost / target)`` (float32), within the dead zone of ``target_tolerance`` 0."""
        log_ratio = tf.math.log(tf.cast(macs, tf.float32) / self.target)
        if self.target_tolerance > 0:  # a dead zone: no pull within +-tolerance of the target
            band = float(np.log1p(self.target_tolerance))
            log_ratio = tf.sign(log_ratio) * tf.nn.relu(tf.abs(log_ratio) - band)
        return log_ratio

    def settling(self, step: tf.Tensor) -> tf.Tensor:
        """1.0 from ``settle_step`` on ('lagrangian' only), else 0.0 (float32)."""
        if self.cost_loss != "lagrangian" or self.settle_step is None:
            return tf.constant(0.0)
        return tf.cast(tf.cast(step, tf.int64) >= self.settle_step, tf.float32)

    def multiplier_step(self, macs: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        """The 'lagrangian' multiplier's change after a decision step at ``macs`` (float32):
        dual ascent, up while the cost is above the target, down below it; 0 for the other
        forms and while settling."""
        if self.cost_loss != "lagrangian":
            return tf.constant(0.0)
        return ((1.0 - self.settling(step)) * self.multiplier_rate
                * tf.stop_gradient(self.log_ratio(macs)))

    def indicator_cost_term(self, gates: list[tf.Tensor], macs_fn,
                            multiplier: tf.Tensor | float = 0.0,
                            settling: tf.Tensor | float = 0.0) -> tuple[tf.Tensor, tf.Tensor]:
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
          multiplier, settling: see `cost_term`.

        Returns:
          (cost term, expected MACs), float32 scalars.
        """
        if not self.discrete_gradient:
            macs = macs_fn(gates)
            return self.cost_term(macs, multiplier, settling), macs

        @tf.custom_gradient
        def term(*flat):
            with tf.GradientTape() as tape:
                tape.watch(flat)
                macs = macs_fn(list(flat))
            slopes = tape.gradient(macs, flat, unconnected_gradients="zero")
            value = self.cost_term(macs, multiplier, settling)

            def grad(upstream, _unused_macs_upstream=None):
                # Every flip at once, as [num_gates] vectors: a handful of ops whatever the
                # number of decisions (a search space has up to a few hundred).
                on, change = tf.stack(flat), tf.stack(slopes)
                flips = (self.cost_term(macs + (1.0 - on) * change, multiplier, settling)
                         - self.cost_term(macs - on * change, multiplier, settling))
                return tf.unstack(upstream * flips, num=len(flat))

            return (value, tf.stop_gradient(macs)), grad

        return term(*gates)

    def cost_weight_at(self, step: tf.Tensor) -> tf.Tensor:
        """lambda at a (0-based) step: 0 during the warm-up, ``settle_weight`` while settling."""
        on = tf.cast(tf.cast(step, tf.int64) >= self.warmup_steps, tf.float32)
        settling = self.settling(step)
        return on * ((1.0 - settling) * self.cost_weight + settling * self.settle_weight)
