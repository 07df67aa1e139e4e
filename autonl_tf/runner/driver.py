"""The generic training driver: multi-step host loop, checkpoints, resumption, NaN guard, logs.

Used by train_main.py (the retraining recipe) and by the search (a supernet with its own
``train_step``, two optimizers and extra metrics). The model is any compiled Keras model created
under ``strategy.scope()``; each step is the model's own ``train_step``, so whatever it does
(losses, several optimizers, metrics) is what runs.

Why a small host loop instead of ``model.fit`` + callbacks (Keras 3.15, TF 2.21):

* ``fit`` ends every call with ``optimizer.finalize_variable_values``, which overwrites the
  weights with their EMA when ``use_ema=True``. Calling ``fit`` once per checkpoint interval, or
  saving a checkpoint after ``fit`` returns, would train on / store EMA weights as raw weights.
* ``fit``'s ``steps_per_execution > 1`` loop (``tf.while_loop`` over optionals) fails under
  MirroredStrategy ("You must feed a value for placeholder tensor"), and with
  ``steps_per_execution=1`` every step is a host round trip.
* ``BackupAndRestore``/``ModelCheckpoint`` save from ``on_*_end`` hooks whose logs may already
  be NaN with no guarantee the NaN check runs first; ``TerminateOnNaN`` only stops training.

So: one ``tf.function`` runs ``n`` steps (``strategy.run(model.train_step)`` in a ``tf.range``
loop, n a tensor: one trace for every chunk size, one copy of the step in the graph; the step
itself is XLA-compiled when ``model.jit_compile``); after each chunk the host checks the loss for
NaN/Inf *before* any save, then logs, checkpoints (`tf.train.CheckpointManager`, atomic
"latest"), evaluates, and calls the callbacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from autonl_tf.errors import Preempted, RunFailure
from autonl_tf.runner import checkpoints as checkpoints_lib
from autonl_tf.runner import progress
from autonl_tf.runner import strategy as strategy_lib

__all__ = [
    "CheckpointCallback",
    "TrainingDivergedError",
    "TrainingInterruptedError",
    "fit",
]


class TrainingDivergedError(RunFailure, RuntimeError):
    """The loss (or the weights) became NaN/Inf; the last good checkpoint is left untouched."""

    def __init__(self, message: str, step: int, last_checkpoint: str | None):
        super().__init__(message)
        self.step = step
        self.last_checkpoint = last_checkpoint


class TrainingInterruptedError(Preempted, RuntimeError):
    """SIGTERM (preemption) received: a checkpoint was written, rerun the command to resume."""

    def __init__(self, message: str, step: int, checkpoint: str | None):
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


class CheckpointCallback(keras.callbacks.Callback):
    """A Keras callback with one more hook, called after every checkpoint the driver writes.

    ``on_checkpoint`` runs on every worker (collective ops inside are safe); ``self.is_chief``
    says whether this process owns the model dir (only the chief should write files there).
    """

    is_chief: bool = True

    def on_checkpoint(self, step: int, checkpoint_path: str, logs: Mapping[str, float]) -> None:
        """Called after the checkpoint of ``step`` is complete at ``checkpoint_path``."""


@dataclasses.dataclass
class _Schedule:
    total_steps: int
    steps_per_loop: int
    log_every: int
    checkpoint_every: int
    eval_every: int

    def due(self, step: int, every: int) -> bool:
        return step >= self.total_steps or (every > 0 and step % every == 0)

    def next_chunk(self, step: int) -> int:
        """Steps until the next boundary (log/checkpoint/eval/end), at most steps_per_loop."""
        limit = min(self.steps_per_loop, self.total_steps - step)
        for every in (self.log_every, self.checkpoint_every, self.eval_every):
            if every > 0:
                limit = min(limit, every - step % every)
        return max(1, limit)


def _replica_reducer(strategy: tf.distribute.Strategy) -> Callable:
    """How per-replica step outputs become one value: mean (Keras's 'auto'; first on TPU)."""
    if strategy_lib.is_tpu_strategy(strategy):
        return lambda v: strategy.experimental_local_results(v)[0]

    def mean(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
        return value

    return mean


def _make_train_loop(model: keras.Model, strategy: tf.distribute.Strategy) -> Callable:
    """tf.function(iterator, n) running n >= 1 training steps; returns the last step's logs."""
    reduce = _replica_reducer(strategy)

    # Like Keras's one_step_on_data: the distributed step is XLA-compiled as a whole. Not on
    # TPU, where TPUStrategy compiles the replica function with XLA anyway.
    jit_compile = bool(model.jit_compile) and not strategy_lib.is_tpu_strategy(strategy)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def one_step(batch):
        outputs = strategy.run(model.train_step, args=(batch,))
        return tf.nest.map_structure(reduce, outputs)

    @tf.function
    def train_loop(iterator, num_steps):
        # The step appears once in this graph, as the loop body: a first call before the loop
        # (to give `logs` its structure) would put a second copy of the whole step into the
        # graph that is optimised and instantiated on the first call (a search: 14k instead of
        # ~7k nodes; 16 -> 12 s to its first step on CPU). The loop starts from zeros shaped
        # like the step's outputs, read from its (single) trace; a log whose shape is not
        # static (e.g. per example) starts empty and keeps its partial shape as invariant.
        step = one_step.get_concrete_function(iterator.element_spec)
        outputs = tf.nest.flatten(step.structured_outputs)
        initial = [tf.zeros([d or 0 for d in t.shape] if t.shape.rank is not None else [],
                            t.dtype) for t in outputs]
        logs = tf.nest.pack_sequence_as(step.structured_outputs, initial)
        shapes = tf.nest.pack_sequence_as(step.structured_outputs, [t.shape for t in outputs])
        for _ in tf.range(num_steps):
            tf.autograph.experimental.set_loop_options(shape_invariants=[(logs, shapes)])
            logs = one_step(next(iterator))
        return logs

    return train_loop


@tf.function
def _all_finite(variables):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables])


