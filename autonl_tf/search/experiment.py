"""The search as an experiment task: config -> supernet -> training driver -> arch.txt.

`SearchTask` plugs the search into the one experiment runner
(`autonl_tf.runner.experiment.run_experiment`, the same checkpoints, resumption, NaN guard,
TensorBoard and progress as train_main.py): it resolves and validates the search config (the
space and the target), builds and compiles the supernet, evaluates its current child on held-out
images (`heldout_evaluator`) and records the search (`SearchRecorder`): at every checkpoint and
evaluation (and so at the end) the chief writes arch.txt, search_summary.json,
search_history.json and search.png into the model dir. `search_experiment` runs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from autonl_tf import errors, files
from autonl_tf.models import check_image_size
from autonl_tf.recipe import recipe
from autonl_tf.runner import driver, experiment
from autonl_tf.runner.config import ConfigError, require
from autonl_tf.search import report
from autonl_tf.search.decode import current_decisions
from autonl_tf.search.latency_cost import LatencyCost, LatencyTable
from autonl_tf.search.objective import COST_LOSSES, SearchObjective
from autonl_tf.search.search_cost import SearchCost
from autonl_tf.search.space import SearchSpace, space_from_config
from autonl_tf.search.supernet import Supernet

__all__ = ["SearchRecorder", "SearchTask", "SupernetNotLearningError", "build_supernet",
           "compile_supernet", "resolve_search_config", "search_experiment"]

THRESHOLD_OPTIMIZERS = ("adam", "sgd", "rmsprop")


class SupernetNotLearningError(errors.NotLearning):
    """The supernet's held-out top-1 at the end of the warm-up is not clearly above chance: the
    decisions would be made by the cost term alone (exit 4, no arch.txt)."""


def _validate_search_section(search: ml_collections.ConfigDict) -> None:
    require(0.0 < search.indicator_keep_probability <= 1.0,
             "search.indicator_keep_probability must be in (0, 1]")
    require(search.bn_recalibration_steps >= 0, "search.bn_recalibration_steps must be >= 0")
    require(search.cost_loss in COST_LOSSES,
             f"search.cost_loss={search.cost_loss!r}: expected one of {COST_LOSSES}")
    require(search.cost_weight >= 0, "search.cost_weight (lambda) must be >= 0")
    require(0.0 <= search.warmup_fraction < 1.0, "search.warmup_fraction must be in [0, 1)")
    require(search.target_tolerance >= 0, "search.target_tolerance must be >= 0")
    require(search.multiplier_rate >= 0, "search.multiplier_rate must be >= 0")
    require(0.0 <= search.settle_fraction <= 1.0, "search.settle_fraction must be in [0, 1]")
    require(search.settle_weight >= 0, "search.settle_weight must be >= 0")
    require(search.min_heldout_top1_vs_chance >= 0,
            "search.min_heldout_top1_vs_chance must be >= 0")
    require(search.temperature > 0, "search.temperature must be > 0")
    require(search.threshold_optimizer in THRESHOLD_OPTIMIZERS,
             f"search.threshold_optimizer={search.threshold_optimizer!r}: expected one of "
             f"{THRESHOLD_OPTIMIZERS}")
    require(search.threshold_learning_rate > 0, "search.threshold_learning_rate must be > 0")
    latency_ms = target_latency_ms(search)
    require(latency_ms >= 0, "search.target_latency_ms must be >= 0 (0 = a MACs target)")
    require(not latency_ms or search.get("latency_table"),
            "search.target_latency_ms needs a latency table: --latency_table=<table.json> "
            "(search.latency_table; build one with python -m autonl_tf.latency.build_table, "
            "docs/latency.md)")
    require(search.cost_loss == "log" or latency_ms > 0
            or (search.target_flops and search.target_flops > 0),
            f"search.cost_loss={search.cost_loss!r} needs a positive search.target_flops "
            "(--target_flops) or search.target_latency_ms (--target_latency_ms)")


def target_latency_ms(search: ml_collections.ConfigDict) -> float:
    """The search section's latency target in ms (0: none, the search aims at MACs)."""
    return float(search.get("target_latency_ms") or 0.0)


