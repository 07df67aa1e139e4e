"""TF1RMSprop: the TF1 ApplyRMSProp kernel's arithmetic, mean-square init, Keras EMA features."""
# bazel: suite=training

import keras
import numpy as np
import pytest
import tensorflow as tf

from autonl_tf.recipe.optimizer import TF1RMSprop

RHO, MOMENTUM, EPSILON, LR = 0.9, 0.9, 1e-3, 0.01


def _gradients(steps=6, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    # Small gradients: where epsilon placement matters most (g^2 << eps).
    return [rng.normal(scale=1e-2, size=shape).astype(np.float32) for _ in range(steps)]


def _tf1_reference(initial, gradients, centered=False, initial_ms=1.0):
    """Runs TensorFlow's own (TF1) RMSProp kernels on the same gradients."""
    var = tf.Variable(initial)
    ms = tf.Variable(np.full_like(initial, initial_ms))
    mom = tf.Variable(np.zeros_like(initial))
    mg = tf.Variable(np.zeros_like(initial))
    for g in gradients:
        if centered:
            tf.raw_ops.ResourceApplyCenteredRMSProp(
                var=var.handle, mg=mg.handle, ms=ms.handle, mom=mom.handle, lr=LR, rho=RHO,
                momentum=MOMENTUM, epsilon=EPSILON, grad=g)
        else:
            tf.raw_ops.ResourceApplyRMSProp(
                var=var.handle, ms=ms.handle, mom=mom.handle, lr=LR, rho=RHO,
                momentum=MOMENTUM, epsilon=EPSILON, grad=g)
    return var.numpy()


def _run(optimizer, initial, gradients):
    var = keras.Variable(initial)
    for g in gradients:
        optimizer.apply([tf.constant(g)], [var])
    return var.numpy()


@pytest.mark.parametrize("centered", [False, True])
def test_matches_tf1_kernel(centered):
    initial = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    gradients = _gradients()
    expected = _tf1_reference(initial, gradients, centered=centered)
    got = _run(TF1RMSprop(LR, rho=RHO, momentum=MOMENTUM, epsilon=EPSILON, centered=centered),
               initial, gradients)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_mean_square_starts_at_one_and_is_configurable():
    initial = np.zeros((3, 4), np.float32)
    gradients = _gradients(steps=1)
    # One step from ms=1: the update is ~lr * g (TF1), not ~lr * sign(g).
    got = _run(TF1RMSprop(LR, rho=RHO, momentum=0.0, epsilon=EPSILON), initial, gradients)
    ms = RHO * 1.0 + (1 - RHO) * gradients[0] ** 2
    np.testing.assert_allclose(got, -LR * gradients[0] / np.sqrt(ms + EPSILON), rtol=1e-5)
    zero_init = _run(TF1RMSprop(LR, rho=RHO, momentum=MOMENTUM, epsilon=EPSILON,
                                initial_mean_square=0.0), initial, gradients)
    np.testing.assert_allclose(
        zero_init, _tf1_reference(initial, gradients, initial_ms=0.0), rtol=1e-5, atol=1e-7)


def test_epsilon_is_inside_the_square_root():
    """With g^2 << eps the two placements differ by ~sqrt(eps)/eps: 30x for eps=1e-3."""
    initial = np.zeros((3, 4), np.float32)
    gradients = _gradients(steps=1)
    got = _run(TF1RMSprop(LR, rho=RHO, momentum=0.0, epsilon=EPSILON, initial_mean_square=0.0),
               initial, gradients)
    g = gradients[0]
    inside = -LR * g / np.sqrt((1 - RHO) * g**2 + EPSILON)
    outside = -LR * g / (np.sqrt((1 - RHO) * g**2) + EPSILON)
    np.testing.assert_allclose(got, inside, rtol=1e-5)
    assert not np.allclose(got, outside, rtol=0.5)


def test_ema_uses_tf1_num_updates_decay():
    optimizer = TF1RMSprop(LR, momentum=MOMENTUM, use_ema=True, ema_momentum=0.9999)
    var = keras.Variable(np.zeros((2,), np.float32))
    expected_average = None
    for step, g in enumerate(_gradients(steps=5, shape=(2,))):
        optimizer.apply([tf.constant(g)], [var])
        value = var.numpy()
        decay = 0.0 if step == 0 else min(0.9999, (1 + step) / (10 + step))
        expected_average = value if expected_average is None else (
            decay * expected_average + (1 - decay) * value)
    average = optimizer._model_variables_moving_average[0].numpy()
    np.testing.assert_allclose(average, expected_average, rtol=1e-5)


def test_constant_ema_decay_and_overwrite_frequency_still_work():
    optimizer = TF1RMSprop(LR, use_ema=True, ema_momentum=0.5, ema_dynamic_decay=False,
                           ema_overwrite_frequency=3)
    var = keras.Variable(np.ones((2,), np.float32))
    for g in _gradients(steps=3, shape=(2,)):
        optimizer.apply([tf.constant(g)], [var])
    # Overwritten with the average after the 3rd update.
    np.testing.assert_allclose(var.numpy(), optimizer._model_variables_moving_average[0].numpy())


def test_serialization_roundtrip():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = TF1RMSprop(schedule, rho=0.8, momentum=0.5, epsilon=1e-4, centered=True,
                           initial_mean_square=0.5, use_ema=True, ema_momentum=0.99,
                           ema_dynamic_decay=False)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, TF1RMSprop)
    config = clone.get_config()
    expected = dict(rho=0.8, momentum=0.5, epsilon=1e-4, centered=True, initial_mean_square=0.5,
                    use_ema=True, ema_momentum=0.99, ema_dynamic_decay=False)
    assert {key: config[key] for key in expected} == pytest.approx(expected)


def test_slots_and_ema_survive_a_checkpoint(tmp_path):
    variables = [keras.Variable(np.ones((3,), np.float32))]
    optimizer = TF1RMSprop(LR, momentum=MOMENTUM, use_ema=True)
    for g in _gradients(steps=3, shape=(3,)):
        optimizer.apply([tf.constant(g)], variables)
    path = tf.train.Checkpoint(optimizer=optimizer).write(str(tmp_path / "ckpt"))

    restored = TF1RMSprop(LR, momentum=MOMENTUM, use_ema=True)
    restored.build([keras.Variable(np.zeros((3,), np.float32))])
    tf.train.Checkpoint(optimizer=restored).read(path).assert_existing_objects_matched()
    assert int(restored.iterations.numpy()) == 3
    for name in ("_velocities", "_momentums", "_model_variables_moving_average"):
        np.testing.assert_allclose(getattr(restored, name)[0].numpy(),
                                   getattr(optimizer, name)[0].numpy(), err_msg=name)
