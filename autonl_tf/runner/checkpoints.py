"""Model directories: config.json, checkpoints, EMA weights, the model dir's lock.

A model dir written by train_main.py holds ``config.json`` (the resolved experiment config:
architecture string, data section with image_size/num_classes, width multiplier, recipe) and
``ckpt-<step>.*`` files managed by `tf.train.CheckpointManager` (the ``checkpoint`` state file is
rewritten atomically after the data files are complete, so "latest" is never half-written).

Checkpoint layout (`tf.train.Checkpoint` object graph): ``model`` (the Keras model),
``model_variables`` (all ``model.variables`` by position, which adds the dropout/stochastic-depth
RNG states Keras does not track), ``optimizer`` (slots and the weight EMA), ``global_step`` and,
on single-host runs, ``train_iterator_<R>_replicas`` (the tf.data position for R replicas).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from autonl_tf import files
from autonl_tf.errors import UserError
from autonl_tf.runner import config as config_lib

__all__ = [
    "CONFIG_FILE",
    "CheckpointMismatchError",
    "NoCheckpointError",
    "assign_ema_weights",
    "check_same_model",
    "checkpoint_step",
    "ema_weights",
    "latest_checkpoint",
    "load_experiment_config",
    "restore_model_variables",
    "require_classifier",
    "save_experiment_config",
]

CONFIG_FILE = files.CONFIG_FILE


class NoCheckpointError(UserError, FileNotFoundError):
    """The model dir has no checkpoint (or no config.json) to load."""


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint does not fit the model being restored (architecture, classes, ...)."""


# ----------------------------------------------------------------------------- config.json


def save_experiment_config(model_dir: str, config: ml_collections.ConfigDict | dict) -> str:
    """Writes ``<model_dir>/config.json`` atomically (temp file + rename); returns its path."""
    return files.write_json_atomic(os.path.join(model_dir, CONFIG_FILE),
                                   config_lib.to_plain_dict(config), sort_keys=True)


def load_experiment_config(model_dir: str) -> ml_collections.ConfigDict:
    """Reads ``<model_dir>/config.json`` into a ConfigDict; `NoCheckpointError` when absent."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise NoCheckpointError(
            f"{path} not found: {model_dir!r} is not a model dir written by train_main.py "
            "(or training never started)")
    with tf.io.gfile.GFile(path) as f:
        return ml_collections.ConfigDict(json.load(f))


# What identifies the network of a model dir: a resumed or evaluated run must agree on these.
# A search's network is its supernet, identified by its space (``model.arch`` is a classifier's).
_IDENTITY_KEYS = ("model.arch", "search_space", "data.num_classes", "model.width_multiplier",
                  "data.image_size")


def _identity_value(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    node: Any = config
    for part in dotted.split("."):
        if not hasattr(node, "get") or part not in node:
            return None
        node = node[part]
    if isinstance(node, str):
        return " ".join(node.split())  # architecture strings: line breaks do not matter
    return json.dumps(config_lib.to_plain_dict(node) if hasattr(node, "items") else node,
                      sort_keys=True)


def _describe_network(config: ml_collections.ConfigDict) -> str:
    if "search_space" in config:
        network = f"a search supernet ({len(config.search_space.stages)} stages)"
    else:
        network = (f"{config.model.get('name', '?')} "
                   f"({len(str(config.model.get('arch', '')).split())} blocks)")
    return (f"{network}, {config.data.num_classes} classes, width "
            f"{config.model.width_multiplier}, {config.data.image_size} px")


def check_same_model(saved: ml_collections.ConfigDict, requested: ml_collections.ConfigDict,
                     model_dir: str) -> None:
    """`CheckpointMismatchError` when two resolved configs describe different networks (a
    classifier's architecture, or a search's space; classes, width, image size)."""
    differs = [key for key in _IDENTITY_KEYS
               if _identity_value(saved, key) != _identity_value(requested, key)]
    if differs:
        raise CheckpointMismatchError(
            f"{model_dir} holds a different model ({', '.join(differs)} differ): it has "
            f"{_describe_network(saved)}, the command asks for {_describe_network(requested)}; "
            "use a new --model_dir or the same architecture/space and data settings")


def require_classifier(config: ml_collections.ConfigDict, model_dir: str) -> None:
    """A search's model dir holds a supernet, not a network to evaluate or export."""
    if "search_space" in config:
        raise CheckpointMismatchError(
            f"{model_dir} is a search's model dir (search_main.py): its checkpoints hold the "
            "supernet. Retrain the searched network first: train_main.py "
            f"--arch={os.path.join(model_dir, files.ARCH_FILE)} --model_dir=<new dir>")


# ----------------------------------------------------------------------------- checkpoints


def latest_checkpoint(model_dir: str) -> str:
    """Path prefix of the newest checkpoint; `NoCheckpointError` when there is none."""
    path = tf.train.latest_checkpoint(model_dir)
    if not path:
        raise NoCheckpointError(f"no checkpoint in {model_dir!r}: train first (train_main.py "
                                "writes ckpt-<step> files there)")
    return path


