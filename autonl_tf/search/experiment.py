"""The program behind search_main.py: config -> supernet -> training driver -> arch.txt.

`search_experiment` resolves the config (the training recipe's resolution: data, steps, learning
rate), validates the space and the target, builds and compiles the supernet under the strategy
and trains it with `autonl_tf.training.driver.fit` (same checkpoints, resumption, NaN guard,
TensorBoard and progress as train_main.py). At every checkpoint (and so at the end) the chief
writes arch.txt, search_summary.json, search_history.json and search.png into the model dir.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from autonl_tf.arch import encode_arch
from autonl_tf.models import check_image_size
from autonl_tf.search import report
from autonl_tf.search.cost import SearchCost
from autonl_tf.search.decode import current_decisions
from autonl_tf.search.objective import COST_LOSSES, SearchObjective
from autonl_tf.search.space import SearchSpace, space_from_config
from autonl_tf.search.supernet import Supernet
from autonl_tf.training import checkpoints, driver, recipe
from autonl_tf.training import strategy as strategy_lib
from autonl_tf.training.config import ConfigError

__all__ = ["SEARCH_CONFIG_FILE", "SearchRecorder", "build_supernet", "compile_supernet",
           "resolve_search_config", "search_experiment"]

SEARCH_CONFIG_FILE = "search_config.json"
THRESHOLD_OPTIMIZERS = ("adam", "sgd", "rmsprop")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _validate_search_section(search: ml_collections.ConfigDict) -> None:
    _require(0.0 < search.indicator_keep_probability <= 1.0,
             "search.indicator_keep_probability must be in (0, 1]")
    _require(search.bn_recalibration_steps >= 0, "search.bn_recalibration_steps must be >= 0")
    _require(search.cost_loss in COST_LOSSES,
             f"search.cost_loss={search.cost_loss!r}: expected one of {COST_LOSSES}")
    _require(search.cost_weight >= 0, "search.cost_weight (lambda) must be >= 0")
    _require(0.0 <= search.warmup_fraction < 1.0, "search.warmup_fraction must be in [0, 1)")
    _require(search.target_tolerance >= 0, "search.target_tolerance must be >= 0")
    _require(search.temperature > 0, "search.temperature must be > 0")
    _require(search.threshold_optimizer in THRESHOLD_OPTIMIZERS,
             f"search.threshold_optimizer={search.threshold_optimizer!r}: expected one of "
             f"{THRESHOLD_OPTIMIZERS}")
    _require(search.threshold_learning_rate > 0, "search.threshold_learning_rate must be > 0")
    _require(search.cost_loss == "log" or (search.target_flops and search.target_flops > 0),
             f"search.cost_loss={search.cost_loss!r} needs a positive search.target_flops "
             "(--target_flops)")


def _check_target(space: SearchSpace, config: ml_collections.ConfigDict) -> tuple[int, int]:
    """The feasible range at the config's size/width/classes; TargetError if the target is out."""
    try:
        check_image_size(config.data.image_size)
    except ValueError as e:
        raise ConfigError(f"data.image_size: {e}") from None
    cost = SearchCost(space, int(config.data.image_size), int(config.data.num_classes),
                      float(config.model.width_multiplier))
    if config.search.cost_loss != "log":
        cost.check_target(float(config.search.target_flops))
    return cost.feasible_range()


def resolve_search_config(config: ml_collections.ConfigDict
                          ) -> tuple[ml_collections.ConfigDict, SearchSpace]:
    """Validated, resolved copy of a search config, and its unrolled space.

    Raises:
      SearchSpaceError: a malformed ``search_space`` (the message names the key).
      TargetError: ``search.target_flops`` outside the feasible range (printed).
      ConfigError / DataError: as `autonl_tf.training.recipe.resolve_experiment`.
    """
    space = space_from_config(config.search_space)
    _validate_search_section(config.search)
    if config.search.cost_loss != "log":  # early, before the data is prepared
        _check_target(space, config)
    record = ml_collections.ConfigDict(config.to_dict())
    # The recipe resolves (and validates) a classifier experiment. The keys a search config does
    # not have take the values the supernet implies; the largest child stands for the
    # architecture.
    for dotted, value in _IMPLIED.items():
        section, key = dotted.split(".")
        if key not in record[section]:
            record[section][key] = value
    record.model.arch = encode_arch(space.child_blocks(space.largest()))
    resolved = recipe.resolve_experiment(record)
    resolved.model.name = "supernet"
    # Again with the prepared data (a TFDS dataset brings its own number of classes).
    low, high = _check_target(space, resolved)
    resolved.search.feasible_range = [int(low), int(high)]
    train = resolved.train
    resolved.eval.every_steps = int(resolved.eval.every_steps or train.checkpoint_every_steps
                                    or train.total_steps)
    resolved.search.warmup_steps = warmup_steps(float(resolved.search.warmup_fraction),
                                                int(train.total_steps),
                                                int(resolved.eval.every_steps))
    return resolved, space


