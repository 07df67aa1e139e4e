"""LightNL against a plain numpy transcription of its formula (docs/lightnl.md), and its Keras behaviour."""
# bazel: suite=models

import keras
import numpy as np
import pytest
import tensorflow as tf

from autonl_tf import cost
from autonl_tf.layers import LightNL, lightnl_aggregate
from autonl_tf.layers.lightnl import subsample


def numpy_lightnl_aggregate(x: np.ndarray, ratio: float, stride: int) -> np.ndarray:
    """y = (q k^T) v / (H*W) with q = x[:, :, :rC], k = x[::s, ::s, :rC], v = x[::s, ::s, :]."""
    batch, height, width, channels = x.shape
    rc = max(1, int(channels * ratio + 1e-6))
    out = np.empty_like(x, dtype=np.float64)
    for b in range(batch):
        q = x[b, :, :, :rc].reshape(height * width, rc).astype(np.float64)
        sub = x[b, ::stride, ::stride, :]
        k = sub[:, :, :rc].reshape(-1, rc).astype(np.float64)
        v = sub.reshape(-1, channels).astype(np.float64)
        out[b] = ((q @ k.T) @ v / (height * width)).reshape(height, width, channels)
    return out


CASES = [(h, w, c, r, s) for (h, w, c) in [(8, 8, 16), (7, 9, 24), (5, 5, 8)]
         for r in (0.125, 0.25, 1.0) for s in (1, 2)]


@pytest.mark.parametrize("order", ["affinity_first", "context_first", "auto"])
@pytest.mark.parametrize("height, width, channels, ratio, stride", CASES)
def test_aggregate_matches_numpy(order, height, width, channels, ratio, stride):
    rng = np.random.default_rng(height * 100 + channels + stride)
    x = rng.normal(size=(2, height, width, channels)).astype(np.float32)
    got = lightnl_aggregate(tf.constant(x), ratio, stride, order=order).numpy()
    np.testing.assert_allclose(got, numpy_lightnl_aggregate(x, ratio, stride), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("height, width", [(8, 8), (7, 9), (5, 5), (1, 3)])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_subsample_is_a_strided_slice(height, width, stride):
    x = np.random.default_rng(0).normal(size=(2, height, width, 5)).astype(np.float32)
    np.testing.assert_array_equal(subsample(tf.constant(x), stride).numpy(),
                                  x[:, ::stride, ::stride, :])


def test_auto_order_follows_the_cost_rule():
    # At 56x56 with 24 channels the context-first order is far cheaper; at 2x2 with 256 the
    # affinity-first one is. Both branches of the rule must occur in real networks.
    big_affinity, big_context = cost.lightnl_orders(56, 56, 24, 0.25, 1)
    small_affinity, small_context = cost.lightnl_orders(2, 2, 256, 0.25, 1)
    assert big_context < big_affinity and small_affinity < small_context
    assert cost.lightnl_macs(56, 56, 24, 0.25, 1) == big_context + 9 * 56 * 56 * 24


def test_layer_is_identity_at_init_and_residual_form():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype(np.float32)
    layer = LightNL(0.25, 2)
    np.testing.assert_allclose(layer(x, training=False).numpy(), x, atol=1e-6)  # gamma = 0
    layer.bn.gamma.assign(np.ones(16, np.float32))
    y = lightnl_aggregate(tf.constant(x), 0.25, 2)
    expected = x + layer.bn(layer.depthwise(y), training=False)
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected.numpy(), atol=1e-5)


def test_serialization_round_trip():
    layer = LightNL(0.125, 2, bn_momentum=0.9, name="nl")
    clone = LightNL.from_config(layer.get_config())
    assert (clone.ratio, clone.stride, clone.bn_momentum, clone.name) == (0.125, 2, 0.9, "nl")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, LightNL) and restored.stride == 2


def test_unknown_batch_xla_and_bfloat16():
    layer = LightNL(0.25, 2)
    layer.build((None, 8, 8, 16))
    layer.bn.gamma.assign(np.full(16, 0.5, np.float32))
    fn = tf.function(lambda t: layer(t, training=False), jit_compile=True,
                     input_signature=[tf.TensorSpec([None, 8, 8, 16], tf.float32)])
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, 8, 8, 16)).astype(np.float32)
        np.testing.assert_allclose(fn(x).numpy(), layer(x, training=False).numpy(), atol=1e-5)

    bf16 = LightNL(0.25, 1, dtype="mixed_bfloat16")
    x = tf.random.normal((2, 8, 8, 16))
    out = bf16(x, training=True)
    assert out.dtype == tf.bfloat16 and bool(tf.reduce_all(tf.math.is_finite(tf.cast(out, tf.float32))))


def test_bad_arguments():
    with pytest.raises(ValueError, match="ratio"):
        LightNL(0.0)
    with pytest.raises(ValueError, match="stride"):
        LightNL(0.25, 3)
    with pytest.raises(ValueError, match="unknown LightNL order"):
        lightnl_aggregate(tf.ones((1, 4, 4, 8)), 0.25, 1, order="sideways")
    dynamic = tf.function(lambda t: lightnl_aggregate(t, 0.25, 1),
                          input_signature=[tf.TensorSpec([1, None, None, 8])])
    with pytest.raises(ValueError, match="static height"):
        dynamic.get_concrete_function()
