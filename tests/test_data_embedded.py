"""The generated (embedded) dataset: deterministic, cached, read by the same pipeline."""
# bazel: suite=data

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import collections  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from autonl_tf import data, files  # noqa: E402
from autonl_tf.data import embedded  # noqa: E402

SMALL = dict(image_size=32, num_train=40, num_eval=20, num_train_shards=2, num_eval_shards=1)


def _small_cfg(root: str):
    cfg = data.default_data_config("embedded")
    cfg.data_dir = root
    cfg.image_size = 32
    cfg.embedded.update(SMALL)
    return cfg


def test_build_is_deterministic_and_cached(tmp_path):
    first = embedded.ensure_embedded_dataset(str(tmp_path / "a"), seed=3, **SMALL)
    second = embedded.ensure_embedded_dataset(str(tmp_path / "b"), seed=3, **SMALL)
    names = sorted(n for n in os.listdir(first) if n.startswith(("train-", "validation-")))
    assert names == ["train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"]
    for name in names:  # same seed: byte-identical shards
        with open(os.path.join(first, name), "rb") as f1, open(os.path.join(second, name),
                                                                "rb") as f2:
            assert f1.read() == f2.read()
    stamp = os.stat(os.path.join(first, names[0])).st_mtime_ns
    assert embedded.ensure_embedded_dataset(str(tmp_path / "a"), seed=3, **SMALL) == first
    assert embedded.ensure_embedded_dataset(first, seed=3, **SMALL) == first  # the dir itself
    assert os.stat(os.path.join(first, names[0])).st_mtime_ns == stamp  # reused, not rebuilt
    other = embedded.ensure_embedded_dataset(str(tmp_path / "a"), seed=4, **SMALL)
    assert other != first
    assert not any(n.startswith(files.TMP_PREFIX) for n in os.listdir(tmp_path / "a"))


def test_damaged_build_is_rebuilt(tmp_path):
    path = embedded.ensure_embedded_dataset(str(tmp_path), **SMALL)
    shard = os.path.join(path, "train-00000-of-00002")
    with open(shard, "r+b") as f:
        f.truncate(100)
    assert embedded.ensure_embedded_dataset(str(tmp_path), **SMALL) == path
    assert os.path.getsize(shard) > 100


def test_prepare_and_pipeline(tmp_path):
    cfg = data.prepare(_small_cfg(str(tmp_path)))
    assert cfg.data_dir.startswith(str(tmp_path)) and os.path.isdir(cfg.data_dir)
    assert (cfg.num_classes, cfg.num_train_examples, cfg.num_eval_examples) == (10, 40, 20)
    assert data.prepare(cfg).data_dir == cfg.data_dir  # idempotent
    assert data.class_names(cfg) == embedded.class_names()
    images, labels = next(iter(data.build_train_dataset(cfg, 8)))
    assert images.shape == (8, 32, 32, 3) and labels.dtype == tf.int32
    counts = collections.Counter()
    for _, batch_labels, weights in data.build_eval_dataset(_small_cfg(str(tmp_path)), 8):
        counts.update(batch_labels.numpy()[weights.numpy() > 0].tolist())
    assert counts == {label: 2 for label in range(10)}  # class-balanced


def test_label_semantics():
    """label = 2 * shape + same colour: count the palette colours present in each image."""
    rng = np.random.default_rng(0)
    for label in list(range(embedded.NUM_CLASSES)) * 3:
        image = embedded.render(rng, label, 48).astype(np.float32)
        assert image.shape == (48, 48, 3)
        distance = np.linalg.norm(image[:, :, None, :] - embedded.PALETTE[None, None], axis=-1)
        nearest, close = distance.argmin(-1), distance.min(-1) < 45
        colours = {c for c in range(len(embedded.PALETTE)) if np.sum(close & (nearest == c)) >= 8}
        assert len(colours) == (1 if label % 2 else 2), label
    masks = [embedded._shape_mask(s, 8) for s in embedded.SHAPES]
    assert all(np.array_equal(m, m[:, ::-1]) for m in masks)  # flips keep the label
    assert len({m.tobytes() for m in masks}) == len(masks)