# What the supernet implies for the classifier keys a search config does not have.
_IMPLIED = {"model.drop_connect_rate": 0.0, "train.use_ema": False, "train.ema_decay": 0.0,
            "train.ema_dynamic_decay": False, "train.debug_nan_at_step": 0,
            "eval.use_ema": False, "eval.timeout_s": 0.0}


def warmup_steps(fraction: float, total_steps: int, eval_every: int) -> int:
    """The warm-up length: ``fraction`` of the steps, rounded to a multiple of the held-out
    evaluation period (when it fits) so that the end of the warm-up is evaluated."""
    steps = int(round(fraction * total_steps))
    if 0 < eval_every < total_steps and steps > 0:
        steps = max(eval_every, int(round(steps / eval_every)) * eval_every)
    return min(steps, max(0, total_steps - 1))


def build_supernet(resolved: ml_collections.ConfigDict, space: SearchSpace,
                   dtype_policy: str | None = None) -> Supernet:
    """The supernet of a resolved search config (build it under ``strategy.scope()``)."""
    search = resolved.search
    objective = SearchObjective(
        target_macs=float(search.target_flops) if search.target_flops else None,
        cost_loss=search.cost_loss, cost_weight=float(search.cost_weight),
        warmup_steps=int(search.warmup_steps),
        label_smoothing=float(resolved.train.label_smoothing),
        weight_decay=float(resolved.train.weight_decay),
        target_tolerance=float(search.target_tolerance),
        discrete_gradient=bool(search.discrete_gradient))
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
            log_indicators=False)


