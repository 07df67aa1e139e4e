"""The network builder: published sizes, serialisation, XLA, mixed precision, bad sizes."""
# bazel: suite=models

import keras
import numpy as np
import pytest
import tensorflow as tf

from autonl_tf.layers import MBConvBlock
from autonl_tf.models import build_model, build_named_model, list_models, resolve_model_spec

# Published MACs / params (the paper's tables; docs/lightnl.md lists them).
PUBLISHED = {"autonl_s": (267e6, 4.4e6), "autonl_l": (353e6, 5.6e6), "mobilenet_v2": (300e6, 3.5e6)}


def trainable_count(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_sizes_and_builder_agree_with_cost_model(name):
    spec = resolve_model_spec(name)
    total = spec.cost()
    macs, params = PUBLISHED[name]
    assert abs(total.macs - macs) / macs < 0.005
    assert abs(total.params - params) / params < 0.01
    # The analytic parameter count is exactly what the builder creates (BN gamma/beta are
    # trainable; moving statistics are not counted).
    assert trainable_count(build_model(spec)) == total.params


def test_named_models_are_listed():
    assert {"autonl_s", "autonl_l", "mobilenet_v2"} <= set(list_models())


@pytest.mark.parametrize("width, size, classes", [(0.25, 32, 7), (0.5, 64, 10), (1.4, 96, 3)])
def test_any_size_width_and_classes(width, size, classes):
    spec = resolve_model_spec("autonl_s")
    model = build_model(spec, num_classes=classes, image_size=size, width_multiplier=width)
    out = model(np.zeros((2, size, size, 3), np.float32), training=False)
    assert out.shape == (2, classes) and out.dtype == tf.float32
    assert trainable_count(model) == spec.cost(size, classes, width).params


@pytest.mark.parametrize("size", [0, 31, 100, 225])
def test_impossible_image_sizes(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        build_named_model("autonl_s", image_size=size)


def test_keras_file_round_trip_autonl_l(tmp_path):
    model = build_named_model("autonl_l", num_classes=10, image_size=64)
    # Non-trivial LightNL/BN state so the check is not passing on zero-initialised gammas.
    for layer in model.layers:
        if isinstance(layer, MBConvBlock) and layer.lightnl is not None:
            layer.lightnl.bn.gamma.assign(np.full(layer.lightnl.bn.gamma.shape, 0.3, np.float32))
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    before = model(x, training=False).numpy()
    path = tmp_path / "autonl_l.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), before)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in model.layers]


@pytest.mark.slow
def test_forward_and_train_step_compile_with_xla():
    model = build_named_model("autonl_l", num_classes=5, image_size=32, width_multiplier=0.25,
                              drop_connect_rate=0.2)
    # SGD: the subject is the network's graph (its LightNLs, SE, mixed kernels, stochastic
    # depth); the recipe's optimizer and EMA under XLA are test_training_driver's XLA test.
    # RMSprop's per-variable updates made its CPU compile 1.7x longer (AutoNL-S: 17.4 s vs 10.3 s).
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    # The reference runs eagerly: Keras's predict_on_batch would XLA-compile it too (jit_compile
    # is set above), comparing XLA with XLA at the cost of a third compile.
    eager = model(x, training=False).numpy()
    forward = tf.function(lambda t: model(t, training=False), jit_compile=True)
    np.testing.assert_allclose(forward(x).numpy(), eager, rtol=1e-4, atol=1e-4)
    losses = [float(model.train_on_batch(x, y)) for _ in range(2)]
    assert all(np.isfinite(losses))


def test_bfloat16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_named_model("autonl_s", num_classes=4, image_size=32, width_multiplier=0.25)
        out = model(np.ones((1, 32, 32, 3), np.float32), training=True)
        assert out.dtype == tf.float32 and np.isfinite(out.numpy()).all()
        assert any(v.dtype == "float32" for v in model.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mbconv_residual_stochastic_depth_and_mixed_kernels():
    block = MBConvBlock(16, 16, expand_ratio=3, kernel_sizes=(3, 5, 7), se_ratio=0.25,
                        drop_connect_rate=0.5, nonlocal_ratio=0.25)
    x = tf.random.normal((8, 8, 8, 16))
    assert block.has_residual and [c.kernel_size for c in block.depthwise_convs] == [
        (3, 3), (5, 5), (7, 7)]
    assert block.channel_splits == [16, 16, 16]
    np.testing.assert_allclose(block(x, training=False).numpy(), block(x, training=False).numpy())
    # In training some examples lose the whole branch: their output is exactly the input.
    out = block(x, training=True).numpy()
    dropped = [np.allclose(out[i], x.numpy()[i]) for i in range(8)]
    assert 0 < sum(dropped) < 8 or not any(dropped)  # random, but never an error
    clone = MBConvBlock.from_config(block.get_config())
    assert clone.kernel_sizes == (3, 5, 7) and clone.nonlocal_ratio == 0.25
    assert not MBConvBlock(16, 16, id_skip=False).has_residual
    assert not MBConvBlock(16, 24).has_residual
