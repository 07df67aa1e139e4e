"""AutoAugment / RandAugment ops against their PIL definitions; policy plumbing."""
# bazel: suite=data

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

from autonl_tf.data import augment_ops as ops  # noqa: E402
from autonl_tf.data import autoaugment  # noqa: E402


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(20, 200, (36, 44, 3), dtype=np.uint8)
    base[..., 2] = 77  # a flat channel: equalize/autocontrast must leave it alone
    return base


@pytest.mark.parametrize(
    "name, pil_fn, tf_fn, tolerance",
    [
        ("equalize", ImageOps.equalize, ops.equalize, 0.0),
        ("autocontrast", ImageOps.autocontrast, ops.autocontrast, 1.0),
        ("solarize", lambda im: ImageOps.solarize(im, 128), lambda x: ops.solarize(x, 128), 0.0),
        ("posterize", lambda im: ImageOps.posterize(im, 5), lambda x: ops.posterize(x, 5), 0.0),
        ("invert", ImageOps.invert, ops.invert, 0.0),
        ("color", lambda im: ImageEnhance.Color(im).enhance(0.3),
         lambda x: ops.color(x, 0.3), 1.5),
        ("contrast", lambda im: ImageEnhance.Contrast(im).enhance(1.6),
         lambda x: ops.contrast(x, 1.6), 1.0),
        ("brightness", lambda im: ImageEnhance.Brightness(im).enhance(1.3),
         lambda x: ops.brightness(x, 1.3), 1.0),
        ("sharpness", lambda im: ImageEnhance.Sharpness(im).enhance(1.7),
         lambda x: ops.sharpness(x, 1.7), 1.0),
    ],
)
def test_photometric_ops_match_pil(image, name, pil_fn, tf_fn, tolerance):
    expected = np.asarray(pil_fn(Image.fromarray(image))).astype(np.float32)
    got = tf_fn(tf.constant(image, tf.float32)).numpy()
    assert got.shape == image.shape
    assert np.abs(got - expected).max() <= tolerance, name


def test_geometric_ops(image):
    x = tf.constant(image, tf.float32)
    np.testing.assert_allclose(ops.rotate(x, 0.0).numpy(), image, atol=1e-3)
    np.testing.assert_allclose(ops.rotate(ops.rotate(x, 90.0), -90.0).numpy()[8:-8, 8:-8],
                               image[8:-8, 8:-8], atol=1e-3)
    shifted = ops.translate_x(x, 5.0).numpy()
    np.testing.assert_allclose(shifted[:, 5:], image[:, :-5], atol=1e-3)
    assert (shifted[:, :5] == ops.FILL_VALUE).all()
    np.testing.assert_allclose(ops.translate_y(x, -3.0).numpy()[:-3], image[3:], atol=1e-3)
    sheared = ops.shear_x(x, 0.2).numpy()
    np.testing.assert_allclose(sheared[0], image[0], atol=1e-3)  # row 0 does not move
    assert ops.shear_y(x, 0.2).shape == image.shape


def test_imagenet_policy_table():
    assert len(autoaugment.IMAGENET_POLICY) == 25
    x = tf.zeros([8, 8, 3])
    for sub_policy in autoaugment.IMAGENET_POLICY:
        assert len(sub_policy) == 2
        for name, prob, level in sub_policy:
            assert 0.0 <= prob <= 1.0 and 0 <= level <= 10
            autoaugment.apply_op(name, x, float(level), tf.constant([0, 0]))  # known op


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_policies_are_stateless_and_valid(image, policy):
    x = tf.constant(image, tf.float32)

    def run(seed):
        if policy == "autoaugment":
            return autoaugment.autoaugment(x, tf.constant(seed, tf.int64)).numpy()
        return autoaugment.randaugment(x, tf.constant(seed, tf.int64), 2, 9.0).numpy()

    outputs = [run([s, 1]) for s in range(12)]
    np.testing.assert_array_equal(outputs[0], run([0, 1]))  # same seed, same result
    assert len({o.tobytes() for o in outputs}) > 3  # different seeds, different ops
    for out in outputs:
        assert out.shape == image.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 255.0