class DecisionPhaseCosine(keras.optimizers.schedules.LearningRateSchedule):
    """0 during the warm-up, then ``rate`` cosine-decayed to 0 over the remaining steps."""

    def __init__(self, rate: float, warmup_steps: int, total_steps: int):
        self.rate = float(rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        span = float(max(1, self.total_steps - self.warmup_steps))
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        cosine = 0.5 * self.rate * (1.0 + tf.cos(np.pi * progress))
        return tf.where(step < self.warmup_steps, 0.0, cosine)

    def get_config(self):
        return {"rate": self.rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


def build_threshold_optimizer(search: ml_collections.ConfigDict, total_steps: int
                              ) -> keras.optimizers.Optimizer:
    """The thresholds' optimizer: rate 0 during the warm-up, then cosine-decayed to 0."""
    rate = DecisionPhaseCosine(float(search.threshold_learning_rate),
                               int(search.warmup_steps), int(total_steps))
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
    top-1/top-5 (the current child on the eval split) at every evaluation. Outputs (arch.txt,
    search_summary.json, search_history.json, search.png) are rewritten after every checkpoint
    and every evaluation.
    """

    def __init__(self, supernet: Supernet, model_dir: str, resolved: ml_collections.ConfigDict):
        super().__init__()
        self.supernet = supernet
        self.model_dir = model_dir
        self.target = (float(resolved.search.target_flops)
                       if resolved.search.cost_loss != "log" else None)
        self.warmup_steps = int(resolved.search.warmup_steps)
        self.total_steps = int(resolved.train.total_steps)
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
            self.history = [{"step": step, "expected_macs": float(
                self.supernet.search_cost.macs(current_decisions(self.supernet)))}]

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._step = int(batch)
        if "expected_macs" in logs:
            self.history.append({key: float(logs[key]) for key in
                                 ("expected_macs", "cross_entropy", "cost_loss", "loss",
                                  "accuracy") if key in logs} | {"step": int(batch)})

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

    def on_checkpoint(self, step: int, checkpoint_path: str, logs: Mapping[str, float]) -> None:
        self._write(step)
        if self.is_chief:
            logging.info("step %d: searched child %.4gM MACs%s -> %s", step,
                         self.last_summary["macs"] / 1e6,
                         f" (target {self.target / 1e6:.4g}M)" if self.target else "",
                         os.path.join(self.model_dir, report.ARCH_FILE))

    def _write(self, step: int) -> None:
        if not self.is_chief:
            return
        self.last_summary = report.write_search_outputs(
            self.model_dir, self.supernet, step, self.history, target_macs=self.target,
            warmup_steps=self.warmup_steps, total_steps=self.total_steps, heldout=self.heldout)


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
    from autonl_tf.training import evaluation

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
    """A driver ``summary_fn``: every indicator and threshold as a TensorBoard scalar."""
    from autonl_tf.training import progress

    def write(step: int, logs: Mapping[str, float]) -> None:
        for name, value in supernet.indicator_values().items():
            progress.scalar_summary(name, value, step)
        for name, variable in supernet.threshold_values().items():
            progress.scalar_summary("threshold/" + name, variable, step)

    return write


def _identity(resolved: ml_collections.ConfigDict) -> dict:
    """What a resumed search must share with the checkpointed one."""
    from autonl_tf.training.config import to_plain_dict

    return {"search_space": to_plain_dict(resolved.search_space),
            "image_size": int(resolved.data.image_size),
            "num_classes": int(resolved.data.num_classes),
            "width_multiplier": float(resolved.model.width_multiplier)}


def _check_model_dir(model_dir: str, resolved: ml_collections.ConfigDict) -> None:
    path = os.path.join(model_dir, SEARCH_CONFIG_FILE)
    if not (tf.io.gfile.exists(path) and tf.train.latest_checkpoint(model_dir)):
        return
    with tf.io.gfile.GFile(path) as f:
        saved = ml_collections.ConfigDict(json.load(f))
    saved_identity, identity = _identity(saved), _identity(resolved)
    differs = [key for key in identity if json.dumps(saved_identity[key], sort_keys=True)
               != json.dumps(identity[key], sort_keys=True)]
    if differs:
        raise checkpoints.CheckpointMismatchError(
            f"{model_dir} holds a search with another supernet ({', '.join(differs)} differ); "
            "use a new --model_dir or the same search space, image size, classes and width")


def _save_search_config(model_dir: str, resolved: ml_collections.ConfigDict) -> None:
    from autonl_tf.training.config import to_plain_dict

    tf.io.gfile.makedirs(model_dir)
    report.write_atomic(os.path.join(model_dir, SEARCH_CONFIG_FILE),
                        json.dumps(to_plain_dict(resolved), indent=2, sort_keys=True) + "\n")


def search_experiment(config: ml_collections.ConfigDict, *, model_dir: str,
                      strategy: tf.distribute.Strategy) -> dict:
    """Runs (or resumes) a search in ``model_dir``.

    Returns the driver's result dict plus 'config' (resolved), 'model' (the supernet),
    'summary' (search_summary.json's content) and 'arch_file'.
    """
    resolved, space = resolve_search_config(config)
    train = resolved.train
    bfloat16, jit_compile = recipe.resolve_execution(resolved, strategy)
    chief = strategy_lib.is_chief(strategy)
    _check_model_dir(model_dir, resolved)
    if chief:
        _save_search_config(model_dir, resolved)
    search = resolved.search
    low, high = search.feasible_range
    logging.info(
        "Searching %d decisions (%d blocks) on %s: %d steps of %d images, %s, XLA %s; "
        "feasible range %.4gM-%.4gM MACs, target %s", space.num_decisions, len(space.blocks),
        strategy_lib.strategy_kind(strategy), train.total_steps, train.batch_size,
        "mixed_bfloat16" if bfloat16 else "float32", "on" if jit_compile else "off",
        low / 1e6, high / 1e6,
        f"{search.target_flops / 1e6:.4g}M ({search.cost_loss})"
        if search.cost_loss != "log" else "none (lambda * log(cost))")
    if train.seed is not None:
        keras.utils.set_random_seed(int(train.seed))

    with strategy.scope():
        model = build_supernet(resolved, space, "mixed_bfloat16" if bfloat16 else "float32")
        compile_supernet(model, resolved, jit_compile=jit_compile)

    from autonl_tf import data

    def train_dataset_fn(input_context):
        return data.build_train_dataset(resolved.data, train.batch_size, input_context)

    def eval_dataset_fn(input_context):  # held-out: the eval split, never trained on
        return data.build_eval_dataset(resolved.data, resolved.eval.batch_size, input_context)

    recorder = SearchRecorder(model, model_dir, resolved)
    result = driver.fit(
        model, train_dataset_fn, strategy=strategy, model_dir=model_dir,
        total_steps=train.total_steps, steps_per_loop=train.steps_per_loop,
        checkpoint_every_steps=train.checkpoint_every_steps,
        eval_dataset_fn=eval_dataset_fn, eval_every_steps=resolved.eval.every_steps,
        eval_fn=heldout_evaluator(model, strategy, train_dataset_fn, eval_dataset_fn,
                                  resolved.eval.steps or None,
                                  int(resolved.search.bn_recalibration_steps)),
        extra_callbacks=[recorder], summary_fn=indicator_summaries(model),
        extra_checkpoint_items={"threshold_optimizer": model.threshold_optimizer},
        log_every_steps=train.log_every_steps, global_batch_size=train.batch_size,
        eval_use_ema=False, max_checkpoints_to_keep=train.max_checkpoints_to_keep,
        checkpoint_input_pipeline=bool(train.checkpoint_input_pipeline))
    if chief and recorder.last_summary is None:  # nothing trained (already at the last step)
        recorder.last_summary = report.write_search_outputs(
            model_dir, model, result["step"], recorder.history, target_macs=recorder.target,
            warmup_steps=recorder.warmup_steps, total_steps=recorder.total_steps,
            heldout=recorder.heldout)
    result.update(config=resolved, model=model, summary=recorder.last_summary,
                  arch_file=os.path.join(model_dir, report.ARCH_FILE))
    return result