def _to_floats(logs: Mapping[str, Any]) -> dict[str, float]:
    result = {}
    for name, value in logs.items():
        array = np.asarray(value)
        if array.size == 1:
            result[name] = float(array.reshape(()))
    return result


def _repeating(dataset_fn: Callable) -> Callable:
    """The train dataset may be finite; the driver counts steps, not epochs: repeat it."""
    def fn(input_context):
        dataset = dataset_fn(input_context)
        if dataset.cardinality() != tf.data.INFINITE_CARDINALITY:
            dataset = dataset.repeat()
        return dataset
    return fn


def _is_checkpointable(iterator) -> bool:
    """Single-replica tf.data iterators are; TF 2.21's multi-replica DistributedIterator is not."""
    try:
        tf.train.Checkpoint(iterator=iterator)
    except ValueError:
        logging.info("The input iterator (%s) cannot be checkpointed: a resumed run restarts the "
                     "input pipeline (reshuffled)", type(iterator).__name__)
        return False
    return True


def _current_learning_rate(model: keras.Model) -> float | None:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        return float(np.asarray(optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return None


def _build_model_state(model: keras.Model, strategy: tf.distribute.Strategy, dataset) -> None:
    """Creates optimizer slots and metric variables before the first step and restore.

    Keras creates them lazily in the first train_step, which under tf.distribute would create
    variables inside a replica function, and restore would have no slots to fill.
    """
    def replica_spec(spec):  # PerReplicaSpec under multi-replica strategies: any replica's
        return spec._value_specs[0] if hasattr(spec, "_value_specs") else spec

    # TensorSpecs stand in for a batch: Keras only reads .shape/.dtype to build symbolically.
    element = tf.nest.map_structure(replica_spec, dataset.element_spec)
    with strategy.scope():
        if hasattr(model, "_symbolic_build"):  # what fit() does; builds metrics & optimizer
            model._symbolic_build(data_batch=element)
        if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)


class _SigtermWatcher:
    """Turns SIGTERM (preemption notice) into a flag the loop checks between chunks."""

    def __init__(self, enabled: bool):
        self.requested = False
        self._previous = None
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self._enabled:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: checkpointing at the end of the current chunk")
        self.requested = True

    def __exit__(self, *exc):
        if self._enabled:
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
        return False


def fit(
    model: keras.Model,
    train_dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset],
    *,
    strategy: tf.distribute.Strategy,
    model_dir: str,
    total_steps: int,
    steps_per_loop: int = 1,
    checkpoint_every_steps: int = 1000,
    eval_dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset] | None = None,
    eval_steps: int | None = None,
    eval_every_steps: int | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    extra_checkpoint_items: Mapping[str, Any] | None = None,
    log_every_steps: int = 100,
    summary_fn: Callable[[int, Mapping[str, float]], Mapping[str, float] | None] | None = None,
    global_batch_size: int | None = None,
    eval_fn: Callable[[keras.Model], Mapping[str, float]] | None = None,
    eval_use_ema: bool = True,
    max_checkpoints_to_keep: int = 5,
    checkpoint_input_pipeline: bool = True,
    handle_sigterm: bool = True,
    input_signature: str = "",
) -> dict:
    """Trains ``model`` to ``total_steps``, resuming from the latest checkpoint in ``model_dir``.

    Args:
      model: compiled Keras model built under ``strategy.scope()``; ``model.train_step`` is
        the step (a custom subclass may update several optimizers and return extra metrics).
        Its returned logs must include ``loss`` (checked for NaN/Inf after every chunk).
      train_dataset_fn: InputContext -> per-replica-batched dataset of training batches (fed to
        ``strategy.distribute_datasets_from_function``); repeated if finite.
      strategy: the distribution strategy.
      model_dir: checkpoints (``ckpt-<step>``), TensorBoard logs (``train/``, ``eval/``).
      total_steps: train until the global step reaches this.
      steps_per_loop: steps per host call (TPU ``iterations_per_loop``); chunks also stop at
        every log/checkpoint/eval boundary.
      checkpoint_every_steps: checkpoint period (0 = only at the end); always at the end.
      eval_dataset_fn: InputContext -> eval dataset of (images, labels, weights); evaluated every
        ``eval_every_steps`` (None/0 = at every checkpoint) and at the end.
      eval_steps: eval batches per evaluation (None = the whole finite dataset).
      extra_callbacks: Keras callbacks: on_train_begin/end, on_train_batch_end(step, logs) after
        every chunk, on_test_end(metrics + step + ema) after every evaluation, and
        ``on_checkpoint(step, path, logs)`` (see `CheckpointCallback`).
      extra_checkpoint_items: more trackables to checkpoint, e.g. {'arch_optimizer': opt} for
        optimizers the model does not expose as ``model.optimizer``. Build them (``opt.build``)
        before calling so their slots are restored.
      log_every_steps: console + TensorBoard period (0 = only at the end).
      summary_fn: called at every log point as ``summary_fn(step, logs)``, inside the train
        summary writer; may write its own tf.summary ops and/or return extra scalars to log.
      global_batch_size: images per step over all replicas (for images/s).
      eval_fn: model -> metrics dict, replaces the default exact classifier evaluation.
      eval_use_ema: evaluate with the optimizer's EMA weights swapped in (when it has them).
      max_checkpoints_to_keep: older checkpoints are deleted.
      checkpoint_input_pipeline: save the tf.data iterator position where tf.data allows it:
        single-replica runs (TF 2.21 cannot checkpoint multi-replica distributed iterators;
        skipped on TPU and multi-worker too). Elsewhere a resumed run restarts the input.
      handle_sigterm: on SIGTERM, checkpoint after the current chunk and raise
        `TrainingInterruptedError` (single host).
      input_signature: identifies the input pipeline's definition (data config, batch size);
        the saved input position is keyed by it, so a run resumed with another data config
        restarts the input (with a warning) instead of failing to restore the iterator.

    Returns:
      {'step', 'initial_step', 'resumed_from', 'train_logs', 'eval', 'checkpoint',
       'images_per_second', 'seconds', 'skipped_records'} (skipped_records: {shard: damaged
      records skipped} of the data.skip_corrupt pipelines, see `diagnose`).

    Raises:
      TrainingDivergedError: NaN/Inf loss or weights; nothing was saved for that chunk.
      TrainingInterruptedError: SIGTERM; a checkpoint of the current step was saved.
      CheckpointMismatchError: the latest checkpoint does not fit this model.
      ModelDirBusyError: another process is training in model_dir.
      DataError: the input pipeline met a damaged record (named in the message).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    from autonl_tf.data import diagnose

    settings = _Settings(
        total_steps=total_steps, steps_per_loop=max(1, steps_per_loop),
        checkpoint_every=max(0, checkpoint_every_steps), log_every=max(0, log_every_steps),
        eval_every=max(0, eval_every_steps or checkpoint_every_steps),
        eval_steps=eval_steps, eval_use_ema=eval_use_ema,
        global_batch_size=global_batch_size, max_checkpoints_to_keep=max_checkpoints_to_keep,
        checkpoint_input_pipeline=checkpoint_input_pipeline, handle_sigterm=handle_sigterm,
        input_signature=input_signature)
    chief = strategy_lib.is_chief(strategy)
    with contextlib.ExitStack() as stack:
        stack.enter_context(diagnose.explain_input_errors())
        lock_held = chief and stack.enter_context(checkpoints_lib.hold_model_dir(model_dir))
        checkpoints_lib.remove_abandoned_temp_dirs(model_dir, lock_held)
        mark = diagnose.registration_mark()
        run = _TrainingRun(model, train_dataset_fn, strategy, model_dir, settings,
                           eval_dataset_fn=eval_dataset_fn, eval_fn=eval_fn,
                           callbacks=list(extra_callbacks), summary_fn=summary_fn,
                           extra_checkpoint_items=dict(extra_checkpoint_items or {}))
        result = run.train()
        # data.skip_corrupt: how many damaged records the pipelines built here skipped.
        result["skipped_records"] = diagnose.report_skipped_records(
            mark, os.path.join(model_dir, "train") if chief else None, result["step"])
        return result


@dataclasses.dataclass(frozen=True)
class _Settings:
    """`fit`'s schedule, checkpoint and evaluation arguments (see there)."""

    total_steps: int
    steps_per_loop: int
    checkpoint_every: int
    log_every: int
    eval_every: int  # used only when there is an evaluator
    eval_steps: int | None
    eval_use_ema: bool
    global_batch_size: int | None
    max_checkpoints_to_keep: int
    checkpoint_input_pipeline: bool
    handle_sigterm: bool
    input_signature: str


