"""The retraining recipe: resolved experiment config -> model, optimizer, loss, metrics.

`resolve_experiment` turns a config as written (names, epochs, per-256 learning rate) into the
fully resolved one saved as ``<model_dir>/config.json``: architecture string, data sizes, step
counts, scaled learning rate. Everything else here builds from that resolved config, so that
``load_model_for_inference`` rebuilds exactly the trained network.
"""

from __future__ import annotations

import contextlib
import math

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from autonl_tf.models import ModelSpec, build_model, check_image_size, resolve_model_spec
from autonl_tf.recipe.losses import (
    NaNAfterStep,
    SmoothedSparseCategoricalCrossentropy,
    apply_l2_weight_decay,
)
from autonl_tf.recipe.optimizer import TF1RMSprop
from autonl_tf.recipe.schedules import WarmupExponentialDecay, scaled_learning_rate
from autonl_tf.runner import checkpoints
from autonl_tf.runner.config import ConfigError, require

__all__ = [
    "ClassifierRestorer",
    "build_classifier",
    "build_optimizer",
    "compile_classifier",
    "dtype_policy_scope",
    "load_model_for_inference",
    "model_spec",
    "resolve_experiment",
    "validate_config",
]

OPTIMIZERS = ("rmsprop_tf1",)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks value ranges that types alone do not catch; `ConfigError` names the key."""
    train, model, evaluation = config.train, config.model, config.eval
    require(train.batch_size >= 1, f"train.batch_size must be >= 1, got {train.batch_size}")
    require(evaluation.batch_size >= 1,
             f"eval.batch_size must be >= 1, got {evaluation.batch_size}")
    require(train.train_steps is None or train.train_steps >= 1,
             f"train.train_steps must be >= 1, got {train.train_steps}")
    require(train.train_steps is not None or train.train_epochs > 0,
             f"train.train_epochs must be > 0, got {train.train_epochs}")
    require(train.steps_per_loop >= 1,
             f"train.steps_per_loop (--iterations_per_loop) must be >= 1, got "
             f"{train.steps_per_loop}")
    require(train.checkpoint_every_steps >= 0, "train.checkpoint_every_steps must be >= 0")
    require(train.log_every_steps >= 0, "train.log_every_steps must be >= 0")
    require(train.optimizer in OPTIMIZERS,
             f"train.optimizer={train.optimizer!r}: expected one of {OPTIMIZERS}")
    require(0.0 <= train.label_smoothing < 1.0, "train.label_smoothing must be in [0, 1)")
    require(0.0 <= train.get("ema_decay", 0.0) <= 1.0, "train.ema_decay must be in [0, 1]")
    require(train.weight_decay >= 0, "train.weight_decay must be >= 0")
    require(train.lr_per_256 > 0, "train.lr_per_256 must be > 0")
    require(train.lr_decay_epochs > 0, "train.lr_decay_epochs must be > 0")
    require(str(train.jit_compile).lower() in ("auto", "true", "false"),
             f"train.jit_compile={train.jit_compile!r}: expected 'auto', 'true' or 'false'")
    require(model.width_multiplier > 0, "model.width_multiplier must be > 0")
    require(0.0 <= model.dropout_rate < 1.0, "model.dropout_rate must be in [0, 1)")
    require(0.0 <= model.get("drop_connect_rate", 0.0) < 1.0,
             "model.drop_connect_rate must be in [0, 1)")
    require(evaluation.steps >= 0, "eval.steps must be >= 0 (0 = the whole eval set)")
    try:
        check_image_size(config.data.image_size)
    except ValueError as e:
        raise ConfigError(f"data.image_size: {e}") from None


def resolve_experiment(config: ml_collections.ConfigDict, prepare_data: bool = True,
                       spec: ModelSpec | None = None) -> ml_collections.ConfigDict:
    """A resolved copy of ``config``: what config.json stores and every builder reads.

    Adds ``model.name`` (as given) and replaces ``model.arch`` by its block strings (a config
    without ``model.arch``, the search's, keeps its model section as it is); prepares
    the data section (``autonl_tf.data.prepare``, preparation.py: data_dir, num_classes, example counts); adds
    ``train.steps_per_epoch``, ``train.total_steps`` and ``train.learning_rate`` (batch-scaled).
    ``spec``: ``model.arch`` already decoded (a run decodes it once, `ClassifierTask`); None
    decodes it here. Raises `ConfigError`, ``ArchError`` or ``DataError`` with a one-line
    message.
    """
    validate_config(config)
    resolved = ml_collections.ConfigDict(config.to_dict())  # unlocked copy, references resolved
    if "arch" in config.model:
        spec = spec or resolve_model_spec(config.model.arch)
        resolved.model.name = spec.name  # 'autonl_s', an architecture file's stem, or 'custom'
        resolved.model.arch = spec.arch_string
    if prepare_data:
        from autonl_tf.data import prepare

        resolved.data = prepare(resolved.data)
    train = resolved.train
    num_train = int(resolved.data.num_train_examples or 0)
    if num_train > 0:
        train.steps_per_epoch = max(1, num_train // train.batch_size)
    else:
        train.steps_per_epoch = 0
    if train.train_steps:
        train.total_steps = int(train.train_steps)
    else:
        require(num_train > 0, "the number of training examples is unknown: set "
                 "--train_steps (or data.num_train_examples)")
        train.total_steps = max(1, int(math.ceil(train.train_epochs * num_train
                                                 / train.batch_size)))
    train.learning_rate = scaled_learning_rate(train.lr_per_256, train.batch_size)
    return resolved


@contextlib.contextmanager
def dtype_policy_scope(policy: str | None):
    """Builds layers under a Keras dtype policy ('mixed_bfloat16', 'float32'), then restores."""
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def model_spec(config: ml_collections.ConfigDict) -> ModelSpec:
    """The network of a resolved config (``model.arch``: block strings, as config.json holds)."""
    return resolve_model_spec(config.model.arch)


def build_classifier(config: ml_collections.ConfigDict, dtype_policy: str | None = None,
                     spec: ModelSpec | None = None) -> keras.Model:
    """The network of a resolved config. Input [b, S, S, 3] float, output [b, classes] float32.

    ``spec``: the config's network already decoded (`model_spec`), None decodes it. Build it
    under ``strategy.scope()`` for distributed training.
    """
    spec = spec or model_spec(config)
    with dtype_policy_scope(dtype_policy):
        return build_model(
            spec,
            num_classes=int(config.data.num_classes),
            image_size=int(config.data.image_size),
            width_multiplier=float(config.model.width_multiplier),
            dropout_rate=float(config.model.dropout_rate),
            drop_connect_rate=float(config.model.drop_connect_rate),
            bn_momentum=float(config.model.bn_momentum),
            bn_epsilon=float(config.model.bn_epsilon),
            name=str(config.model.get("name", spec.name)),
        )


def build_learning_rate_schedule(config: ml_collections.ConfigDict) -> WarmupExponentialDecay:
    """Warm-up + staircase decay in steps, from the resolved config's epochs."""
    train = config.train
    steps_per_epoch = train.steps_per_epoch or train.total_steps
    return WarmupExponentialDecay(
        peak_learning_rate=train.learning_rate,
        warmup_steps=int(train.warmup_epochs * steps_per_epoch),
        decay_steps=max(1.0, train.lr_decay_epochs * steps_per_epoch),
        decay_rate=train.lr_decay_rate,
        staircase=train.lr_staircase,
        minimum_learning_rate=train.min_learning_rate,
    )


def build_optimizer(config: ml_collections.ConfigDict) -> keras.optimizers.Optimizer:
    """TF1-semantics RMSProp with the recipe's schedule and weight EMA (resolved config)."""
    train = config.train
    return TF1RMSprop(
        learning_rate=build_learning_rate_schedule(config),
        rho=train.rmsprop_rho,
        momentum=train.rmsprop_momentum,
        epsilon=train.rmsprop_epsilon,
        initial_mean_square=train.rmsprop_initial_mean_square,
        # A search config has no EMA keys (the supernet keeps no average of its weights).
        use_ema=bool(train.get("use_ema", False)),
        ema_momentum=float(train.get("ema_decay", 0.99)),
        ema_dynamic_decay=bool(train.get("ema_dynamic_decay", False)),
    )


def compile_classifier(model: keras.Model, config: ml_collections.ConfigDict,
                       jit_compile: bool) -> keras.Model:
    """Weight decay, optimizer, label-smoothed loss and top-1/top-5 metrics; call under scope."""
    apply_l2_weight_decay(model, config.train.weight_decay)
    optimizer = build_optimizer(config)
    loss = SmoothedSparseCategoricalCrossentropy(config.train.label_smoothing)
    if config.train.debug_nan_at_step:
        loss = NaNAfterStep(loss, config.train.debug_nan_at_step, lambda: optimizer.iterations)
    num_classes = int(config.data.num_classes)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1"),
                 keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes),
                                                             name="top5")],
        jit_compile=jit_compile,
    )
    return model


