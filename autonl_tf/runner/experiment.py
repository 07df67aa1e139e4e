"""One experiment runner for training and the search, and the evaluation of a model dir.

`run_experiment(task, config, model_dir=..., strategy=...)` is the sequence that training and
the search share: resolve the config (the task's way), settle the execution for the strategy
(`strategy.resolve_execution`: bfloat16, XLA), check that the model dir holds the same network
(``config.json``, `checkpoints.check_same_model`), check the data, save ``config.json``, seed,
build and compile the task's model under ``strategy.scope()`` and run `driver.fit` with the
task's plug-ins. What differs between the two is an `ExperimentTask`:
`autonl_tf.recipe.task.ClassifierTask` (the retraining recipe, optional evaluation into
eval_results.json) and `autonl_tf.search.experiment.SearchTask` (the supernet, its held-out
evaluator and the recorder that writes arch.txt).

`evaluate_experiment(model_dir, task=...)` evaluates the latest / a given / every new checkpoint
of a model dir (the evaluation program, `autonl_tf.programs.evaluate`). Exporting is the export
package's (`autonl_tf.export`); the programs call it after these return.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from autonl_tf import files
from autonl_tf.runner import checkpoints, driver, evaluation
from autonl_tf.runner import strategy as strategy_lib

__all__ = ["ExperimentTask", "RunContext", "TaskPlugins", "evaluate_experiment",
           "input_signature", "run_experiment"]

DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a task sees of the run: where, how, and its input."""

    model_dir: str
    strategy: tf.distribute.Strategy
    chief: bool
    train_dataset_fn: DatasetFn
    eval_dataset_fn: DatasetFn | None


@dataclasses.dataclass
class TaskPlugins:
    """A task's additions to the driver (see `driver.fit` for each)."""

    callbacks: Sequence[keras.callbacks.Callback] = ()
    eval_fn: Callable[[keras.Model], Mapping[str, float]] | None = None
    summary_fn: Callable[[int, Mapping[str, float]], Any] | None = None
    extra_checkpoint_items: Mapping[str, Any] | None = None
    eval_use_ema: bool = True


