"""The programs behind train_main.py and eval_main.py, as library functions.

`train_experiment`: resolve the config, check the model dir, save config.json, build and compile
the recipe under the strategy, run the driver (optionally evaluating), export.
`evaluate_experiment`: evaluate the latest / a given / every new checkpoint of a model dir.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Mapping

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from autonl_tf.models import resolve_model_spec
from autonl_tf.training import checkpoints, driver, evaluation, recipe
from autonl_tf.training import strategy as strategy_lib

__all__ = ["EXPORT_AVAILABLE", "export_model_dir", "evaluate_experiment", "train_experiment"]

EXPORT_AVAILABLE = importlib.util.find_spec("autonl_tf.export.model_dir") is not None


class _EvalResultsWriter(keras.callbacks.Callback):
    """Appends every in-training evaluation to eval_results.json (chief only)."""

    def __init__(self, model_dir: str, chief: bool):
        super().__init__()
        self.model_dir = model_dir
        self.chief = chief

    def on_test_end(self, logs=None):
        if self.chief and logs:
            evaluation.append_eval_result(self.model_dir, {
                "step": int(logs["step"]), "checkpoint": f"ckpt-{int(logs['step'])}",
                "top1": logs["top1"], "top5": logs["top5"], "loss": logs["loss"],
                "num_images": logs["num_images"], "num_nonfinite": logs.get("num_nonfinite", 0),
                "ema": bool(logs["ema"]),
                "source": "train_and_eval"})


def export_model_dir(model_dir: str, export_dir: str, use_ema: bool = True) -> object | None:
    """Exports the latest checkpoint with the export library, if it is installed."""
    if not EXPORT_AVAILABLE:
        logging.warning("autonl_tf.export is not available: --export_dir ignored")
        return None
    from autonl_tf.export.model_dir import export_from_model_dir

    logging.info("Exporting %s to %s", model_dir, export_dir)
    return export_from_model_dir(model_dir, export_dir, use_ema=use_ema)


def _check_model_dir(model_dir: str, resolved: ml_collections.ConfigDict) -> None:
    """A model dir with checkpoints must hold the same network (else: one-line error)."""
    if not tf.io.gfile.exists(os.path.join(model_dir, checkpoints.CONFIG_FILE)):
        return
    saved = checkpoints.load_experiment_config(model_dir)
    if tf.train.latest_checkpoint(model_dir):
        checkpoints.check_same_model(saved, resolved, model_dir)


def _check_data(resolved: ml_collections.ConfigDict, mode: str) -> None:
    """The data config resolves and its splits exist (DataError otherwise)."""
    from autonl_tf import data
    from autonl_tf.data import sources

    data_cfg = data.prepare(resolved.data)
    sources.make_source(data_cfg, data_cfg.train_split)
    if mode == "train_and_eval":
        sources.make_source(data_cfg, data_cfg.eval_split)


# Data keys that define the training input stream (a change restarts the input position).
_INPUT_KEYS = ("dataset", "data_dir", "skip_corrupt", "image_size", "augment", "random_crop",
               "random_flip", "shuffle_buffer", "cache", "deterministic", "seed", "dtype",
               "train_split")


def input_signature(resolved: ml_collections.ConfigDict) -> str:
    """Short hash of what defines the training input stream (data keys, batch size)."""
    import hashlib
    import json

    described = {key: resolved.data.get(key) for key in _INPUT_KEYS}
    described["batch_size"] = resolved.train.batch_size
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _warn_changed_data(model_dir: str, resolved: ml_collections.ConfigDict) -> None:
    """Says which input keys changed since the run's previous config.json (resuming works)."""
    if not (tf.io.gfile.exists(os.path.join(model_dir, checkpoints.CONFIG_FILE))
            and tf.train.latest_checkpoint(model_dir)):
        return
    saved = checkpoints.load_experiment_config(model_dir)
    changes = [f"data.{key}: {saved.data.get(key)!r} -> {resolved.data.get(key)!r}"
               for key in _INPUT_KEYS if saved.data.get(key) != resolved.data.get(key)]
    if saved.train.get("batch_size") != resolved.train.batch_size:
        changes.append(f"train.batch_size: {saved.train.get('batch_size')} -> "
                       f"{resolved.train.batch_size}")
    if changes:
        logging.warning("resuming %s with a changed input (%s): the input pipeline restarts "
                        "from its beginning", model_dir, "; ".join(changes))


