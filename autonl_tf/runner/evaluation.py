"""Exact top-1/top-5 evaluation, eval_results.json, and the (continuous) evaluator.

The eval dataset yields ``(images, labels, weights)`` with weight 0 for padding: every sum here
is weighted, so padded images count 0 and every real image of the split counts exactly once
(also across replicas and hosts). Counts are reduced with SUM over replicas and accumulated in
float64 on the host.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import keras
import tensorflow as tf
from absl import logging

from autonl_tf import files
from autonl_tf.runner import checkpoints, progress

__all__ = [
    "EvalResultsWriter",
    "Restorer",
    "append_eval_result",
    "evaluate_checkpoints",
    "evaluate_classifier",
    "make_classifier_evaluator",
    "read_eval_results",
    "write_eval_summaries",
]



def _unpack(batch):
    if isinstance(batch, Mapping):
        raise ValueError("eval batches must be (images, labels[, weights]) tuples")
    images, labels, *rest = batch
    weights = rest[0] if rest else tf.ones_like(labels, tf.float32)
    return images, labels, weights


def make_classifier_evaluator(model: keras.Model, strategy: tf.distribute.Strategy,
                              top_k: int = 5) -> Callable:
    """A tf.function: distributed eval batch -> summed [correct@1, correct@k, loss, weight,
    non-finite rows].

    ``top_k`` is capped at the number of classes. Ties in the logits count against the label
    (top_k indices are compared, unlike ``in_top_k`` which counts ties as hits). An image whose
    logits hold a NaN/Inf counts as a miss, adds nothing to the loss sum and is counted apart,
    so one diverging image cannot turn the mean loss into NaN unnoticed.
    """
    k = min(top_k, int(model.output_shape[-1]))

    def replica_sums(batch):
        images, labels, weights = _unpack(batch)
        logits = tf.cast(model(images, training=False), tf.float32)
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        weights = tf.cast(tf.reshape(weights, [-1]), tf.float32)
        finite = tf.reduce_all(tf.math.is_finite(logits), axis=1)
        finite_weights = tf.where(finite, weights, 0.0)
        logits = tf.where(finite[:, None], logits, 0.0)  # rows counted apart, kept out of sums
        top = tf.math.top_k(logits, k=k).indices
        hits = tf.equal(top, labels[:, None])
        correct1 = tf.cast(hits[:, 0], tf.float32)
        correctk = tf.cast(tf.reduce_any(hits, axis=1), tf.float32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        # Padding may hold any label; its loss is finite but weighted by 0.
        return tf.stack([tf.reduce_sum(finite_weights * correct1),
                         tf.reduce_sum(finite_weights * correctk),
                         tf.reduce_sum(finite_weights * loss), tf.reduce_sum(weights),
                         tf.reduce_sum(weights - finite_weights)])

    @tf.function
    def step(batch):
        sums = strategy.run(replica_sums, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    return step


def evaluate_classifier(model: keras.Model, strategy: tf.distribute.Strategy,
                        dataset: Iterable, steps: int | None = None,
                        evaluator: Callable | None = None) -> dict:
    """Exact weighted top-1/top-5/cross-entropy over a (distributed) eval dataset.

    Args:
      model: classifier, [b, S, S, 3] -> [b, classes] logits.
      strategy: the strategy the dataset is distributed with.
      dataset: a distributed dataset (``strategy.distribute_datasets_from_function``) yielding
        (images, labels, weights); iterated once from the start.
      steps: stop after this many global batches (None/0 = the whole, finite dataset).
      evaluator: a step from `make_classifier_evaluator` (reused across calls to avoid retracing).

    Returns:
      {'top1', 'top5', 'loss', 'num_images', 'num_nonfinite'}: accuracies in [0, 1] over all
      real (weight-1) images, images with non-finite logits counting as misses; mean
      cross-entropy (without label smoothing) over the images with finite logits (None when
      there is none); number of real images; number of them with NaN/Inf logits.
    """
    evaluator = evaluator or make_classifier_evaluator(model, strategy)
    totals = [0.0] * 5
    for index, batch in enumerate(dataset):
        if steps and index >= steps:
            break
        sums = evaluator(batch).numpy()
        totals = [t + float(s) for t, s in zip(totals, sums, strict=True)]
    correct1, correct5, loss, count, nonfinite = totals
    if count <= 0:
        raise ValueError("the eval dataset yielded no (weight > 0) images")
    num_nonfinite = int(round(nonfinite))
    finite_count = count - num_nonfinite
    if num_nonfinite:
        logging.warning("%d of %d eval images give NaN/Inf logits: counted as misses and left "
                        "out of the loss (see README, Numerics)", num_nonfinite, int(round(count)))
    return {"top1": correct1 / count, "top5": correct5 / count,
            "loss": loss / finite_count if finite_count > 0 else None,
            "num_images": int(round(count)), "num_nonfinite": num_nonfinite}


def json_safe(value):
    """Non-finite floats -> None, recursively: eval_results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# ------------------------------------------------------------------------ eval_results.json