def latency_cost(config: ml_collections.ConfigDict, space: SearchSpace) -> LatencyCost | None:
    """The latency table's cost for the config's size/width/classes, None without a latency
    target.

    Raises:
      LatencyTableError: an unreadable table, or one built for another space / image size /
        width / class count / mode (one line naming the difference).
    """
    search = config.search
    if not target_latency_ms(search):
        return None
    return LatencyCost(space, LatencyTable.load(str(search.latency_table)),
                       int(config.data.image_size), int(config.data.num_classes),
                       float(config.model.width_multiplier),
                       mode=str(search.get("latency_mode") or "") or None)


def _check_target(space: SearchSpace, config: ml_collections.ConfigDict,
                  early: bool = False) -> tuple[int, int]:
    """The feasible MACs range at the config's size/width/classes; TargetError if the target
    (MACs, or latency with a latency table) is out. ``early``: before the data is prepared (the
    class count may still change): a latency table is only read, not matched."""
    try:
        check_image_size(config.data.image_size)
    except ValueError as e:
        raise ConfigError(f"data.image_size: {e}") from None
    cost = SearchCost(space, int(config.data.image_size), int(config.data.num_classes),
                      float(config.model.width_multiplier))
    if early and target_latency_ms(config.search):
        LatencyTable.load(str(config.search.latency_table))
        return cost.feasible_range()
    latency = latency_cost(config, space)
    if latency is not None:
        if config.search.cost_loss != "log":
            latency.check_target(target_latency_ms(config.search))
    elif config.search.cost_loss != "log":
        cost.check_target(float(config.search.target_flops))
    return cost.feasible_range()


def resolve_search_config(config: ml_collections.ConfigDict
                          ) -> tuple[ml_collections.ConfigDict, SearchSpace]:
    """Validated, resolved copy of a search config, and its unrolled space.

    Raises:
      SearchSpaceError: a malformed ``search_space`` (the message names the key).
      TargetError: ``search.target_flops`` outside the feasible range (printed).
      ConfigError / DataError: as `autonl_tf.recipe.recipe.resolve_experiment`.
    """
    space = space_from_config(config.search_space)
    _validate_search_section(config.search)
    if config.search.cost_loss != "log" or target_latency_ms(config.search):
        _check_target(space, config, early=True)  # before the data is prepared
    resolved = recipe.resolve_experiment(config)
    resolved.model.name = "supernet"
    # Again with the prepared data (a TFDS dataset brings its own number of classes).
    low, high = _check_target(space, resolved)
    resolved.search.feasible_range = [int(low), int(high)]
    latency = latency_cost(resolved, space)
    if latency is not None:
        resolved.search.feasible_latency_range_ms = list(latency.feasible_range())
    train = resolved.train
    resolved.eval.every_steps = int(resolved.eval.every_steps or train.checkpoint_every_steps
                                    or train.total_steps)
    resolved.search.warmup_steps = warmup_steps(float(resolved.search.warmup_fraction),
                                                int(train.total_steps),
                                                int(resolved.eval.every_steps))
    resolved.search.settle_steps = settle_steps(float(resolved.search.settle_fraction),
                                                int(resolved.search.warmup_steps),
                                                int(train.total_steps))
    return resolved, space


def warmup_steps(fraction: float, total_steps: int, eval_every: int) -> int:
    """The warm-up length: ``fraction`` of the steps, rounded to a multiple of the held-out
    evaluation period (when it fits) so that the end of the warm-up is evaluated."""
    steps = int(round(fraction * total_steps))
    if 0 < eval_every < total_steps and steps > 0:
        steps = max(eval_every, int(round(steps / eval_every)) * eval_every)
    return min(steps, max(0, total_steps - 1))


def settle_steps(fraction: float, warmup: int, total_steps: int) -> int:
    """The first step of the settling phase: the last ``fraction`` of the decision phase."""
    return warmup + int(round((1.0 - fraction) * (total_steps - warmup)))


