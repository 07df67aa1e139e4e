"""'tfds:<name>' datasets: a tiny generated TFDS dataset, prepared offline in a tmp dir."""
# bazel: suite=data

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from autonl_tf import data  # noqa: E402

tfds = pytest.importorskip("tensorflow_datasets")

NUM_TRAIN, NUM_EVAL, SIZE = 12, 7, 16


class AutonlFakeImages(tfds.core.GeneratorBasedBuilder):
    """3 classes of flat grey images (PNG-encoded by TFDS); grey level 10 + 20 i identifies i."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        # Generated examples: no download, so no network.
        return {
            "train": self._generate_examples(NUM_TRAIN),
            "validation": self._generate_examples(NUM_EVAL),
        }

    def _generate_examples(self, count):
        for i in range(count):
            image = np.full((20, 24, 3), 10 + 20 * i, np.uint8)
            yield str(i), {"image": image, "label": i % 3}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    AutonlFakeImages(data_dir=data_dir).download_and_prepare()
    config = data.default_data_config("tfds:autonl_fake_images")
    config.update(data_dir=data_dir, image_size=SIZE, augment="none", shuffle_buffer=32)
    return config


def test_prepare_reads_the_dataset_info(cfg):
    prepared = data.prepare(cfg)
    assert prepared.num_classes == 3 and prepared.label_offset == 0
    assert (prepared.num_train_examples, prepared.num_eval_examples) == (NUM_TRAIN, NUM_EVAL)
    assert data.class_names(cfg) == ["a", "b", "c"]


def test_train_batches_from_png(cfg):
    cfg = cfg.copy_and_resolve_references()
    cfg.augment = "randaugment"
    images, labels = next(iter(data.build_train_dataset(cfg, 4)))
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32 and set(labels.numpy()) <= {0, 1, 2}  # 0-based as stored


@pytest.mark.parametrize("pipelines", [1, 2])
def test_eval_counts_each_image_once(cfg, pipelines):
    seen = []
    for pipeline in range(pipelines):
        ctx = tf.distribute.InputContext(pipelines, pipeline, pipelines)
        batches = list(data.build_eval_dataset(cfg, 4, ctx))
        assert len(batches) == data.num_eval_batches(cfg, 4, pipelines)
        for images, labels, weights in batches:
            for image, label, weight in zip(images.numpy(), labels.numpy(), weights.numpy(),
                                            strict=True):
                if weight:
                    level = image[..., 0].mean() * data.IMAGENET_STD[0] + data.IMAGENET_MEAN[0]
                    index = int(round((level - 10) / 20))
                    assert label == index % 3
                    seen.append(index)
    assert sorted(seen) == list(range(NUM_EVAL))


def test_missing_tfds_dataset(tmp_path):
    config = data.default_data_config("tfds:autonl_no_such_dataset")
    config.data_dir = str(tmp_path)
    with pytest.raises(data.DataError, match="never downloads"):
        data.build_eval_dataset(config, 4)