def read_eval_results(model_dir: str) -> list[dict]:
    path = os.path.join(model_dir, files.EVAL_RESULTS_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        text = f.read().strip()
    return json.loads(text) if text else []


def append_eval_result(model_dir: str, record: Mapping) -> str:
    """Appends one record to ``<model_dir>/eval_results.json`` (a JSON list), atomically.

    A record of the same checkpoint step, weights (EMA or raw) and source replaces the earlier
    one, so a rerun does not list a checkpoint twice. Non-finite numbers are written as null.
    """
    def key(r: Mapping) -> tuple:
        return r.get("step"), r.get("ema"), r.get("source")

    records = [r for r in read_eval_results(model_dir) if key(r) != key(record)]
    records.append(dict(record))
    return files.write_json_atomic(os.path.join(model_dir, files.EVAL_RESULTS_FILE),
                                   json_safe(records))


# ---------------------------------------------------------------------------- the evaluator


class Restorer(Protocol):
    """A model rebuilt once from a model dir's config.json, restorable from any checkpoint."""

    model: keras.Model

    def restore(self, checkpoint_path: str, use_ema: bool = True) -> bool:
        """Loads the checkpoint (its EMA weights with ``use_ema``); returns whether EMA weights
        are in use."""
        ...


class EvalResultsWriter(keras.callbacks.Callback):
    """Appends every in-training evaluation (the driver's ``on_test_end`` logs) to
    eval_results.json (chief only)."""

    def __init__(self, model_dir: str, chief: bool):
        super().__init__()
        self.model_dir = model_dir
        self.chief = chief

    def on_test_end(self, logs=None):
        if self.chief and logs:
            append_eval_result(self.model_dir, {
                "step": int(logs["step"]), "checkpoint": f"ckpt-{int(logs['step'])}",
                "top1": logs["top1"], "top5": logs["top5"], "loss": logs["loss"],
                "num_images": logs["num_images"], "num_nonfinite": logs.get("num_nonfinite", 0),
                "ema": bool(logs["ema"]),
                "source": "train_and_eval"})



def evaluate_checkpoints(
    model_dir: str,
    dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset],
    *,
    strategy: tf.distribute.Strategy,
    use_ema: bool = True,
    continuous: bool = False,
    timeout_s: float = 3600.0,
    checkpoint_path: str | None = None,
    steps: int | None = None,
    stop_at_step: int | None = None,
    write_results: bool = True,
    skip_evaluated: bool = True,
    restorer: Restorer,
) -> list[dict]:
    """Evaluates the latest checkpoint, or every new one as it appears (``continuous``).

    Continuous mode follows `tf.train.checkpoints_iterator`: it waits for checkpoints newer than
    the last one evaluated, and stops after ``timeout_s`` seconds without a new one, or once a
    checkpoint at ``stop_at_step`` (the end of training) has been evaluated. Checkpoints already
    in eval_results.json (same step and EMA setting) are skipped when ``skip_evaluated``.

    ``restorer`` holds the model (built under ``strategy.scope()``, e.g.
    `autonl_tf.recipe.recipe.ClassifierRestorer`); each checkpoint is restored into it.

    Returns the records written (step, checkpoint, top1, top5, loss, num_images, ema, ...).
    """
    config = checkpoints.load_experiment_config(model_dir)
    evaluator = make_classifier_evaluator(restorer.model, strategy)
    dataset = strategy.distribute_datasets_from_function(dataset_fn)
    done = {(r.get("step"), r.get("ema")) for r in read_eval_results(model_dir)} \
        if skip_evaluated else set()

    if checkpoint_path:
        paths: Iterable[str] = [checkpoint_path]
    elif continuous:
        paths = tf.train.checkpoints_iterator(model_dir, min_interval_secs=1,
                                              timeout=timeout_s)
    else:
        paths = [checkpoints.latest_checkpoint(model_dir)]

    records = []
    for path in paths:
        step = checkpoints.checkpoint_step(path)
        if (step, bool(use_ema and config.train.use_ema)) in done:
            logging.info("step %d already evaluated; skipping %s", step, path)
        else:
            try:
                start = time.time()
                used_ema = restorer.restore(path, use_ema=use_ema)
                metrics = evaluate_classifier(restorer.model, strategy, dataset, steps=steps,
                                              evaluator=evaluator)
            except tf.errors.NotFoundError:
                # Deleted by the trainer's max_to_keep between listing and reading: skip it.
                logging.warning("checkpoint %s vanished before it could be read; skipping", path)
                continue
            record = {"step": step, "checkpoint": os.path.basename(path), **metrics,
                      "ema": used_ema, "seconds": round(time.time() - start, 2),
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            logging.info("eval step %d (%s weights): %s", step, "EMA" if used_ema else "raw",
                         describe(metrics))
            if write_results:
                append_eval_result(model_dir, record)
                write_eval_summaries(model_dir, record["step"], record)
            records.append(record)
        if continuous and stop_at_step is not None and step >= stop_at_step:
            logging.info("reached the final training step %d; evaluator done", step)
            break
    return records


def describe(metrics: Mapping) -> str:
    """'top1 0.9800 top5 1.0000 loss 0.1234 on 600 images' (+ the non-finite count, if any)."""
    loss = metrics.get("loss")
    text = (f"top1 {metrics['top1']:.4f} top5 {metrics['top5']:.4f} "
            f"loss {'n/a' if loss is None else f'{loss:.4f}'} on {metrics['num_images']} images")
    if metrics.get("num_nonfinite"):
        text += f", {metrics['num_nonfinite']} with NaN/Inf logits (counted as misses)"
    return text


def write_eval_summaries(model_dir: str, step: int, metrics: Mapping) -> None:
    """The evaluation's numbers as TensorBoard scalars under ``<model_dir>/eval`` (every
    evaluation writes them here: eval_main.py, train_and_eval and the search's held-out check)."""
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
    progress.write_scalars(writer, int(step), {
        name: value for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
        and name not in ("step", "num_images")})
    writer.close()