def build_supernet(resolved: ml_collections.ConfigDict, space: SearchSpace,
                   dtype_policy: str | None = None) -> Supernet:
    """The supernet of a resolved search config (build it under ``strategy.scope()``)."""
    search = resolved.search
    latency = latency_cost(resolved, space)
    objective = SearchObjective(
        target_macs=float(search.target_flops) if search.target_flops and latency is None
        else None,
        target_latency_ms=target_latency_ms(search) or None,
        cost_loss=search.cost_loss, cost_weight=float(search.cost_weight),
        warmup_steps=int(search.warmup_steps),
        label_smoothing=float(resolved.train.label_smoothing),
        weight_decay=float(resolved.train.weight_decay),
        target_tolerance=float(search.target_tolerance),
        discrete_gradient=bool(search.discrete_gradient),
        multiplier_rate=float(search.multiplier_rate),
        settle_step=int(search.settle_steps), settle_weight=float(search.settle_weight))
    with recipe.dtype_policy_scope(dtype_policy):
        return Supernet(
            space, num_classes=int(resolved.data.num_classes),
            image_size=int(resolved.data.image_size),
            width_multiplier=float(resolved.model.width_multiplier),
            dropout_rate=float(resolved.model.dropout_rate),
            bn_momentum=float(resolved.model.bn_momentum),
            bn_epsilon=float(resolved.model.bn_epsilon),
            temperature=float(search.temperature), score_gradient=bool(search.score_gradient),
            objective=objective,
            indicator_keep_probability=float(search.indicator_keep_probability),
            log_indicators=False, latency_cost=latency)