# ---------------------------------------------------------- the trained classifier, back


class ClassifierRestorer:
    """A classifier built once from a model dir's config.json, restorable from any checkpoint.

    Continuous evaluation restores each new checkpoint into the same model instead of rebuilding
    it. Build under ``strategy.scope()`` to evaluate with a distribution strategy. ``spec``: the
    network of ``config`` already decoded (None: decoded from ``model.arch`` here).
    """

    def __init__(self, config: ml_collections.ConfigDict, dtype_policy: str | None = "float32",
                 spec: ModelSpec | None = None):
        self.config = config
        self.model = build_classifier(config, dtype_policy=dtype_policy, spec=spec)
        self.optimizer = build_optimizer(config)
        # Slots must exist before restore: Keras optimizers create them lazily.
        self.optimizer.build(self.model.trainable_variables)
        # The driver's checkpoint items: ``model_variables`` (by position) reaches the variables
        # that Keras 3 keeps out of TensorFlow's object graph (layers held in Python lists,
        # such as a block's depthwise convs), which ``model`` alone would leave at their initial
        # values (see `checkpoints.restore_model_variables`).
        self._checkpoint = tf.train.Checkpoint(model=self.model,
                                               model_variables=list(self.model.variables),
                                               optimizer=self.optimizer)

    def restore(self, checkpoint_path: str, use_ema: bool = True) -> bool:
        """Loads the checkpoint; with ``use_ema`` swaps in the EMA weights. Returns EMA used."""
        status = checkpoints.restore_checkpoint(self._checkpoint, checkpoint_path, "model")
        status.expect_partial()  # global_step, iterator: training-only
        if use_ema and not self.optimizer.use_ema:
            logging.warning("%s was trained without weight EMA (train.use_ema=False): using the "
                            "raw weights", checkpoint_path)
            return False
        if use_ema:
            checkpoints.assign_ema_weights(self.model, self.optimizer)
        return use_ema