def train_experiment(config: ml_collections.ConfigDict, *, model_dir: str,
                     strategy: tf.distribute.Strategy, mode: str = "train",
                     export_dir: str | None = None) -> dict:
    """Trains (and with ``mode='train_and_eval'`` evaluates) the config's model in model_dir.

    Reruns of the same command resume from the latest checkpoint. Returns the driver's result
    dict plus 'config' (the resolved config), 'model' (the trained Keras model, raw weights) and
    'export' (the export result, if any).
    """
    if mode not in ("train", "train_and_eval"):
        raise ValueError(f"mode must be 'train' or 'train_and_eval', got {mode!r}")
    resolved = recipe.resolve_experiment(config)
    train = resolved.train
    bfloat16, jit_compile = recipe.resolve_execution(resolved, strategy)
    if mode == "train_and_eval":
        strategy_lib.per_replica_batch_size(resolved.eval.batch_size, strategy, "eval batch size")
    chief = strategy_lib.is_chief(strategy)

    _check_model_dir(model_dir, resolved)
    # Everything is validated before anything is written to model_dir: the data too.
    _check_data(resolved, mode)
    _warn_changed_data(model_dir, resolved)
    if chief:
        checkpoints.save_experiment_config(model_dir, resolved)
    logging.info("Training %s (%s) on %s: %d steps of %d images (%d replicas), lr %.4g, "
                 "%s, XLA %s", resolved.model.name, model_dir,
                 strategy_lib.strategy_kind(strategy), train.total_steps, train.batch_size,
                 strategy.num_replicas_in_sync, train.learning_rate,
                 "mixed_bfloat16" if bfloat16 else "float32", "on" if jit_compile else "off")
    if train.seed is not None:
        keras.utils.set_random_seed(int(train.seed))

    with strategy.scope():
        model = recipe.build_classifier(resolved,
                                        "mixed_bfloat16" if bfloat16 else "float32")
        recipe.compile_classifier(model, resolved, jit_compile=jit_compile)

    from autonl_tf import data

    def train_dataset_fn(input_context):
        return data.build_train_dataset(resolved.data, train.batch_size, input_context)

    eval_dataset_fn = None
    if mode == "train_and_eval":
        def eval_dataset_fn(input_context):
            return data.build_eval_dataset(resolved.data, resolved.eval.batch_size,
                                           input_context)

    result = driver.fit(
        model, train_dataset_fn, strategy=strategy, model_dir=model_dir,
        total_steps=train.total_steps, steps_per_loop=train.steps_per_loop,
        checkpoint_every_steps=train.checkpoint_every_steps,
        eval_dataset_fn=eval_dataset_fn, eval_steps=resolved.eval.steps or None,
        eval_every_steps=resolved.eval.every_steps or None,
        extra_callbacks=[_EvalResultsWriter(model_dir, chief)] if eval_dataset_fn else (),
        log_every_steps=train.log_every_steps, global_batch_size=train.batch_size,
        eval_use_ema=bool(resolved.eval.use_ema),
        max_checkpoints_to_keep=train.max_checkpoints_to_keep,
        checkpoint_input_pipeline=bool(train.checkpoint_input_pipeline),
        input_signature=input_signature(resolved))
    result["config"] = resolved
    result["model"] = model
    result["export"] = None
    if export_dir and chief:
        result["export"] = export_model_dir(model_dir, export_dir,
                                            use_ema=bool(resolved.eval.use_ema))
    return result


def _wait_for_config(model_dir: str, timeout_s: float) -> None:
    """Continuous evaluation may start before training: wait for config.json to appear."""
    path = os.path.join(model_dir, checkpoints.CONFIG_FILE)
    deadline = time.time() + timeout_s
    if not tf.io.gfile.exists(path):
        logging.info("waiting up to %.0f s for training to start in %s", timeout_s, model_dir)
    while not tf.io.gfile.exists(path) and time.time() < deadline:
        time.sleep(1.0)


def evaluate_experiment(model_dir: str, *, strategy: tf.distribute.Strategy,
                        data_overrides: Mapping[str, object] | None = None,
                        eval_batch_size: int | None = None, use_ema: bool = True,
                        continuous: bool = False, timeout_s: float | None = None,
                        checkpoint_path: str | None = None, arch: str | None = None,
                        eval_steps: int | None = None,
                        export_dir: str | None = None) -> list[dict]:
    """Evaluates a model dir's checkpoints on its eval split; appends to eval_results.json.

    Args:
      model_dir: written by train_experiment (config.json + checkpoints).
      strategy: evaluation strategy (the eval batch is split over its replicas).
      data_overrides: data-section keys to change, e.g. {'data_dir': ...} on another machine.
      eval_batch_size: global eval batch (default the config's eval.batch_size).
      use_ema: evaluate the EMA weights (default) or the raw weights.
      continuous: evaluate every new checkpoint until the last training step or ``timeout_s``
        seconds without a new checkpoint.
      checkpoint_path: evaluate this checkpoint only.
      arch: if given, must describe the model dir's network (else CheckpointMismatchError).
      eval_steps: batches per evaluation (default: the whole split).
      export_dir: export the latest (EMA) weights afterwards.
    """
    if timeout_s is None and tf.io.gfile.exists(os.path.join(model_dir, checkpoints.CONFIG_FILE)):
        timeout_s = float(checkpoints.load_experiment_config(model_dir).eval.timeout_s)
    if continuous:
        _wait_for_config(model_dir, timeout_s if timeout_s is not None else 3600.0)
    config = checkpoints.load_experiment_config(model_dir)
    if arch is not None:
        requested = ml_collections.ConfigDict(config.to_dict())
        spec = resolve_model_spec(arch)
        requested.model.arch, requested.model.name = spec.arch_string, spec.name
        checkpoints.check_same_model(config, requested, model_dir)
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

    records = evaluation.evaluate_checkpoints(
        model_dir, eval_dataset_fn, strategy=strategy, use_ema=use_ema, continuous=continuous,
        timeout_s=timeout_s if timeout_s is not None else float(config.eval.timeout_s),
        checkpoint_path=checkpoint_path, steps=eval_steps or None,
        stop_at_step=int(config.train.total_steps), write_results=strategy_lib.is_chief(strategy),
        skip_evaluated=continuous)
    if export_dir and strategy_lib.is_chief(strategy):
        export_model_dir(model_dir, export_dir, use_ema=use_ema)
    return records
