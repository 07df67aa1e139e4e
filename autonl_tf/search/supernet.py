"""The supernet: the builder's network with a superkernel block per searchable block.

`Supernet` is a `keras.Model` whose ``train_step`` minimises cross-entropy + lambda * cost term
(`autonl_tf.search.objective`): the network weights with ``self.optimizer``, the indicator
thresholds with ``self.threshold_optimizer`` (compile(..., threshold_optimizer=...)). It runs
under any `tf.distribute` strategy (build and compile it under ``strategy.scope()``).

Layer names follow `autonl_tf.models.build_model` (``stem_conv``, ``block_<i>``, ``head_conv``,
``logits``, ...) so that `autonl_tf.search.decode` can copy weights into the decoded child.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from autonl_tf.layers.mbconv import CONV_INITIALIZER, MBConvBlock
from autonl_tf.models.builder import (
    check_image_size,
    classifier_layers,
    head_layers,
    stem_layers,
)
from autonl_tf.plan import BlockLayer
from autonl_tf.recipe.losses import (
    SmoothedSparseCategoricalCrossentropy,
    l2_penalty,
    weight_decay_variables,
)
from autonl_tf.search.latency_cost import LatencyCost
from autonl_tf.search.layers import SuperMBConvBlock
from autonl_tf.search.objective import SearchObjective
from autonl_tf.search.search_cost import SearchCost
from autonl_tf.search.space import SearchBlock, SearchSpace

__all__ = ["Supernet", "VectorMean", "gate_names"]


def scale_loss_for_distribution(loss: tf.Tensor) -> tf.Tensor:
    """A replica's share of a mean loss: the optimizers sum the gradients over the replicas."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def gate_names(block: SearchBlock) -> list[tuple[str, str, int | None]]:
    """(metric name, gate key, list index) of each indicator of a block, e.g. 'block_03/kernel5'.

    Each name says what the indicator switches on: ``keep``, ``kernel<k>``, ``expand<e>``,
    ``se<r>``, ``lightnl``, ``lightnl_ratio<r>``, ``lightnl_stride<s>``.
    """
    prefix = f"block_{block.index:02d}/"
    names = [(prefix + "keep", "keep", None)] if block.skippable else []
    names += [(prefix + f"kernel{k}", "kernel", j) for j, k in enumerate(block.kernel_sizes[1:])]
    names += [(prefix + f"expand{e}", "expand", j) for j, e in enumerate(block.expand_ratios[1:])]
    names += [(prefix + f"se{r:g}", "se", j) for j, r in enumerate(block.se_ratios[1:])]
    if block.has_lightnl:
        names.append((prefix + "lightnl", "lightnl", None))
        names += [(prefix + f"lightnl_ratio{r:g}", "lightnl_ratio", j)
                  for j, r in enumerate(block.lightnl_ratios[1:])]
        names += [(prefix + f"lightnl_stride{s}", "lightnl_stride", j)
                  for j, s in enumerate(block.lightnl_strides[1:])]
    return names


@keras.saving.register_keras_serializable(package="autonl_tf")
class VectorMean(keras.metrics.Metric):
    """Mean of a [size] vector over the updates since the last reset (per element).

    The supernet keeps the two parts of every threshold's gradient in two of these (see
    `Supernet.threshold_gradient_parts`); the driver resets them at every log line, like the
    other metrics.
    """

    def __init__(self, size: int, name: str = "vector_mean", **kwargs):
        super().__init__(name=name, **kwargs)
        self.size = int(size)
        self.total = self.add_variable(shape=(self.size,), initializer="zeros", name="total",
                                       aggregation="sum")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count",
                                       aggregation="sum")

    def update_state(self, values):
        self.total.assign_add(tf.cast(tf.reshape(values, [self.size]), self.dtype))
        self.count.assign_add(tf.cast(1.0, self.dtype))

    def result(self):
        return self.total / tf.maximum(self.count, 1.0)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _block_layer(block: BlockLayer, temperature: float, score_gradient: bool,
                 bn_momentum: float, bn_epsilon: float) -> MBConvBlock:
    """The supernet's layer of a plan block: a superkernel block where the plan has choices,
    else the block itself (`block_<i>`: the names `autonl_tf.search.decode` copies by)."""
    name = f"block_{block.index}"
    choices = block.choices
    if choices is None:
        return MBConvBlock.from_plan(block, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                                     name=name)
    return SuperMBConvBlock(
        block.in_channels, block.out_channels, kernel_choices=choices.kernel_sizes,
        expand_choices=choices.expand_ratios, strides=block.stride,
        se_choices=choices.se_ratios, skippable=choices.skippable,
        lightnl_ratios=choices.lightnl_ratios, lightnl_strides=choices.lightnl_strides,
        activation=block.activation, temperature=temperature, score_gradient=score_gradient,
        bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, name=name)


