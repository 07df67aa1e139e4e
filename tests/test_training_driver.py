"""The training driver on the real input pipeline (small embedded set): XLA + bfloat16 on CPU,
1 vs 2 replicas, checkpoints across strategies, exact resume, NaN guard, custom train_step models.
"""
# bazel: suite=training

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from autonl_tf import data
from autonl_tf.recipe import recipe, task
from autonl_tf.runner import checkpoints, driver
from tests.support.strategies import two_cpu_replicas
from tests.support.training import tiny_config


@pytest.fixture(scope="module")
def data_dir(embedded_data_dir):
    return embedded_data_dir


@pytest.fixture(scope="module")
def mirrored():
    return two_cpu_replicas()


def _weights(model):
    return [np.array(v.numpy()) for v in model.trainable_variables]


@pytest.mark.slow
def test_xla_bfloat16_train_step_on_cpu(data_dir, tmp_path):
    config = tiny_config(data_dir, train_steps=2, train__jit_compile="true",
                         train__use_bfloat16=True)
    result = task.train_experiment(config, model_dir=str(tmp_path),
                                         strategy=tf.distribute.get_strategy())
    model = result["model"]
    assert model.jit_compile is True
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert result["step"] == 2 and np.isfinite(result["train_logs"]["loss"])
    assert keras.config.dtype_policy().name == "float32"  # global policy left untouched
    saved = checkpoints.load_experiment_config(str(tmp_path))
    assert saved.train.use_bfloat16 is True and saved.train.jit_compile == "true"


