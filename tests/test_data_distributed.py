"""Input pipelines under tf.distribute.MirroredStrategy with two logical CPU replicas.

tests/conftest.py splits the CPU into two logical devices before TensorFlow starts.
"""
# bazel: suite=data

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from autonl_tf import data  # noqa: E402
from autonl_tf.data import writer  # noqa: E402
from tests.support.strategies import two_cpu_replicas  # noqa: E402

NUM_EVAL, SIZE = 11, 16


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shards"))
    items = []
    for i in range(NUM_EVAL):
        buffer = io.BytesIO()
        # Flat grey 10 + 20 i: the image mean identifies it after preprocessing.
        Image.fromarray(np.full((20, 24, 3), 10 + 20 * i, np.uint8)).save(buffer, "PNG")
        items.append(writer.ImageItem(buffer.getvalue(), 1 + i % 2, "c", "c", f"{i}.png"))
    writer.write_shards(items, out, "validation", 2)
    writer.write_shards(items, out, "train", 3)
    config = data.default_data_config()
    config.update(data_dir=out, image_size=SIZE, num_classes=2, augment="none")
    return config


def _strategy() -> tf.distribute.MirroredStrategy:
    assert len(tf.config.list_logical_devices("CPU")) >= 2, (
        "needs two logical CPUs (set up in tests/conftest.py)")
    return two_cpu_replicas()


def _identify(image: np.ndarray) -> int:
    level = float(np.mean(image[..., 0])) * data.IMAGENET_STD[0] + data.IMAGENET_MEAN[0]
    return int(round((level - 10) / 20))


@pytest.mark.parametrize("global_batch", [4, 6, 16])
def test_mirrored_eval_counts_each_image_once(cfg, global_batch):
    strategy = _strategy()
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: data.build_eval_dataset(cfg, global_batch, ctx)
    )
    seen, steps = [], 0
    for images, labels, weights in dist:
        steps += 1
        for replica_images, replica_labels, replica_weights in zip(
            strategy.experimental_local_results(images),
            strategy.experimental_local_results(labels),
            strategy.experimental_local_results(weights),
            strict=True,
        ):
            assert replica_images.shape == (global_batch // 2, SIZE, SIZE, 3)  # full batches
            for image, label, weight in zip(replica_images.numpy(), replica_labels.numpy(),
                                            replica_weights.numpy(), strict=True):
                if weight:
                    index = _identify(image)
                    assert label == index % 2
                    seen.append(index)
    assert steps == data.num_eval_batches(cfg, global_batch)
    assert sorted(seen) == list(range(NUM_EVAL))


def test_mirrored_train_per_replica_batches(cfg):
    strategy = _strategy()
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: data.build_train_dataset(cfg, 8, ctx)
    )
    images, labels = next(iter(dist))
    for replica_images, replica_labels in zip(
        strategy.experimental_local_results(images),
        strategy.experimental_local_results(labels),
        strict=True,
    ):
        assert replica_images.shape == (4, SIZE, SIZE, 3)
        assert replica_labels.shape == (4,) and replica_labels.dtype == tf.int32


def test_keras_evaluate_uses_the_weights(cfg):
    """The padded eval set through Model.evaluate: accuracy over the real images only."""
    strategy = _strategy()
    with strategy.scope():
        inputs = tf.keras.Input((SIZE, SIZE, 3))
        # Always predicts class 0: the accuracy is the share of class-0 images (6 of 11).
        outputs = tf.keras.layers.Lambda(
            lambda x: tf.one_hot(tf.zeros(tf.shape(x)[:1], tf.int32), 2)
        )(inputs)
        model = tf.keras.Model(inputs, outputs)
        model.compile(loss="sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: data.build_eval_dataset(cfg, 4, ctx)
    )
    steps = data.num_eval_batches(cfg, 4)
    result = model.evaluate(dist, steps=steps, return_dict=True, verbose=0)
    assert result["accuracy"] == pytest.approx(6 / 11)