class _TrainingRun:
    """One call of `fit` once the model dir is held: set-up, restore, the host loop."""

    def __init__(self, model, train_dataset_fn, strategy, model_dir, settings: _Settings, *,
                 eval_dataset_fn, eval_fn, callbacks, summary_fn, extra_checkpoint_items):
        self.start_time = time.time()
        self.model, self.strategy, self.model_dir = model, strategy, model_dir
        self.settings = settings
        self.chief = strategy_lib.is_chief(strategy)
        self.workers = strategy_lib.num_workers(strategy)
        self.evaluate = eval_fn or (_default_evaluator(model, strategy, eval_dataset_fn,
                                                       settings.eval_steps)
                                    if eval_dataset_fn else None)
        self.schedule = _Schedule(settings.total_steps, settings.steps_per_loop,
                                  settings.log_every, settings.checkpoint_every,
                                  settings.eval_every if self.evaluate else 0)
        self.callbacks = callbacks
        self.summary_fn = summary_fn
        tf.io.gfile.makedirs(model_dir)
        train_dataset = strategy.distribute_datasets_from_function(_repeating(train_dataset_fn))
        self.iterator = iter(train_dataset)
        _build_model_state(model, strategy, train_dataset)
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.last_checkpoint = self.resumed_from = tf.train.latest_checkpoint(model_dir)
        self._set_up_checkpoint(extra_checkpoint_items)
        self.step = self.initial_step = int(self.global_step.numpy())
        self.logs: dict[str, float] = {}
        self.eval_metrics: dict | None = None
        self.ema_variables = checkpoints_lib.moving_average_variables(model)
        self.meter = progress.ThroughputMeter(settings.total_steps, settings.global_batch_size)
        self.train_loop = _make_train_loop(model, strategy)

    # -- checkpoints ---------------------------------------------------------------------------
    def _checkpoint_items(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """Everything an exact resume needs: model, optimizer(s), step."""
        items: dict[str, Any] = {"model": self.model, "model_variables": list(self.model.variables),
                                 "global_step": self.global_step}
        if getattr(self.model, "optimizer", None) is not None:
            items["optimizer"] = self.model.optimizer
        for name, item in extra.items():
            if name in items:
                raise ValueError(f"extra_checkpoint_items key {name!r} is reserved")
            if isinstance(item, keras.optimizers.Optimizer) and not item.built:
                raise ValueError(f"extra_checkpoint_items[{name!r}]: build the optimizer "
                                 "(optimizer.build(variables)) before fit so its slots restore")
            items[name] = item
        return items

    def _input_position_key(self) -> str | None:
        """The checkpoint key of the input iterator, when its position can be saved.

        Keyed by the replica count and the input's definition: a run resumed under another
        strategy or with another data config restarts the input instead of failing.
        """
        settings, strategy = self.settings, self.strategy
        if not (settings.checkpoint_input_pipeline and self.workers == 1
                and _is_checkpointable(self.iterator)
                and not strategy_lib.is_tpu_strategy(strategy)):
            return None
        key = f"train_iterator_{strategy.num_replicas_in_sync}_replicas"
        return f"{key}_{settings.input_signature}" if settings.input_signature else key

    def _set_up_checkpoint(self, extra: Mapping[str, Any]) -> None:
        """Creates the checkpoint and its manager, and restores the latest checkpoint."""
        items = self._checkpoint_items(extra)
        save_items, restore_items = dict(items), dict(items)
        latest = self.last_checkpoint
        iterator_key = self._input_position_key()
        if iterator_key:
            save_items[iterator_key] = self.iterator
            saved_keys = checkpoints_lib.checkpoint_keys(latest) if latest else set()
            if iterator_key in saved_keys:
                restore_items[iterator_key] = self.iterator
            elif any(key.startswith("train_iterator_") for key in saved_keys):
                logging.warning("The input pipeline changed since checkpoint %s (data config, "
                                "batch size or replicas): its input position does not apply, "
                                "the input starts from the beginning", latest)
            elif latest:
                logging.info("The checkpoint has no input position for %d replica(s): the "
                             "input pipeline starts from the beginning",
                             self.strategy.num_replicas_in_sync)
        self.checkpoint = tf.train.Checkpoint(**save_items)
        # Non-chief workers must take part in saving (collectives) but write to a scratch dir.
        self.save_dir = (self.model_dir if self.chief
                         else tempfile.mkdtemp(prefix="autonl_worker_ckpt_"))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.save_dir, max_to_keep=self.settings.max_checkpoints_to_keep,
            checkpoint_name="ckpt")
        if latest:
            checkpoints_lib.restore_checkpoint(tf.train.Checkpoint(**restore_items), latest,
                                               "model/optimizer")
            logging.info("Resumed from checkpoint %s at step %d", latest,
                         int(self.global_step.numpy()))

    def save(self, reason: str) -> str:
        """Checkpoints the current step, after checking every weight is finite."""
        for what, variables in (("weights", self.model.trainable_variables),
                                ("EMA weights (what eval and export use)", self.ema_variables)):
            if variables and not bool(_all_finite(variables)):
                raise TrainingDivergedError(
                    f"{what} are NaN/Inf at step {self.step}; not saving. Last good "
                    f"checkpoint: {self.last_checkpoint or 'none'}. Lower the learning rate or "
                    "check the data.", self.step, self.last_checkpoint)
        path = self.manager.save(checkpoint_number=self.step)
        if self.chief:
            self.last_checkpoint = path
            logging.info("Saved checkpoint %s (%s)", path, reason)
        for callback in self.callbacks:
            if hasattr(callback, "on_checkpoint"):
                callback.on_checkpoint(self.step, path, dict(self.logs))
        if not self.chief:  # the scratch copy has served its purpose (collective save)
            shutil.rmtree(self.save_dir, ignore_errors=True)
        return path

    # -- the loop ------------------------------------------------------------------------------
    def train(self) -> dict:
        """Runs chunks until the last step; returns `fit`'s result (without skipped_records)."""
        total_steps = self.settings.total_steps
        if self.step >= total_steps:
            logging.info("Already at step %d >= total_steps %d: nothing to train", self.step,
                         total_steps)
        callback_list = keras.callbacks.CallbackList(self.callbacks, model=self.model)
        for callback in self.callbacks:
            if isinstance(callback, CheckpointCallback):
                callback.is_chief = self.chief
        callback_list.on_train_begin()
        self.model.reset_metrics()
        writer = (tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
                  if self.chief else tf.summary.create_noop_writer())
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(writer.close)
            if not self.chief:
                cleanup.callback(shutil.rmtree, self.save_dir, ignore_errors=True)
            sigterm = cleanup.enter_context(
                _SigtermWatcher(self.settings.handle_sigterm and self.workers == 1))
            while self.step < total_steps:
                self._run_chunk(callback_list)
                if self.schedule.due(self.step, self.schedule.log_every):
                    self._log(writer)
                self._checkpoint_and_evaluate(callback_list, sigterm)
            callback_list.on_train_end(self.logs)
        return self._result()

    def _run_chunk(self, callback_list) -> None:
        """Trains up to the next boundary; refuses a non-finite loss before anything is saved."""
        count = self.schedule.next_chunk(self.step)
        self.logs = _to_floats(self.train_loop(self.iterator, tf.constant(count, tf.int32)))
        first_chunk = self.step == self.initial_step
        self.step += count
        self.global_step.assign(self.step)
        if first_chunk:  # tracing/compilation is not throughput
            self.meter.start(self.step)
        checked = {"loss": self.logs["loss"]} if "loss" in self.logs else self.logs
        bad = [value for value in checked.values() if not math.isfinite(value)]
        if bad:
            raise TrainingDivergedError(
                f"loss is {'/'.join(f'{v}' for v in bad)} at step {self.step} (chunk "
                f"{self.step - count + 1}-{self.step}); stopped without saving. Last good "
                f"checkpoint: {self.last_checkpoint or 'none'}. Lower the learning rate or "
                "check the data.", self.step, self.last_checkpoint)
        callback_list.on_train_batch_end(self.step, self.logs)

    def _log(self, writer) -> None:
        """Console line + TensorBoard scalars (and the caller's summary_fn)."""
        step, meter = self.step, self.meter
        meter.update(step)
        scalars = dict(self.logs)
        learning_rate = _current_learning_rate(self.model)
        if learning_rate is not None:
            scalars["learning_rate"] = learning_rate
        with writer.as_default(step=step):
            extra = self.summary_fn(step, self.logs) if self.summary_fn else None
        scalars.update(_to_floats(extra or {}))
        if meter.images_per_second is not None:
            scalars["images_per_second"] = meter.images_per_second
        if meter.steps_per_second is not None:
            scalars["steps_per_second"] = meter.steps_per_second
        progress.write_scalars(writer, step, scalars)
        total = self.settings.total_steps
        logging.info("step %d/%d (%.1f%%) | %s | ETA %s", step, total, 100.0 * step / total,
                     progress.format_logs(scalars),
                     progress.format_duration(meter.eta_seconds(step)))
        self.model.reset_metrics()

    def _checkpoint_and_evaluate(self, callback_list, sigterm: _SigtermWatcher) -> None:
        """The checkpoint and evaluation due at this step; a SIGTERM saves and stops."""
        step, schedule = self.step, self.schedule
        if schedule.due(step, schedule.checkpoint_every):
            self.save(f"step {step}")
        elif sigterm.requested:
            path = self.save("SIGTERM")
            raise TrainingInterruptedError(
                f"interrupted by SIGTERM at step {step}; checkpoint {path} saved, rerun the "
                "same command to resume", step, path)
        if self.evaluate and schedule.due(step, schedule.eval_every):
            callback_list.on_test_begin()
            self.eval_metrics = _run_eval(self.evaluate, self.model, self.settings.eval_use_ema,
                                          step, self.chief, self.model_dir)
            callback_list.on_test_end(dict(self.eval_metrics))
        if sigterm.requested:
            raise TrainingInterruptedError(
                f"interrupted by SIGTERM at step {step}; checkpoint {self.last_checkpoint} "
                "saved, rerun the same command to resume", step, self.last_checkpoint)

    def _result(self) -> dict:
        return {
            "step": self.step,
            "initial_step": self.initial_step,
            "resumed_from": self.resumed_from,
            "train_logs": self.logs,
            "eval": self.eval_metrics,
            "checkpoint": (self.last_checkpoint if self.chief
                           else tf.train.latest_checkpoint(self.model_dir)),
            "images_per_second": self.meter.average_images_per_second(self.step),
            "seconds": time.time() - self.start_time,
        }