class ExperimentTask:
    """What one kind of experiment plugs into `run_experiment`."""

    #: Whether the run reads the eval split (evaluation during training, or held-out checks).
    evaluates: bool = False

    def resolve(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """The validated, resolved config (what config.json stores)."""
        raise NotImplementedError

    def describe(self, resolved: ml_collections.ConfigDict) -> str:
        """One log line: what is about to run."""
        raise NotImplementedError

    def build(self, resolved: ml_collections.ConfigDict, dtype_policy: str,
              jit_compile: bool) -> keras.Model:
        """The compiled model (called under ``strategy.scope()``)."""
        raise NotImplementedError

    def plugins(self, model: keras.Model, resolved: ml_collections.ConfigDict,
                context: RunContext) -> TaskPlugins:
        return TaskPlugins()

    def finish(self, model: keras.Model, resolved: ml_collections.ConfigDict,
               context: RunContext, result: dict) -> None:
        """Adds the task's outputs to the driver's result (after training)."""

    # -- evaluation of a model dir (`evaluate_experiment`) --------------------------------------
    def check_saved(self, saved: ml_collections.ConfigDict, model_dir: str) -> None:
        """Raises a `UserError` (one line) unless ``model_dir`` (its config.json: ``saved``)
        holds a model this task evaluates."""

    def restorer(self, saved: ml_collections.ConfigDict) -> evaluation.Restorer:
        """The task's model rebuilt from a model dir's config.json, ready to restore checkpoints
        into (called under ``strategy.scope()``)."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate model dirs")


# Data keys that define the training input stream (a change restarts the input position).
_INPUT_KEYS = ("dataset", "data_dir", "skip_corrupt", "image_size", "augment", "random_crop",
               "random_flip", "shuffle_buffer", "cache", "deterministic", "seed", "dtype",
               "train_split")


def input_signature(resolved: ml_collections.ConfigDict) -> str:
    """Short hash of what defines the training input stream (data keys, batch size)."""
    described = {key: resolved.data.get(key) for key in _INPUT_KEYS}
    described["batch_size"] = resolved.train.batch_size
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _saved_config(model_dir: str) -> ml_collections.ConfigDict | None:
    """config.json of a model dir that has checkpoints (a run to resume), else None."""
    if not (tf.io.gfile.exists(os.path.join(model_dir, files.CONFIG_FILE))
            and tf.train.latest_checkpoint(model_dir)):
        return None
    return checkpoints.load_experiment_config(model_dir)


def _warn_changed_data(saved: ml_collections.ConfigDict,
                       resolved: ml_collections.ConfigDict, model_dir: str) -> None:
    """Says which input keys changed since the run's previous config.json (resuming works)."""
    changes = [f"data.{key}: {saved.data.get(key)!r} -> {resolved.data.get(key)!r}"
               for key in _INPUT_KEYS if saved.data.get(key) != resolved.data.get(key)]
    if saved.train.get("batch_size") != resolved.train.batch_size:
        changes.append(f"train.batch_size: {saved.train.get('batch_size')} -> "
                       f"{resolved.train.batch_size}")
    if changes:
        logging.warning("resuming %s with a changed input (%s): the input pipeline restarts "
                        "from its beginning", model_dir, "; ".join(changes))


def _dataset_fns(resolved: ml_collections.ConfigDict,
                 evaluates: bool) -> tuple[DatasetFn, DatasetFn | None]:
    """The train (and eval) dataset functions; the splits must exist (DataError otherwise)."""
    from autonl_tf import data
    from autonl_tf.data import sources

    prepared = data.prepare(resolved.data)
    sources.make_source(prepared, prepared.train_split)
    if evaluates:
        sources.make_source(prepared, prepared.eval_split)

    def train_dataset_fn(input_context):
        return data.build_train_dataset(resolved.data, resolved.train.batch_size, input_context)

    def eval_dataset_fn(input_context):
        return data.build_eval_dataset(resolved.data, resolved.eval.batch_size, input_context)

    return train_dataset_fn, (eval_dataset_fn if evaluates else None)


def _loop_settings(resolved: ml_collections.ConfigDict) -> dict:
    """`driver.fit`'s schedule and checkpoint arguments, from the resolved config."""
    train, evaluation_cfg = resolved.train, resolved.eval
    return dict(total_steps=int(train.total_steps), steps_per_loop=int(train.steps_per_loop),
                checkpoint_every_steps=int(train.checkpoint_every_steps),
                log_every_steps=int(train.log_every_steps),
                global_batch_size=int(train.batch_size),
                max_checkpoints_to_keep=int(train.max_checkpoints_to_keep),
                checkpoint_input_pipeline=bool(train.checkpoint_input_pipeline),
                eval_steps=int(evaluation_cfg.steps) or None,
                eval_every_steps=int(evaluation_cfg.every_steps) or None,
                input_signature=input_signature(resolved))


def run_experiment(task: ExperimentTask, config: ml_collections.ConfigDict, *, model_dir: str,
                   strategy: tf.distribute.Strategy) -> dict:
    """Runs (or resumes) ``task`` on ``config`` in ``model_dir``.

    Everything is validated before anything is written to model_dir: the config, the devices,
    the model dir's identity and the data. Returns the driver's result dict plus 'config' (the
    resolved config), 'model' and what the task's `finish` adds.
    """
    resolved = task.resolve(config)
    bfloat16, jit_compile = strategy_lib.resolve_execution(resolved, strategy)
    if task.evaluates:
        strategy_lib.per_replica_batch_size(resolved.eval.batch_size, strategy, "eval batch size")
    chief = strategy_lib.is_chief(strategy)
    saved = _saved_config(model_dir)
    if saved is not None:
        checkpoints.check_same_model(saved, resolved, model_dir)
    train_dataset_fn, eval_dataset_fn = _dataset_fns(resolved, task.evaluates)
    if saved is not None:
        _warn_changed_data(saved, resolved, model_dir)
    if chief:
        checkpoints.save_experiment_config(model_dir, resolved)
    logging.info("%s on %s: %d steps of %d images (%d replicas), %s, XLA %s",
                 task.describe(resolved), strategy_lib.strategy_kind(strategy),
                 resolved.train.total_steps, resolved.train.batch_size,
                 strategy.num_replicas_in_sync, "mixed_bfloat16" if bfloat16 else "float32",
                 "on" if jit_compile else "off")
    if resolved.train.seed is not None:
        keras.utils.set_random_seed(int(resolved.train.seed))
    with strategy.scope():
        model = task.build(resolved, "mixed_bfloat16" if bfloat16 else "float32", jit_compile)
    context = RunContext(model_dir, strategy, chief, train_dataset_fn, eval_dataset_fn)
    plugins = task.plugins(model, resolved, context)
    result = driver.fit(
        model, train_dataset_fn, strategy=strategy, model_dir=model_dir,
        eval_dataset_fn=eval_dataset_fn, eval_fn=plugins.eval_fn,
        eval_use_ema=plugins.eval_use_ema, extra_callbacks=plugins.callbacks,
        summary_fn=plugins.summary_fn, extra_checkpoint_items=plugins.extra_checkpoint_items,
        **_loop_settings(resolved))
    result.update(config=resolved, model=model)
    task.finish(model, resolved, context, result)
    return result


def _wait_for_config(model_dir: str, timeout_s: float) -> None:
    """Continuous evaluation may start before training: wait for config.json to appear."""
    path = os.path.join(model_dir, checkpoints.CONFIG_FILE)
    deadline = time.time() + timeout_s
    if not tf.io.gfile.exists(path):
        logging.info("waiting up to %.0f s for training to start in %s", timeout_s, model_dir)
    while not tf.io.gfile.exists(path) and time.time() < deadline:
        time.sleep(1.0)


def evaluate_experiment(model_dir: str, *, task: ExperimentTask,
                        strategy: tf.distribute.Strategy,
                        data_overrides: Mapping[str, object] | None = None,
                        eval_batch_size: int | None = None, use_ema: bool = True,
                        continuous: bool = False, timeout_s: float | None = None,
                        checkpoint_path: str | None = None,
                        eval_steps: int | None = None) -> list[dict]:
    """Evaluates a model dir's checkpoints on its eval split; appends to eval_results.json.

    Args:
      model_dir: written by `run_experiment` (config.json + checkpoints).
      task: what the model dir holds: it checks config.json (`ExperimentTask.check_saved`,
        e.g. the architecture asked for) and rebuilds the model (`ExperimentTask.restorer`).
      strategy: evaluation strategy (the eval batch is split over its replicas).
      data_overrides: data-section keys to change, e.g. {'data_dir': ...} on another machine.
      eval_batch_size: global eval batch (default the config's eval.batch_size).
      use_ema: evaluate the EMA weights (default) or the raw weights.
      continuous: evaluate every new checkpoint until the last training step or ``timeout_s``
        seconds without a new checkpoint.
      checkpoint_path: evaluate this checkpoint only.
      eval_steps: batches per evaluation (default: the whole split).
    """
    if timeout_s is None and tf.io.gfile.exists(os.path.join(model_dir, checkpoints.CONFIG_FILE)):
        timeout_s = float(checkpoints.load_experiment_config(model_dir).eval.timeout_s)
    if continuous:
        _wait_for_config(model_dir, timeout_s if timeout_s is not None else 3600.0)
    config = checkpoints.load_experiment_config(model_dir)
    task.check_saved(config, model_dir)
    if checkpoint_path and not tf.io.gfile.exists(checkpoint_path + ".index"):
        raise checkpoints.NoCheckpointError(f"checkpoint {checkpoint_path!r} not found")
    if not continuous and not checkpoint_path:
        checkpoints.latest_checkpoint(model_dir)  # fail early and clearly
    from autonl_tf import data

    data_cfg = config.data
    for key, value in (data_overrides or {}).items():
        data_cfg[key] = value
    data_cfg = data.prepare(data_cfg)
    batch_size = int(eval_batch_size or config.eval.batch_size)
    strategy_lib.per_replica_batch_size(batch_size, strategy, "eval batch size")

    def eval_dataset_fn(input_context):
        return data.build_eval_dataset(data_cfg, batch_size, input_context)

    with strategy.scope():
        restorer = task.restorer(config)
    records = evaluation.evaluate_checkpoints(
        model_dir, eval_dataset_fn, restorer=restorer, strategy=strategy, use_ema=use_ema,
        continuous=continuous,
        timeout_s=timeout_s if timeout_s is not None else float(config.eval.timeout_s),
        checkpoint_path=checkpoint_path, steps=eval_steps or None,
        stop_at_step=int(config.train.total_steps), write_results=strategy_lib.is_chief(strategy),
        skip_evaluated=continuous)
    return records
