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
    # The recipe resolves an architecture; the supernet's largest child stands for it.
    record.model.arch = encode_arch(space.child_blocks(space.largest()))
    resolved = recipe.resolve_experiment(record)
    resolved.model.name = "supernet"
    # Again with the prepared data (a TFDS dataset brings its own number of classes).
    low, high = _check_target(space, resolved)
    resolved.search.feasible_range = [int(low), int(high)]
    resolved.search.warmup_steps = int(resolved.search.warmup_fraction
                                       * resolved.train.total_steps)
    return resolved, space


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
            objective=objective, log_indicators=False)


def build_threshold_optimizer(search: ml_collections.ConfigDict,
                              total_steps: int) -> keras.optimizers.Optimizer:
    """The thresholds' optimizer: its learning rate decays to 0 (cosine) over the search."""
    rate = keras.optimizers.schedules.CosineDecay(float(search.threshold_learning_rate),
                                                  max(1, int(total_steps)))
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
    """Records the cost curve and writes the search outputs at every checkpoint (chief only)."""

    def __init__(self, supernet: Supernet, model_dir: str, resolved: ml_collections.ConfigDict):
        super().__init__()
        self.supernet = supernet
        self.model_dir = model_dir
        self.target = (float(resolved.search.target_flops)
                       if resolved.search.cost_loss != "log" else None)
        self.warmup_steps = int(resolved.search.warmup_steps)
        self.total_steps = int(resolved.train.total_steps)
        self.history: list[dict] = []
        self.last_summary: dict | None = None

    def on_train_begin(self, logs=None):
        # After the driver's restore: keep the curve of the run being resumed, up to its step.
        step = int(self.supernet.optimizer.iterations.numpy())
        self.history = report.read_history(self.model_dir, up_to_step=step) if step else []
        if not self.history:  # the curve starts at the initial child (all indicators on)
            self.history = [{"step": step, "expected_macs": float(
                self.supernet.search_cost.macs(current_decisions(self.supernet)))}]

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if "expected_macs" in logs:
            self.history.append({key: float(logs[key]) for key in
                                 ("expected_macs", "cross_entropy", "cost_loss", "loss")
                                 if key in logs} | {"step": int(batch)})

    def on_checkpoint(self, step: int, checkpoint_path: str, logs: Mapping[str, float]) -> None:
        if not self.is_chief:
            return
        self.last_summary = report.write_search_outputs(
            self.model_dir, self.supernet, step, self.history, target_macs=self.target,
            warmup_steps=self.warmup_steps, total_steps=self.total_steps)
        logging.info("step %d: searched child %.4gM MACs%s -> %s", step,
                     self.last_summary["macs"] / 1e6,
                     f" (target {self.target / 1e6:.4g}M)" if self.target else "",
                     os.path.join(self.model_dir, report.ARCH_FILE))


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

    recorder = SearchRecorder(model, model_dir, resolved)
    result = driver.fit(
        model, train_dataset_fn, strategy=strategy, model_dir=model_dir,
        total_steps=train.total_steps, steps_per_loop=train.steps_per_loop,
        checkpoint_every_steps=train.checkpoint_every_steps,
        extra_callbacks=[recorder], summary_fn=indicator_summaries(model),
        extra_checkpoint_items={"threshold_optimizer": model.threshold_optimizer},
        log_every_steps=train.log_every_steps, global_batch_size=train.batch_size,
        eval_use_ema=False, max_checkpoints_to_keep=train.max_checkpoints_to_keep,
        checkpoint_input_pipeline=bool(train.checkpoint_input_pipeline))
    if chief and recorder.last_summary is None:  # nothing trained (already at the last step)
        recorder.last_summary = report.write_search_outputs(
            model_dir, model, result["step"], recorder.history, target_macs=recorder.target,
            warmup_steps=recorder.warmup_steps, total_steps=recorder.total_steps)
    result.update(config=resolved, model=model, summary=recorder.last_summary,
                  arch_file=os.path.join(model_dir, report.ARCH_FILE))
    return result