def _default_evaluator(model, strategy, eval_dataset_fn, eval_steps) -> Callable:
    """Exact weighted top-1/top-5 on (images, labels, weights) batches."""
    from autonl_tf.runner import evaluation

    dataset = strategy.distribute_datasets_from_function(eval_dataset_fn)
    evaluator = evaluation.make_classifier_evaluator(model, strategy)

    def evaluate(model_to_evaluate):
        return evaluation.evaluate_classifier(model_to_evaluate, strategy, dataset,
                                              steps=eval_steps, evaluator=evaluator)
    return evaluate


def _run_eval(evaluate, model, use_ema, step, chief, model_dir) -> dict:
    optimizer = getattr(model, "optimizer", None)
    with checkpoints_lib.ema_weights(model, optimizer, enabled=use_ema) as ema_used:
        metrics = dict(evaluate(model))
    metrics["ema"] = ema_used
    logging.info("eval at step %d (%s weights): %s", step, "EMA" if ema_used else "raw",
                 progress.format_logs({k: v for k, v in metrics.items()
                                       if isinstance(v, int | float) and not isinstance(v, bool)}))
    if chief:
        from autonl_tf.runner import evaluation

        evaluation.write_eval_summaries(model_dir, step, metrics)
    metrics["step"] = step
    return metrics