def _bn_free_model(num_classes):
    """Per-replica BatchNorm statistics would make 1 and 2 replicas differ by design."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


@pytest.mark.slow
def test_two_replicas_train_like_one(data_dir, tmp_path, mirrored):
    """Same global batch (8) on 1 replica and on 2 replicas x 4: same weights after 3 steps.

    Model without BatchNorm (per-replica batch statistics differ by construction), recipe
    optimizer/loss/weight decay/EMA, deterministic real input pipeline. Tolerance: 1e-5
    absolute / 1e-4 relative (float32 reduction order across replicas).
    """
    resolved = recipe.resolve_experiment(tiny_config(data_dir, train_steps=3))
    keras.utils.set_random_seed(0)
    initial = _bn_free_model(10).get_weights()
    results = {}
    for name, strategy in (("one", tf.distribute.get_strategy()), ("two", mirrored)):
        with strategy.scope():
            model = _bn_free_model(10)
            model.set_weights(initial)
            recipe.compile_classifier(model, resolved, jit_compile=False)
        out = driver.fit(
            model, lambda ctx: data.build_train_dataset(resolved.data, 8, ctx),
            strategy=strategy, model_dir=str(tmp_path / name), total_steps=3, steps_per_loop=3,
            checkpoint_every_steps=0, log_every_steps=1)
        results[name] = (_weights(model), out["train_logs"]["loss"])
    for a, b in zip(results["one"][0], results["two"][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert results["one"][1] == pytest.approx(results["two"][1], rel=1e-4)
    assert not np.allclose(results["one"][0][0], initial[0])  # it did train


@pytest.mark.slow
def test_checkpoint_restores_across_strategies(data_dir, tmp_path, mirrored):
    model_dir = str(tmp_path)
    first = task.train_experiment(tiny_config(data_dir, train_steps=4),
                                        model_dir=model_dir, strategy=mirrored)
    assert first["checkpoint"].endswith("ckpt-4")
    # 2 replicas -> default strategy: same weights, then training continues from step 4.
    model, config = recipe.load_model_for_inference(model_dir, use_ema=False)
    for a, b in zip(_weights(first["model"]), _weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert config.restored.step == 4 and config.restored.ema is False
    second = task.train_experiment(tiny_config(data_dir, train_steps=6),
                                         model_dir=model_dir,
                                         strategy=tf.distribute.get_strategy())
    assert second["resumed_from"].endswith("ckpt-4")
    assert (second["initial_step"], second["step"]) == (4, 6)
    # default strategy -> 2 replicas.
    with mirrored.scope():
        mirrored_model, _ = recipe.load_model_for_inference(model_dir, use_ema=False,
                                                                 strategy=mirrored)
    for a, b in zip(_weights(second["model"]), _weights(mirrored_model), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_resume_continues_exactly(data_dir, tmp_path):
    """8 steps in one run == 4 steps, a fresh process state, 4 more (data position, optimizer
    slots, EMA, dropout RNG all restored)."""
    strategy = tf.distribute.get_strategy()
    straight = task.train_experiment(tiny_config(data_dir, train_steps=8),
                                           model_dir=str(tmp_path / "straight"),
                                           strategy=strategy)
    split_dir = str(tmp_path / "split")
    task.train_experiment(tiny_config(data_dir, train_steps=4), model_dir=split_dir,
                                strategy=strategy)
    keras.utils.set_random_seed(1234)  # resumption must not depend on the fresh RNG state
    resumed = task.train_experiment(tiny_config(data_dir, train_steps=8),
                                          model_dir=split_dir, strategy=strategy)
    assert resumed["initial_step"] == 4 and resumed["step"] == 8
    for a, b in zip(_weights(straight["model"]), _weights(resumed["model"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    ema = [checkpoints._moving_averages(m.optimizer, m.trainable_variables)
           for m in (straight["model"], resumed["model"])]
    for a, b in zip(*ema, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_nan_stops_before_saving_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    config = tiny_config(data_dir, train_steps=12, train__debug_nan_at_step=6)
    with pytest.raises(driver.TrainingDivergedError, match="at step 6") as error:
        task.train_experiment(config, model_dir=str(tmp_path),
                                    strategy=tf.distribute.get_strategy())
    assert error.value.last_checkpoint.endswith("ckpt-4")
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
    for path in tf.io.gfile.glob(str(tmp_path / "ckpt-*.index")):
        reader = tf.train.load_checkpoint(path[: -len(".index")])
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype.is_floating:
                assert np.isfinite(reader.get_tensor(name)).all(), (path, name)


class _TwoOptimizerModel(keras.Model):
    """What the search supernet looks like to the driver: own train_step, two optimizers
    (weights; a 'threshold' with its own optimizer), an extra cost metric."""

    def __init__(self, num_classes):
        super().__init__(name="two_optimizer_model")
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(num_classes)
        self.threshold = self.add_weight(shape=(), initializer="zeros", name="threshold")
        self.arch_optimizer = keras.optimizers.Adam(0.05)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.cost_tracker = keras.metrics.Mean(name="cost")
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def call(self, images, training=False):
        return self.dense(self.flatten(images)) * (1.0 + self.threshold)

    @property
    def metrics(self):
        return [self.loss_tracker, self.cost_tracker]

    def train_step(self, batch):
        images, labels = batch
        with tf.GradientTape(persistent=True) as tape:
            cost = tf.square(self.threshold - 0.5)
            loss = self.loss_fn(labels, self(images, training=True)) + cost
        weights = self.dense.trainable_variables
        self.optimizer.apply(tape.gradient(loss, weights), weights)
        self.arch_optimizer.apply(tape.gradient(loss, [self.threshold]), [self.threshold])
        self.loss_tracker.update_state(loss)
        self.cost_tracker.update_state(cost)
        return {"loss": self.loss_tracker.result(), "cost": self.cost_tracker.result()}


class _RecordCheckpoints(driver.CheckpointCallback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_checkpoint(self, step, checkpoint_path, logs):
        self.calls.append((step, os.path.basename(checkpoint_path), sorted(logs)))


def _fit_custom(resolved, model_dir, total_steps):
    model = _TwoOptimizerModel(10)
    model(tf.zeros([1, 32, 32, 3]))
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    model.optimizer.build(model.dense.trainable_variables)
    model.arch_optimizer.build([model.threshold])
    recorder = _RecordCheckpoints()
    seen = []
    result = driver.fit(
        model, lambda ctx: data.build_train_dataset(resolved.data, 8, ctx),
        strategy=tf.distribute.get_strategy(), model_dir=model_dir, total_steps=total_steps,
        steps_per_loop=2, checkpoint_every_steps=2, log_every_steps=2, global_batch_size=8,
        extra_callbacks=[recorder],
        extra_checkpoint_items={"arch_optimizer": model.arch_optimizer},
        summary_fn=lambda step, logs: seen.append(step) or {"threshold": model.threshold})
    return model, result, recorder, seen


def test_custom_train_step_with_two_optimizers(data_dir, tmp_path):
    resolved = recipe.resolve_experiment(tiny_config(data_dir))
    model_dir = str(tmp_path)
    model, result, recorder, seen = _fit_custom(resolved, model_dir, total_steps=4)
    assert set(result["train_logs"]) == {"loss", "cost"}
    assert [c[:2] for c in recorder.calls] == [(2, "ckpt-2"), (4, "ckpt-4")]
    assert seen == [2, 4]
    assert int(model.arch_optimizer.iterations.numpy()) == 4
    assert float(model.threshold.numpy()) != 0.0
    assert tf.io.gfile.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))

    resumed, result, recorder, _ = _fit_custom(resolved, model_dir, total_steps=6)
    assert result["initial_step"] == 4 and [c[0] for c in recorder.calls] == [6]
    assert int(resumed.arch_optimizer.iterations.numpy()) == 6
    assert int(resumed.optimizer.iterations.numpy()) == 6


def test_unbuilt_extra_optimizer_is_refused(data_dir, tmp_path):
    resolved = recipe.resolve_experiment(tiny_config(data_dir))
    model = _TwoOptimizerModel(10)
    model(tf.zeros([1, 32, 32, 3]))
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    with pytest.raises(ValueError, match="build the optimizer"):
        driver.fit(model, lambda ctx: data.build_train_dataset(resolved.data, 8, ctx),
                   strategy=tf.distribute.get_strategy(), model_dir=str(tmp_path),
                   total_steps=2, extra_checkpoint_items={"arch": keras.optimizers.Adam()})


class _PerExampleLogs(keras.Model):
    """A train_step whose logs include a per-example vector: [batch], batch unknown."""

    def __init__(self):
        super().__init__(name="per_example_logs")
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            per_example = tf.reduce_mean(tf.square(self(x) - y), axis=1)
            loss = tf.reduce_mean(per_example)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return {"loss": loss, "per_example": per_example}


def test_logs_of_unknown_shape_pass_through_the_loop(tmp_path):
    """The loop starts from zeros shaped like the step's logs; a per-example log, [batch] with
    the batch unknown, keeps its partial shape across steps (and is not a console scalar)."""
    model = _PerExampleLogs()
    model(tf.zeros([1, 3]))
    model.compile(keras.optimizers.SGD(0.1))
    dataset = tf.data.Dataset.from_tensor_slices((np.ones([8, 3], np.float32),
                                                  np.zeros([8, 2], np.float32))).batch(4)
    out = driver.fit(model, lambda ctx: dataset.repeat(), strategy=tf.distribute.get_strategy(),
                     model_dir=str(tmp_path), total_steps=3, steps_per_loop=3,
                     checkpoint_every_steps=0, log_every_steps=3)
    assert set(out["train_logs"]) == {"loss"} and np.isfinite(out["train_logs"]["loss"])
    assert int(model.optimizer.iterations.numpy()) == 3
