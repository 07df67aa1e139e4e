"""The recipe's pieces: configs and overrides, LR schedule, losses, weight decay, resolution."""
# bazel: suite=training

import json

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from autonl_tf.arch import ArchError
from autonl_tf.models import build_model, resolve_model_spec
from autonl_tf.recipe import recipe
from autonl_tf.recipe.losses import (
    NaNAfterStep,
    SmoothedSparseCategoricalCrossentropy,
    apply_l2_weight_decay,
    weight_decay_variables,
)
from autonl_tf.recipe.schedules import WarmupExponentialDecay, scaled_learning_rate
from autonl_tf.runner import config as config_lib

# ------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("name", ["autonl_s", "autonl_l", "mobilenet_v2", "demo"])
def test_named_configs_load_and_validate(name):
    config = config_lib.load_config(name)
    assert set(config.keys()) >= {"model", "data", "train", "eval"}
    recipe.validate_config(config)
    resolved = recipe.resolve_experiment(config, prepare_data=False)
    assert resolve_model_spec(resolved.model.arch).arch_string == resolved.model.arch
    assert resolved.train.total_steps >= 1


def test_a_config_without_variants_refuses_one():
    with pytest.raises(config_lib.ConfigError, match="has no variants: use it without ':x'"):
        config_lib.load_config("demo:x")


def test_named_configs_are_listed():
    assert {"autonl_s", "autonl_l", "mobilenet_v2", "demo"} <= set(
        config_lib.list_named_configs())
    assert "common" not in config_lib.list_named_configs()


def test_paper_recipe_values():
    resolved = recipe.resolve_experiment(config_lib.load_config("autonl_s"), prepare_data=False)
    train = resolved.train
    assert (train.batch_size, train.train_epochs, train.lr_per_256) == (4096, 350.0, 0.016)
    assert train.learning_rate == pytest.approx(0.256)  # 0.016 * 4096 / 256
    assert train.steps_per_epoch == 1_281_167 // 4096
    assert train.total_steps == int(np.ceil(350 * 1_281_167 / 4096))
    assert (train.rmsprop_rho, train.rmsprop_momentum, train.rmsprop_epsilon) == (0.9, 0.9, 1e-3)
    assert (train.weight_decay, train.label_smoothing, train.ema_decay) == (1e-5, 0.1, 0.9999)
    assert resolved.model.dropout_rate == 0.2 and resolved.data.augment == "autoaugment"
    assert resolved.model.name == "autonl_s"


def test_overrides_unknown_key_and_wrong_type_are_errors():
    config = config_lib.load_config("demo", {"train.batch_size": 16, "train.lr_per_256": 1})
    assert config.train.batch_size == 16 and config.train.lr_per_256 == 1.0
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'train.batch_sise'"):
        config_lib.load_config("demo", {"train.batch_sise": 16})
    with pytest.raises(config_lib.ConfigError, match="unknown config key 'nosection.x'"):
        config_lib.load_config("demo", {"nosection.x": 1})
    with pytest.raises(config_lib.ConfigError, match="train.batch_size"):
        config_lib.load_config("demo", {"train.batch_size": "sixteen"})


def test_unknown_config_name_is_an_error():
    with pytest.raises(config_lib.ConfigError, match="unknown config 'nope'.*demo"):
        config_lib.load_config("nope")


def test_value_errors_name_the_key():
    config = config_lib.load_config("demo", {"train.label_smoothing": 1.5})
    with pytest.raises(config_lib.ConfigError, match="train.label_smoothing"):
        recipe.validate_config(config)
    config = config_lib.load_config("demo", {"data.image_size": 48})
    with pytest.raises(config_lib.ConfigError, match="data.image_size"):
        recipe.validate_config(config)
    with pytest.raises(ArchError):
        recipe.resolve_experiment(config_lib.load_config("demo", {"model.arch": "no_such"}),
                                  prepare_data=False)


def test_resolved_config_is_json_and_rebuilds_the_model():
    config = config_lib.load_config("demo", {"model.width_multiplier": 0.25})
    resolved = recipe.resolve_experiment(config, prepare_data=False)
    reloaded = ml_collections.ConfigDict(json.loads(json.dumps(config_lib.to_plain_dict(
        resolved))))
    a, b = recipe.build_classifier(resolved), recipe.build_classifier(reloaded)
    assert a.count_params() == b.count_params()
    assert a.output_shape == (None, resolved.data.num_classes)


# ----------------------------------------------------------------------------------- schedule


def test_warmup_then_staircase_decay():
    schedule = WarmupExponentialDecay(peak_learning_rate=0.256, warmup_steps=100,
                                      decay_steps=24.0, decay_rate=0.97)
    lr = lambda step: float(schedule(step))  # noqa: E731
    assert lr(0) == 0.0
    assert lr(50) == pytest.approx(0.128)
    # After the warm-up: decay counted from step 0, as in the TPU reference.
    assert lr(100) == pytest.approx(0.256 * 0.97 ** (100 // 24))
    assert lr(119) == pytest.approx(lr(100))  # staircase: flat within a period
    assert lr(120) == pytest.approx(0.256 * 0.97**5)
    clone = WarmupExponentialDecay.from_config(schedule.get_config())
    assert float(clone(777)) == pytest.approx(lr(777))
    assert keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)).get_config() == schedule.get_config()


def test_learning_rate_scales_with_global_batch():
    assert scaled_learning_rate(0.016, 4096) == pytest.approx(0.256)
    assert scaled_learning_rate(0.016, 256) == pytest.approx(0.016)


# ------------------------------------------------------------------------------------- losses


def test_label_smoothing_on_integer_labels():
    logits = tf.constant([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = tf.constant([0, 2])
    loss = SmoothedSparseCategoricalCrossentropy(label_smoothing=0.1)(labels, logits)
    targets = tf.one_hot(labels, 3) * 0.9 + 0.1 / 3
    expected = tf.reduce_mean(-tf.reduce_sum(targets * tf.nn.log_softmax(logits), axis=-1))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(SmoothedSparseCategoricalCrossentropy(0.0)(labels, logits)) == pytest.approx(
        float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))),
        rel=1e-6)


def _tiny_model():
    spec = resolve_model_spec("r1_k3_s11_e1_i32_o16_sw_se0.25 r1_k3_s22_e3_i16_o24_sw_nonlocal0.25")
    return build_model(spec, num_classes=5, image_size=32, width_multiplier=0.25)


def test_weight_decay_covers_kernels_only():
    model = _tiny_model()
    decayed = weight_decay_variables(model)
    names = {v.path for v in decayed}
    assert names and all(v.name in ("kernel", "depthwise_kernel") for v in decayed)
    assert not any("bn" in n.split("/")[-2] for n in names)  # no BatchNorm variable
    assert not any(v.name in ("bias", "gamma", "beta") for v in decayed)
    assert any("se_reduce" in n for n in names) and any("logits" in n for n in names)

    count = apply_l2_weight_decay(model, 1e-5)
    assert count == len(decayed)
    expected = sum(1e-5 * 0.5 * float(tf.reduce_sum(tf.square(v))) for v in decayed)
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_nan_hook_poisons_the_loss_from_the_given_step():
    iterations = tf.Variable(0, dtype=tf.int64)
    loss = NaNAfterStep(SmoothedSparseCategoricalCrossentropy(), 3, lambda: iterations)
    labels, logits = tf.constant([1]), tf.constant([[0.0, 1.0]])
    values = []
    for step in range(4):
        iterations.assign(step)
        values.append(float(loss(labels, logits)))
    assert np.isfinite(values[:2]).all() and np.isnan(values[2:]).all()