def checkpoint_step(path: str) -> int:
    """The global step stored in a checkpoint (falls back to the ``ckpt-<n>`` suffix)."""
    try:
        return int(tf.train.load_variable(path, "global_step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError):
        match = re.search(r"-(\d+)$", path)
        return int(match.group(1)) if match else 0


def checkpoint_keys(path: str) -> set[str]:
    """Top-level object names in a checkpoint ('model', 'optimizer', 'train_iterator', ...)."""
    return {name.split("/", 1)[0] for name, _ in tf.train.list_variables(path)}


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str, what: str = "model"):
    """Restores ``path`` into ``checkpoint``, turning shape/structure errors into one line.

    Every object that exists on the Python side must be found in the file (so a checkpoint of
    another architecture fails here instead of leaving weights at their initial values).
    """
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match the {what} being restored ({first_line[:300]}); "
            "was it written for another architecture or number of classes?") from None
    return status


def restore_model_variables(model: keras.Model, path: str) -> None:
    """Restores every variable of ``model`` from a driver checkpoint (its ``model_variables``).

    ``tf.train.Checkpoint(model=...)`` alone is not enough for a subclassed model such as the
    search's supernet: Keras 3 does not put layers held in Python lists into TensorFlow's object
    graph, so such a restore silently leaves them at their initial values. The driver saves
    ``model.variables`` by position as well; this reads them back and fails (one line) if the
    checkpoint holds another network.
    """
    # Same items as the driver's checkpoint, so that every variable, whichever path the object
    # graph saved it under first, is matched (a missing or misshapen one fails here).
    restore_checkpoint(tf.train.Checkpoint(model=model, model_variables=list(model.variables)),
                       path, "model").expect_partial()


# ------------------------------------------------------------------------------------ EMA


def _moving_averages(optimizer: keras.optimizers.Optimizer, variables) -> list:
    """The optimizer's EMA variable of each of ``variables`` (Keras keeps them by index)."""
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if not getattr(optimizer, "use_ema", False) or averages is None:
        raise ValueError("the optimizer keeps no moving average (use_ema=False)")
    return [averages[optimizer._get_variable_index(v)] for v in variables]


def moving_average_variables(model: keras.Model) -> list:
    """The EMA variables of the model's optimizer ([] when it keeps none or is not built)."""
    optimizer = getattr(model, "optimizer", None)
    if (optimizer is None or not getattr(optimizer, "use_ema", False)
            or getattr(optimizer, "_model_variables_moving_average", None) is None):
        return []
    return _moving_averages(optimizer, model.trainable_variables)


def assign_ema_weights(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Overwrites the model's trainable weights with their EMA (BN statistics unchanged)."""
    for variable, average in zip(model.trainable_variables,
                                 _moving_averages(optimizer, model.trainable_variables),
                                 strict=True):
        variable.assign(average)


@contextlib.contextmanager
def ema_weights(model: keras.Model, optimizer: keras.optimizers.Optimizer | None,
                enabled: bool = True):
    """Within the block the model holds its EMA weights; the raw weights come back after.

    Yields whether EMA weights are in use (False when disabled or the optimizer has none).
    """
    if not enabled or optimizer is None or not getattr(optimizer, "use_ema", False):
        yield False
        return
    variables = model.trainable_variables
    averages = _moving_averages(optimizer, variables)
    backup = [np.array(v.numpy()) for v in variables]
    for variable, average in zip(variables, averages, strict=True):
        variable.assign(average)
    try:
        yield True
    finally:
        for variable, value in zip(variables, backup, strict=True):
            variable.assign(value)


# --------------------------------------------------------------- model dir ownership, litter

TRAINING_LOCK_FILE = ".training.lock"


class ModelDirBusyError(UserError, RuntimeError):
    """Another training process holds the model dir."""


@contextlib.contextmanager
def hold_model_dir(model_dir: str):
    """Holds an exclusive lock on a local model dir while training writes to it.

    The lock (flock on ``<model_dir>/.training.lock``) dies with its process, also on kill -9, so
    holding it proves that no other trainer is writing checkpoints there. Yields True when the
    lock is held; False on filesystems without locks (gs://), where nothing can be proven.

    Raises:
      ModelDirBusyError: another process is training in this model dir.
    """
    if "://" in model_dir:
        yield False
        return
    import fcntl

    tf.io.gfile.makedirs(model_dir)
    fd = os.open(os.path.join(model_dir, TRAINING_LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelDirBusyError(
                f"another training process is writing checkpoints in {model_dir}; wait for it "
                "to finish or use another --model_dir") from None
        yield True
    finally:
        os.close(fd)  # releases the lock


def remove_abandoned_temp_dirs(model_dir: str, lock_held: bool) -> list[str]:
    """Deletes the ``ckpt-<n>_temp`` dirs of saves that were killed mid-write.

    Only with ``lock_held`` (`hold_model_dir`): then no process is saving into model_dir, so
    every such dir is abandoned. Returns the removed paths.
    """
    if not lock_held:
        return []
    removed = []
    for path in sorted(tf.io.gfile.glob(os.path.join(model_dir, "ckpt-*_temp"))):
        logging.warning("removing %s, left by a checkpoint save that was interrupted", path)
        tf.io.gfile.rmtree(path) if tf.io.gfile.isdir(path) else tf.io.gfile.remove(path)
        removed.append(path)
    return removed