class DecisionPhaseCosine(keras.optimizers.schedules.LearningRateSchedule):
    """0 during the warm-up, then ``rate`` cosine-decayed to 0 over the decision phase.

    With ``settle_step`` (the Lagrangian objective's settling phase), the cosine runs over
    [warm-up, settle_step) and starts again from ``rate`` over [settle_step, total_steps): the
    settling phase may have to undo a last flip that jumped over the target, and needs a
    learning rate to do it.
    """

    def __init__(self, rate: float, warmup_steps: int, total_steps: int,
                 settle_step: int | None = None):
        self.rate = float(rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.settle_step = None if settle_step is None else int(settle_step)

    def _cosine(self, step, start: int, end: int):
        progress = tf.clip_by_value((step - start) / float(max(1, end - start)), 0.0, 1.0)
        return 0.5 * self.rate * (1.0 + tf.cos(np.pi * progress))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        settle = self.settle_step
        if settle is None or not self.warmup_steps < settle < self.total_steps:
            rate = self._cosine(step, self.warmup_steps, self.total_steps)
        else:
            rate = tf.where(step < settle, self._cosine(step, self.warmup_steps, settle),
                            self._cosine(step, settle, self.total_steps))
        return tf.where(step < self.warmup_steps, 0.0, rate)

    def get_config(self):
        return {"rate": self.rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "settle_step": self.settle_step}


def build_threshold_optimizer(search: ml_collections.ConfigDict, total_steps: int
                              ) -> keras.optimizers.Optimizer:
    """The thresholds' optimizer: rate 0 during the warm-up, then cosine-decayed to 0 (again
    over the settling phase of the Lagrangian objective)."""
    settle = int(search.settle_steps) if search.cost_loss == "lagrangian" else None
    rate = DecisionPhaseCosine(float(search.threshold_learning_rate),
                               int(search.warmup_steps), int(total_steps), settle)
    kind = search.threshold_optimizer
    if kind == "adam":
        return keras.optimizers.Adam(rate, beta_1=float(search.threshold_beta_1),
                                     name="threshold_adam")
    if kind == "rmsprop":
        return keras.optimizers.RMSprop(rate, name="threshold_rmsprop")
    return keras.optimizers.SGD(rate, name="threshold_sgd")


def compile_supernet(model: Supernet, resolved: ml_collections.ConfigDict,
                     jit_compile: bool = False) -> Supernet:
    """The recipe's weight optimizer + the thresholds' optimizer; call under the scope."""
    model.compile(optimizer=recipe.build_optimizer(resolved),
                  threshold_optimizer=build_threshold_optimizer(resolved.search,
                                                                resolved.train.total_steps),
                  jit_compile=jit_compile)
    return model


class SearchRecorder(driver.CheckpointCallback):
    """Records the search's curves and writes its outputs (chief only).

    Curves: expected MACs, losses and the supernet's training top-1 at every chunk; its held-out
    top-1/top-5 (the current child on the eval split) at every evaluation. Outputs
    (search_summary.json, search_history.json, search.png, and arch.txt once the decision phase
    has begun) are rewritten after every checkpoint and every evaluation.

    The learning check: the held-out top-1 at the end of the warm-up must reach
    ``search.min_heldout_top1_vs_chance`` times chance, else `SupernetNotLearningError` stops
    the search there (also when a stopped search is rerun), unless
    ``search.stop_if_not_learning`` is False.
    """

    def __init__(self, supernet: Supernet, model_dir: str, resolved: ml_collections.ConfigDict):
        super().__init__()
        self.supernet = supernet
        self.model_dir = model_dir
        self.target = (float(resolved.search.target_flops)
                       if resolved.search.cost_loss != "log" else None)
        # A latency target (ms) replaces the MACs target; MACs stay reported.
        self.target_latency_ms = target_latency_ms(resolved.search) or None
        if self.target_latency_ms:
            self.target = None
        self.warmup_steps = int(resolved.search.warmup_steps)
        self.total_steps = int(resolved.train.total_steps)
        self.chance = 1.0 / int(resolved.data.num_classes)
        self.min_vs_chance = float(resolved.search.min_heldout_top1_vs_chance)
        self.stop_if_not_learning = bool(resolved.search.stop_if_not_learning)
        self.history: list[dict] = []
        self.heldout: list[dict] = []
        self.last_summary: dict | None = None
        self._step = 0

    def on_train_begin(self, logs=None):
        # After the driver's restore: keep the curves of the run being resumed, up to its step.
        step = int(self.supernet.optimizer.iterations.numpy())
        self._step = step
        self.history = report.read_history(self.model_dir, up_to_step=step) if step else []
        self.heldout = report.read_heldout(self.model_dir, up_to_step=step) if step else []
        if not self.history:  # the curve starts at the initial child (all indicators on)
            decisions = current_decisions(self.supernet)
            self.history = [{"step": step, "expected_macs": float(
                self.supernet.search_cost.macs(decisions))}]
            if self.supernet.latency_cost is not None:
                self.history[0]["expected_latency_ms"] = self.supernet.latency_cost.latency(
                    decisions)
        if step >= self.warmup_steps:  # a rerun of a search that was stopped there stops again
            for row in self.heldout:
                if row["step"] == self.warmup_steps:
                    self._check_learning(row["top1"])

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._step = int(batch)
        if "expected_macs" in logs:
            self.history.append({key: float(logs[key]) for key in
                                 ("expected_macs", "expected_latency_ms", "cross_entropy",
                                  "cost_loss", "loss", "accuracy", "cost_weight",
                                  "cost_multiplier", "threshold_gradient_cross_entropy",
                                  "threshold_gradient_cost") if key in logs}
                                | {"step": int(batch)})

    def on_test_end(self, logs=None):
        logs = logs or {}
        if "top1" not in logs:
            return
        step = int(logs.get("step", self._step))
        self.heldout = [row for row in self.heldout if row["step"] != step]
        self.heldout.append({"step": step, "top1": float(logs["top1"]),
                             "top5": float(logs.get("top5", float("nan"))),
                             "num_images": int(logs.get("num_images", 0))})
        logging.info("step %d: supernet held-out top-1 %.1f%% (%s)", step,
                     100 * float(logs["top1"]),
                     "warm-up" if step <= self.warmup_steps else "deciding")
        self._write(step)
        if step == self.warmup_steps:
            self._check_learning(float(logs["top1"]))

    def _check_learning(self, top1: float) -> None:
        """Stops the search (every worker) when the warm-up left the supernet near chance."""
        if not self.stop_if_not_learning or self.warmup_steps <= 0:
            return
        bar = self.min_vs_chance * self.chance
        if top1 < bar:
            raise SupernetNotLearningError(
                f"the supernet's held-out top-1 at the end of the warm-up (step "
                f"{self.warmup_steps}) is {100 * top1:.1f}%, below {self.min_vs_chance:g}x "
                f"chance ({100 * bar:.1f}%): it has learned nothing the decisions could use, so "
                "the search stops here without an arch.txt. Try a lower learning rate "
                "(--config.train.lr_per_256), a longer warm-up (--config.search.warmup_fraction) "
                "or check the data and labels; --config.search.stop_if_not_learning=false goes "
                "on anyway")

    def on_checkpoint(self, step: int, checkpoint_path: str, logs: Mapping[str, float]) -> None:
        self._write(step)
        if self.is_chief and self.decided(step):
            latency = self.last_summary.get("latency")
            logging.info("step %d: searched child %.4gM MACs%s%s -> %s", step,
                         self.last_summary["macs"] / 1e6,
                         f" (target {self.target / 1e6:.4g}M)" if self.target else "",
                         f", {latency['predicted_ms']:.4g} ms predicted (target "
                         f"{latency['target_ms']:.4g} ms)" if latency else "",
                         os.path.join(self.model_dir, files.ARCH_FILE))

    def _write(self, step: int) -> None:
        if not self.is_chief:
            return
        self.last_summary = report.write_search_outputs(
            self.model_dir, self.supernet, step, self.history, target_macs=self.target,
            warmup_steps=self.warmup_steps, total_steps=self.total_steps, heldout=self.heldout,
            target_latency_ms=self.target_latency_ms, write_arch=self.decided(step))

    def decided(self, step: int) -> bool:
        """Whether the decisions at ``step`` are the search's (the decision phase has begun,
        or the search has no warm-up): only then is arch.txt written."""
        return step > self.warmup_steps or self.warmup_steps == 0


def heldout_evaluator(model: Supernet, strategy: tf.distribute.Strategy,
                      train_dataset_fn, eval_dataset_fn, eval_steps: int | None,
                      recalibration_steps: int, recalibration_momentum: float = 0.9):
    """A driver ``eval_fn``: top-1/top-5 of the supernet's current child on held-out images.

    The supernet's BatchNorm moving statistics average over every child the warm-up sampled;
    the child being evaluated has statistics of its own. Before each evaluation they are
    re-estimated for that child from ``recalibration_steps`` training batches (forward passes
    only, no weight update; the usual recalibration of one-shot NAS), then the exact classifier
    evaluation runs on the eval split.
    """
    from autonl_tf.runner import evaluation

    batch_norms = [layer for layer in model._flatten_layers()
                   if isinstance(layer, keras.layers.BatchNormalization)]
    calibration = iter(strategy.distribute_datasets_from_function(train_dataset_fn))
    held_out = strategy.distribute_datasets_from_function(eval_dataset_fn)
    classifier = evaluation.make_classifier_evaluator(model, strategy)

    @tf.function
    def forward(batch):
        strategy.run(lambda b: model(b[0] if isinstance(b, tuple) else b["images"],
                                     training=True), args=(batch,))

    def evaluate(supernet: Supernet) -> dict:
        momenta = [layer.momentum for layer in batch_norms]
        for layer in batch_norms:  # read when `forward` is traced (its first call) only
            layer.momentum = recalibration_momentum
        try:
            for _ in range(recalibration_steps):
                forward(next(calibration))
        finally:
            for layer, momentum in zip(batch_norms, momenta, strict=True):
                layer.momentum = momentum
        return evaluation.evaluate_classifier(supernet, strategy, held_out, steps=eval_steps,
                                              evaluator=classifier)

    return evaluate


def indicator_summaries(supernet: Supernet):
    """A driver ``summary_fn``: every indicator and threshold, and the cross-entropy and cost
    parts of every threshold's gradient, as TensorBoard scalars."""
    from autonl_tf.runner import progress

    def write(step: int, logs: Mapping[str, float]) -> None:
        for name, value in supernet.indicator_values().items():
            progress.scalar_summary(name, value, step)
        names = list(supernet.threshold_values())
        for name, variable in supernet.threshold_values().items():
            progress.scalar_summary("threshold/" + name, variable, step)
        # Each threshold's gradient, split into what the data says (cross-entropy) and what the
        # cost term says, averaged since the last log line.
        for part, values in supernet.threshold_gradient_parts().items():
            for name, value in zip(names, values.numpy(), strict=True):
                progress.scalar_summary(f"threshold_gradient/{part}/{name}", value, step)

    return write


class SearchTask(experiment.ExperimentTask):
    """The search, for `autonl_tf.runner.experiment.run_experiment`."""

    evaluates = True  # the held-out evaluation of the current child

    def __init__(self):
        self.space: SearchSpace | None = None
        self.recorder: SearchRecorder | None = None

    def resolve(self, config):
        resolved, self.space = resolve_search_config(config)
        return resolved

    def describe(self, resolved):
        search = resolved.search
        low, high = search.feasible_range
        target = (f"{search.target_flops / 1e6:.4g}M ({search.cost_loss})"
                  if search.cost_loss != "log" else "none (lambda * log(cost))")
        if target_latency_ms(search):
            fast, slow = search.feasible_latency_range_ms
            return (f"Searching {self.space.num_decisions} decisions ({len(self.space.blocks)} "
                    f"blocks), feasible range {fast:.4g}-{slow:.4g} ms predicted by "
                    f"{search.latency_table}, target {target_latency_ms(search):.4g} ms "
                    f"({search.cost_loss}); MACs {low / 1e6:.4g}M-{high / 1e6:.4g}M")
        return (f"Searching {self.space.num_decisions} decisions ({len(self.space.blocks)} "
                f"blocks), feasible range {low / 1e6:.4g}M-{high / 1e6:.4g}M MACs, target "
                f"{target}")

    def build(self, resolved, dtype_policy, jit_compile):
        model = build_supernet(resolved, self.space, dtype_policy)
        return compile_supernet(model, resolved, jit_compile=jit_compile)

    def plugins(self, model, resolved, context):
        self.recorder = SearchRecorder(model, context.model_dir, resolved)
        evaluate = heldout_evaluator(model, context.strategy, context.train_dataset_fn,
                                     context.eval_dataset_fn, resolved.eval.steps or None,
                                     int(resolved.search.bn_recalibration_steps))
        return experiment.TaskPlugins(
            callbacks=[self.recorder], eval_fn=evaluate, summary_fn=indicator_summaries(model),
            extra_checkpoint_items={"threshold_optimizer": model.threshold_optimizer},
            eval_use_ema=False)

    def finish(self, model, resolved, context, result):
        recorder = self.recorder
        if context.chief and recorder.last_summary is None:  # nothing trained: at the last step
            recorder.last_summary = report.write_search_outputs(
                context.model_dir, model, result["step"], recorder.history,
                target_macs=recorder.target, warmup_steps=recorder.warmup_steps,
                total_steps=recorder.total_steps, heldout=recorder.heldout,
                target_latency_ms=recorder.target_latency_ms,
                write_arch=recorder.decided(result["step"]))
        result.update(summary=recorder.last_summary,
                      arch_file=os.path.join(context.model_dir, files.ARCH_FILE))


def search_experiment(config: ml_collections.ConfigDict, *, model_dir: str,
                      strategy: tf.distribute.Strategy) -> dict:
    """Runs (or resumes) a search in ``model_dir``.

    Returns the driver's result dict plus 'config' (resolved), 'model' (the supernet),
    'summary' (search_summary.json's content) and 'arch_file'.
    """
    return experiment.run_experiment(SearchTask(), config, model_dir=model_dir,
                                     strategy=strategy)