class Supernet(keras.Model):
    """All children of a `SearchSpace` in one network. Input [batch, S, S, 3] -> [batch, classes].

    Args:
      space: the unrolled search space.
      num_classes, image_size, width_multiplier, dropout_rate, bn_momentum, bn_epsilon,
        depth_divisor: as `autonl_tf.models.build_model` (the child is built with the same).
      temperature: of the indicators' sigmoid gradient.
      score_gradient: see `SuperMBConvBlock` (default off: thresholds alone move decisions).
      objective: the search loss; None = cross-entropy only (lambda = 0). Its ``warmup_steps``
        also set the weights-only warm-up: no cost term, thresholds frozen, indicators dropped.
      indicator_keep_probability: during the warm-up, each indicator of each block is kept with
        this probability at every step (else it is switched off for that step: a smaller kernel,
        expansion or SE, no LightNL, a skipped block...), so that every sub-choice gets trained
        (Single-Path NAS); 1.0 = the largest child only.
      log_indicators: ``train_step``/``test_step`` logs include every indicator as
        ``indicator/block_<i>/<decision>`` (0/1). The search program turns this off and writes
        them to TensorBoard itself, to keep its console lines short.
      latency_cost: when given, the cost term acts on the table's expected latency (ms,
        `autonl_tf.search.latency_cost`) instead of the expected MACs (the objective's
        ``target_latency_ms``); the logs then also hold ``expected_latency_ms``.
    """

    def __init__(self, space: SearchSpace, *, num_classes: int = 1000, image_size: int = 224,
                 width_multiplier: float = 1.0, dropout_rate: float = 0.2,
                 bn_momentum: float = 0.99, bn_epsilon: float = 1e-3, depth_divisor: int = 8,
                 temperature: float = 1.0, score_gradient: bool = False,
                 objective: SearchObjective | None = None,
                 indicator_keep_probability: float = 1.0, log_indicators: bool = True,
                 latency_cost: LatencyCost | None = None,
                 name: str = "supernet", **kwargs):
        # No autocast in the model's own scope: the indicators are computed here from float32
        # weights, whatever the compute dtype of the blocks.
        kwargs.setdefault("autocast", False)
        super().__init__(name=name, **kwargs)
        check_image_size(image_size)
        self.space = space
        self.num_classes = num_classes
        self.image_size = image_size
        self.width_multiplier = width_multiplier
        self.dropout_rate = dropout_rate
        self.depth_divisor = depth_divisor
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.objective = objective or SearchObjective(cost_loss="log", cost_weight=0.0)
        if not 0.0 < indicator_keep_probability <= 1.0:
            raise ValueError("indicator_keep_probability must be in (0, 1], got "
                             f"{indicator_keep_probability}")
        self.indicator_keep_probability = float(indicator_keep_probability)
        self.log_indicators = log_indicators
        self.score_gradient = bool(score_gradient)
        # The network's plan (its largest child, with the choices of every searchable block):
        # produced once, read by the layers below and by the cost term.
        self.search_cost = SearchCost(space, image_size, num_classes, width_multiplier,
                                      depth_divisor)
        self.plan = self.search_cost.plan
        self.latency_cost = latency_cost
        conv_init = keras.initializers.get(CONV_INITIALIZER)
        self.stem_conv, self.stem_bn, self.stem_activation = stem_layers(
            self.plan.stem.out_channels, self.plan.activation, bn_momentum, bn_epsilon,
            conv_init)
        self.search_blocks = [
            _block_layer(block, temperature, score_gradient, bn_momentum, bn_epsilon)
            for block in self.plan.blocks]
        self.head_conv, self.head_bn, self.head_activation = head_layers(
            self.plan.head.out_channels, self.plan.activation, bn_momentum, bn_epsilon,
            conv_init)
        self.avg_pool, *dropout, self.logits = classifier_layers(num_classes, dropout_rate)
        self.top_dropout = dropout[0] if dropout else None
        # Per-example values: the replica's mean is taken in `search_losses`. (Keras's
        # batch-mean reduction also divides by the number of replicas, which `train_step` does
        # once for the whole loss.)
        self.cross_entropy = SmoothedSparseCategoricalCrossentropy(
            self.objective.label_smoothing, reduction="none")
        self.threshold_optimizer = None
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "cross_entropy", "cost_loss")}
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # The two parts of each threshold's gradient, in `threshold_values` order (one threshold
        # per decision): the cross-entropy's (what the data says about the decision) and the
        # cost term's (lambda * what the decision costs). Logged by the search program.
        self._threshold_gradients = {
            part: VectorMean(space.num_decisions, name=f"threshold_gradient_{part}")
            for part in ("cross_entropy", "cost")}
        # The multiplier of the 'lagrangian' cost term (`SearchObjective`), raised while the
        # expected cost is above the target; checkpointed with the weights.
        self.cost_multiplier = self.add_weight(
            name="cost_multiplier", shape=(), initializer="zeros", dtype="float32",
            trainable=False, autocast=False, aggregation="only_first_replica")
        self.build((None, image_size, image_size, 3))

    # -- construction ----------------------------------------------------------------------------
    def build(self, input_shape):
        plan = self.plan
        self.stem_conv.build((None, plan.image_size, plan.image_size, 3))
        self.stem_bn.build((None, *plan.stem.output_shape))
        for layer, block in zip(self.search_blocks, plan.blocks, strict=True):
            layer.build((None, block.in_size, block.in_size, block.in_channels))
        self.head_conv.build((None, plan.head.in_size, plan.head.in_size,
                              plan.head.in_channels))
        self.head_bn.build((None, *plan.head.output_shape))
        self.logits.build((None, plan.classifier.channels))
        self.built = True

    @property
    def output_shape(self) -> tuple:
        """(None, num_classes): logits, as a functional classifier reports it."""
        return (None, self.num_classes)

    @property
    def searchable_layers(self) -> list[SuperMBConvBlock]:
        return [layer for layer in self.search_blocks if isinstance(layer, SuperMBConvBlock)]

    @property
    def threshold_variables(self) -> list:
        return [t for layer in self.searchable_layers for t in layer.thresholds]

    @property
    def weight_variables(self) -> list:
        """Trainable variables other than the thresholds."""
        thresholds = {id(v) for v in self.threshold_variables}
        return [v for v in self.trainable_variables if id(v) not in thresholds]

    # -- indicators and cost ---------------------------------------------------------------------
    def block_gates(self) -> dict[str, dict]:
        """{block layer name: its 0/1 indicators} for the blocks with decisions."""
        return {layer.name: layer.gates() for layer in self.searchable_layers}

    def _gate_list(self, gates: dict[str, dict]) -> list[dict | None]:
        return [gates.get(layer.name) for layer in self.search_blocks]

    def expected_macs(self, gates: dict[str, dict] | None = None,
                      dtype: tf.DType = tf.float32) -> tf.Tensor:
        """Expected MACs as a differentiable function of the indicators (a `dtype` scalar).

        With float64 the value is the exact integer MAC count of the current child.
        """
        gates = self.block_gates() if gates is None else gates
        cast = lambda g: tf.cast(g, dtype)  # noqa: E731
        converted = [None if g is None else {
            k: ([cast(x) for x in v] if isinstance(v, list) else cast(v)) for k, v in g.items()}
            for g in self._gate_list(gates)]
        return tf.convert_to_tensor(self.search_cost.expected_macs(converted), dtype)

    def expected_latency(self, gates: dict[str, dict] | None = None,
                         dtype: tf.DType = tf.float32) -> tf.Tensor:
        """Expected latency (ms) of the latency table as a differentiable function of the
        indicators; with hard indicators, the table's prediction for the current child."""
        gates = self.block_gates() if gates is None else gates
        cast = lambda g: tf.cast(g, dtype)  # noqa: E731
        converted = [None if g is None else {
            k: ([cast(x) for x in v] if isinstance(v, list) else cast(v)) for k, v in g.items()}
            for g in self._gate_list(gates)]
        return tf.convert_to_tensor(self.latency_cost.expected_latency(converted), dtype)

    def indicator_values(self, gates: dict[str, dict] | None = None) -> dict:
        """{'indicator/block_03/kernel5': 0/1 tensor, ...} for every decision of the space."""
        gates = self.block_gates() if gates is None else gates
        values = {}
        for block, block_gates in zip(self.space.blocks, self._gate_list(gates), strict=True):
            if block_gates is None:
                continue
            for name, key, index in gate_names(block):
                value = block_gates[key] if index is None else block_gates[key][index]
                values["indicator/" + name] = tf.cast(value, tf.float32)
        return values

    def threshold_values(self) -> dict:
        """{'block_03/kernel5': threshold variable, ...}, in `gate_names` order."""
        values = {}
        for layer, block in zip(self.search_blocks, self.space.blocks, strict=True):
            if isinstance(layer, SuperMBConvBlock):
                for (name, _, _), variable in zip(gate_names(block), layer.thresholds,
                                                  strict=True):
                    values[name] = variable
        return values

    # -- forward ---------------------------------------------------------------------------------
    def call(self, images, training=None, gates=None):
        gates = self.block_gates() if gates is None else gates
        x = self.stem_activation(self.stem_bn(self.stem_conv(images), training=training))
        for layer in self.search_blocks:
            if isinstance(layer, SuperMBConvBlock):
                x = layer(x, gates=gates[layer.name], training=training)
            else:
                x = layer(x, training=training)
        x = self.head_activation(self.head_bn(self.head_conv(x), training=training))
        x = self.avg_pool(x)
        if self.top_dropout is not None:
            x = self.top_dropout(x, training=training)
        return self.logits(x)

    # -- training --------------------------------------------------------------------------------
    def compile(self, optimizer="sgd", threshold_optimizer="adam", **kwargs):
        """As `keras.Model.compile`, plus the optimizer of the thresholds (built here)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.threshold_optimizer = keras.optimizers.get(threshold_optimizer)
        # Built now, outside any tf.function, each on its own variables only.
        self.optimizer.build(self.weight_variables)
        self.threshold_optimizer.build(self.threshold_variables)

    @property
    def metrics(self):
        return [*self._trackers.values(), self._accuracy, *self._threshold_gradients.values()]

    def threshold_gradient_parts(self) -> dict[str, tf.Tensor]:
        """{'cross_entropy': [n], 'cost': [n]}: each threshold's gradient parts (in
        `threshold_values` order), averaged over the steps since the metrics were last reset.
        Their sum is what the threshold optimizer receives (zero during the warm-up)."""
        return {part: tracker.result() for part, tracker in self._threshold_gradients.items()}

    def _weight_decay(self) -> tf.Tensor:
        """The recipe's L2 term (`autonl_tf.recipe.losses`), added to the loss by hand: the
        supernet's own train_step does not run Keras's regularizer losses."""
        if self.objective.weight_decay <= 0:
            return tf.constant(0.0)
        return l2_penalty(weight_decay_variables(self), self.objective.weight_decay)

    def _unpack(self, data):
        if isinstance(data, dict):
            return data["images"], data["labels"]
        return data[0], data[1]

    def deciding(self, step=None) -> tf.Tensor:
        """1.0 once the warm-up is over (thresholds train, cost acts), else 0.0 (float32)."""
        step = self.optimizer.iterations if step is None else step
        return tf.cast(tf.cast(step, tf.int64) >= self.objective.warmup_steps, tf.float32)

    def dropped_gates(self, gates: dict[str, dict], keep_probability: float,
                      active: tf.Tensor) -> dict[str, dict]:
        """``gates`` with each decision indicator switched off with probability 1 - keep.

        ``active`` (0/1 float32) turns the dropout on; one draw per indicator per call, shared
        by the batch. Fixed parts ('keep' of a block that cannot be skipped) are left alone.
        """
        if keep_probability >= 1.0:
            return gates

        def drop(gate):
            kept = tf.cast(tf.random.uniform([]) < keep_probability, tf.float32)
            return gate * (1.0 - active * (1.0 - kept))

        dropped = {}
        for layer in self.searchable_layers:
            block_gates = dict(gates[layer.name])
            for key, value in block_gates.items():
                if key == "keep" and not layer.skippable:
                    continue
                if key == "lightnl" and layer.lightnl is None:
                    continue
                block_gates[key] = ([drop(g) for g in value] if isinstance(value, list)
                                    else drop(value))
            dropped[layer.name] = block_gates
        return dropped

    def search_losses(self, images, labels, training: bool = True,
                      forward_gates: dict[str, dict] | None = None,
                      gates: dict[str, dict] | None = None) -> dict:
        """Forward pass and every loss term (float32 scalars), for ``train_step`` and tests.

        ``gates``: the thresholds' indicators (`block_gates`) when the caller has them already.
        ``forward_gates``: the indicators of the forward pass when they differ from the
        thresholds' (the warm-up's dropped indicators); the cost term always uses the latter.
        """
        gates = self.block_gates() if gates is None else gates
        logits = self(images, training=training,
                      gates=gates if forward_gates is None else forward_gates)
        cross_entropy = tf.reduce_mean(self.cross_entropy(labels, logits))
        flat = tf.nest.flatten(gates)
        optimizer = getattr(self, "optimizer", None)
        step = optimizer.iterations if optimizer is not None else 0
        # The cost the objective acts on: MACs, or the latency table's milliseconds.
        cost_fn = self.expected_macs if self.latency_cost is None else self.expected_latency
        cost_loss, cost_value = self.objective.indicator_cost_term(
            flat, lambda g: cost_fn(tf.nest.pack_sequence_as(gates, g)),
            multiplier=tf.stop_gradient(tf.convert_to_tensor(self.cost_multiplier)),
            settling=self.objective.settling(step))
        macs = (cost_value if self.latency_cost is None
                else tf.stop_gradient(self.expected_macs(gates)))
        cost_weight = self.objective.cost_weight_at(step)
        weight_decay = self._weight_decay()
        loss = cross_entropy + cost_weight * cost_loss + weight_decay
        terms = {"loss": loss, "cross_entropy": cross_entropy, "cost_loss": cost_loss,
                 "cost_weight": cost_weight, "weight_decay": weight_decay,
                 "expected_macs": macs, "expected_cost": cost_value, "logits": logits,
                 "gates": gates}
        if self.latency_cost is not None:
            terms["expected_latency_ms"] = cost_value
        return terms

    # No AutoGraph: nothing here branches on tensors, and converting this code costs seconds of
    # tracing (the training driver's tf.function would otherwise convert it).
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        images, labels = self._unpack(data)
        weights, thresholds = self.weight_variables, self.threshold_variables
        deciding = self.deciding()
        # Persistent: the loss's parts are differentiated one by one (below), so that each
        # threshold's cross-entropy part and cost part can be logged; only the cross-entropy
        # goes back through the network, the other parts are small graphs of their own.
        with tf.GradientTape(persistent=True) as tape:
            # The indicators once: the dropped forward ones derive from them (the same values
            # and gradients as computing them twice, half the graph).
            gates = self.block_gates()
            forward = self.dropped_gates(gates, self.indicator_keep_probability, 1.0 - deciding)
            terms = self.search_losses(images, labels, training=True, forward_gates=forward,
                                       gates=gates)
            # Each replica holds 1/num_replicas of the mean; the optimizers sum over replicas.
            scale = lambda term: self.optimizer.scale_loss(  # noqa: E731
                scale_loss_for_distribution(term))
            parts = (scale(terms["cross_entropy"]),
                     scale(terms["cost_weight"] * terms["cost_loss"]),
                     scale(terms["weight_decay"]))
        def gradient(part, variables):  # zeros where a part does not reach a variable
            return [tf.zeros(v.shape, v.dtype) if g is None else g
                    for v, g in zip(variables, tape.gradient(part, variables), strict=True)]

        cross_entropy, cost, decay = parts
        cross_entropy_grads = gradient(cross_entropy, weights + thresholds)
        # The cost term reaches the weights only through the indicator scores (score_gradient);
        # the weight decay never reaches a threshold.
        cost_grads = gradient(cost, (weights if self.score_gradient else []) + thresholds)
        weight_grads = [a + b for a, b in zip(cross_entropy_grads[:len(weights)],
                                              gradient(decay, weights), strict=True)]
        if self.score_gradient:
            weight_grads = [a + b for a, b in zip(weight_grads, cost_grads, strict=True)]
        cross_entropy_grads = cross_entropy_grads[len(weights):]
        cost_grads = cost_grads[-len(thresholds):] if thresholds else []
        self.optimizer.apply_gradients(zip(weight_grads, weights, strict=True))
        # Thresholds are frozen during the warm-up (zero gradient: Adam's moments stay at 0).
        self.threshold_optimizer.apply_gradients(
            zip([deciding * (a + b) for a, b in zip(cross_entropy_grads, cost_grads, strict=True)],
                thresholds, strict=True))
        # Dual ascent of the 'lagrangian' multiplier (every replica computes the same MACs).
        self.cost_multiplier.assign_add(
            deciding * self.objective.multiplier_step(terms["expected_cost"],
                                                      self.optimizer.iterations - 1))
        # Logged as the whole gradient (a replica's share times the number of replicas).
        replicas = float(tf.distribute.get_strategy().num_replicas_in_sync)
        for part, part_grads in (("cross_entropy", cross_entropy_grads), ("cost", cost_grads)):
            self._threshold_gradients[part].update_state(
                replicas * deciding * tf.stack(part_grads))
        return self._logs(terms, labels)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        images, labels = self._unpack(data)[:2]
        terms = self.search_losses(images, labels, training=False)
        return self._logs(terms, labels)

    def _logs(self, terms: dict, labels) -> dict:
        for name, tracker in self._trackers.items():
            tracker.update_state(terms[name])
        self._accuracy.update_state(tf.reshape(labels, [-1]), terms["logits"])
        logs = {m.name: m.result() for m in (*self._trackers.values(), self._accuracy)}
        # The mean size of the two parts of the threshold gradients (0 during the warm-up).
        for part, tracker in self._threshold_gradients.items():
            logs[f"threshold_gradient_{part}"] = tf.reduce_mean(tf.abs(tracker.result()))
        logs["expected_macs"] = terms["expected_macs"]
        if "expected_latency_ms" in terms:
            logs["expected_latency_ms"] = terms["expected_latency_ms"]
        logs["cost_weight"] = terms["cost_weight"]
        if self.objective.cost_loss == "lagrangian":
            logs["cost_multiplier"] = tf.convert_to_tensor(self.cost_multiplier)
        if self.log_indicators:
            logs.update(self.indicator_values(terms["gates"]))
        return logs