def load_model_for_inference(
    model_dir: str,
    checkpoint_path: str | None = None,
    use_ema: bool = True,
    *,
    strategy: tf.distribute.Strategy | None = None,
    dtype_policy: str | None = "float32",
) -> tuple[keras.Model, ml_collections.ConfigDict]:
    """Rebuilds the trained classifier of ``model_dir`` and loads its (EMA) weights.

    Args:
      model_dir: directory written by train_main.py (config.json + checkpoints).
      checkpoint_path: a specific checkpoint prefix; default the latest one.
      use_ema: load the exponential moving average of the weights (what eval and export use).
      strategy: build the model under this strategy's scope (default: the current strategy).
      dtype_policy: Keras dtype policy of the rebuilt model ('float32' default, None = global).

    Returns:
      (model, config): the functional Keras model (input [b, S, S, 3] normalised images, output
      [b, classes] float32 logits) and the resolved experiment config of config.json, with
      ``config.restored`` = {checkpoint, step, ema}.

    Raises:
      NoCheckpointError: no config.json or no checkpoint.
      CheckpointMismatchError: the checkpoint does not fit the config's network.
    """
    config = checkpoints.load_experiment_config(model_dir)
    checkpoints.require_classifier(config, model_dir)
    path = checkpoint_path or checkpoints.latest_checkpoint(model_dir)
    if checkpoint_path and not tf.io.gfile.glob(checkpoint_path + ".index"):
        raise checkpoints.NoCheckpointError(f"checkpoint {checkpoint_path!r} not found")
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        restorer = ClassifierRestorer(config, dtype_policy=dtype_policy)
    used_ema = restorer.restore(path, use_ema=use_ema)
    config.restored = dict(checkpoint=path, step=checkpoints.checkpoint_step(path), ema=used_ema)
    return restorer.model, config
