"""tf.data pipelines on real JPEG TFRecords written by the builder."""
# bazel: suite=data

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import collections  # noqa: E402
import io  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from autonl_tf import data  # noqa: E402
from autonl_tf.data import records, sources, writer  # noqa: E402

NUM_TRAIN, NUM_EVAL, SIZE = 24, 10, 32
LEVEL_STEP = 23  # eval image i is a flat grey of 10 + 23 * i: its mean identifies it


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _eval_level(i: int) -> int:
    return 10 + LEVEL_STEP * i


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("shards"))
    rng = np.random.default_rng(0)
    train = []
    for i in range(NUM_TRAIN):
        h, w = (40, 56) if i % 2 else (64, 48)
        array = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        label = 1 + i % 3
        train.append(writer.ImageItem(_encode(array, "JPEG"), label, f"c{label}", f"class {label}",
                                      f"t{i}.jpg"))
    evals = []
    for i in range(NUM_EVAL):
        array = np.full((48, 60, 3), _eval_level(i), np.uint8)
        label = 1 + i % 3
        evals.append(writer.ImageItem(_encode(array, "PNG" if i % 2 else "JPEG"), label,
                                      f"c{label}", f"class {label}", f"v{i}.png"))
    writer.write_shards(train, out, "train", 3)
    writer.write_shards(evals, out, "validation", 2)
    writer.write_labels_file(out, {k: (f"c{k}", f"class {k}") for k in (1, 2, 3)})
    return out


def _cfg(data_dir: str, **overrides):
    cfg = data.default_data_config()
    cfg.data_dir = data_dir
    cfg.image_size = SIZE
    cfg.num_classes = 3
    cfg.augment = "none"
    cfg.shuffle_buffer = 64
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def _fingerprint(image: np.ndarray) -> int:
    """Index i of the flat eval image (from its mean value)."""
    level = float(np.mean(image[..., 0], dtype=np.float64)) * data.IMAGENET_STD[0]
    level += data.IMAGENET_MEAN[0]
    return int(round((level - 10) / LEVEL_STEP))


def _filenames(ds: tf.data.Dataset) -> list[str]:
    return [records.parse_filename(r).numpy().decode() for r in ds]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_train_batches(data_dir, dtype):
    cfg = _cfg(data_dir, dtype=dtype)
    prepared = data.prepare(cfg)
    assert (prepared.num_train_examples, prepared.num_eval_examples) == (NUM_TRAIN, NUM_EVAL)
    ds = data.build_train_dataset(cfg, 8)
    assert ds.element_spec[0].shape == (8, SIZE, SIZE, 3)
    labels = []
    for images, batch_labels in ds.take(6):  # 48 images: beyond one epoch (repeat)
        assert images.dtype == tf.as_dtype(dtype) and batch_labels.dtype == tf.int32
        assert images.shape == (8, SIZE, SIZE, 3) and batch_labels.shape == (8,)
        assert np.isfinite(tf.cast(images, tf.float32).numpy()).all()
        labels.extend(batch_labels.numpy().tolist())
    assert set(labels) == {0, 1, 2}  # stored 1..3, label_offset 1


def test_label_offset_zero(data_dir):
    ds = data.build_train_dataset(_cfg(data_dir, label_offset=0, num_classes=4), 8)
    labels = np.concatenate([y.numpy() for _, y in ds.take(4)])
    assert set(labels.tolist()) == {1, 2, 3}


@pytest.mark.parametrize(
    "global_batch, pipelines, replicas",
    [(4, 1, 1), (3, 1, 1), (32, 1, 1), (4, 2, 2), (6, 1, 2), (8, 2, 4)],
)
def test_eval_counts_every_image_exactly_once(data_dir, global_batch, pipelines, replicas):
    cfg = _cfg(data_dir, dtype="bfloat16")
    steps = data.num_eval_batches(cfg, global_batch, pipelines)
    seen = []
    for pipeline in range(pipelines):
        ctx = None
        if replicas > 1:
            ctx = tf.distribute.InputContext(pipelines, pipeline, replicas)
        batches = list(data.build_eval_dataset(cfg, global_batch, ctx))
        per_replica = global_batch // replicas
        # Every pipeline yields the same number of full batches: one per step and replica.
        assert len(batches) == steps * replicas // pipelines
        for images, labels, weights in batches:
            assert images.shape == (per_replica, SIZE, SIZE, 3) and images.dtype == tf.bfloat16
            assert labels.dtype == tf.int32 and weights.dtype == tf.float32
            for image, label, weight in zip(images.numpy().astype(np.float32), labels.numpy(),
                                            weights.numpy(), strict=True):
                assert weight in (0.0, 1.0)
                if weight:
                    index = _fingerprint(image)
                    assert label == index % 3
                    seen.append(index)
    assert sorted(seen) == list(range(NUM_EVAL))
    per_pipeline = -(-NUM_EVAL // pipelines)  # ceil
    assert steps == -(-per_pipeline // (global_batch // pipelines))


@pytest.mark.parametrize("augment", ["autoaugment", "randaugment"])
def test_augmentations_give_valid_images(data_dir, augment):
    cfg = _cfg(data_dir, augment=augment, dtype="bfloat16", randaugment_magnitude=10.0)
    for images, _ in data.build_train_dataset(cfg, 8).take(3):
        assert images.shape == (8, SIZE, SIZE, 3) and images.dtype == tf.bfloat16
        values = tf.cast(images, tf.float32).numpy()
        assert np.isfinite(values).all()
        # Normalised 0..255 values stay within the normalised range.
        assert values.min() >= -123.675 / 57.12 - 0.05 and values.max() <= 151.8 / 57.12 + 0.05


@pytest.mark.parametrize("pipelines", [2, 4])  # 3 shards: by file for 2, by record for 4
def test_train_sharding_is_a_partition(data_dir, pipelines):
    source = sources.make_source(_cfg(data_dir), "train")
    parts = [
        _filenames(source.records(True, pipelines, i, deterministic=False, seed=None))
        for i in range(pipelines)
    ]
    union = [name for part in parts for name in part]
    assert sorted(union) == sorted(f"t{i}.jpg" for i in range(NUM_TRAIN))
    assert all(parts)


def test_deterministic_mode_repeats_batches(data_dir):
    def batches():
        cfg = _cfg(data_dir, deterministic=True, seed=7, augment="autoaugment")
        return [(x.numpy(), y.numpy()) for x, y in data.build_train_dataset(cfg, 8).take(4)]

    first, second = batches(), batches()
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)
    other = _cfg(data_dir, deterministic=True, seed=8, augment="autoaugment")
    x3 = next(iter(data.build_train_dataset(other, 8)))[0].numpy()
    assert not np.array_equal(first[0][0], x3)


def _damaged_copy(src: str, dst, shard: str, how: str) -> str:
    shutil.copytree(src, dst)
    path = os.path.join(dst, shard)
    blob = bytearray(open(path, "rb").read())
    if how == "truncate":
        blob = blob[: len(blob) - 50]
    else:  # flip a byte in the middle of the file: a CRC mismatch
        blob[len(blob) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(bytes(blob))
    return str(dst)


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_corrupt_shard_error_names_the_file(data_dir, tmp_path, how):
    shard = "validation-00001-of-00002"
    damaged = _damaged_copy(data_dir, tmp_path / "d", shard, how)
    with pytest.raises(tf.errors.InvalidArgumentError, match=shard):
        list(data.build_eval_dataset(_cfg(damaged), 4))
    # skip_corrupt: the damaged remainder is skipped, everything else counted once.
    weights = [w.numpy() for _, _, w in data.build_eval_dataset(_cfg(damaged, skip_corrupt=True), 4)]
    total = float(np.sum(weights))
    assert NUM_EVAL // 2 <= total < NUM_EVAL


def test_corrupt_train_shard_strict_and_skip(data_dir, tmp_path):
    shard = "train-00001-of-00003"
    damaged = _damaged_copy(data_dir, tmp_path / "d", shard, "flip")
    with pytest.raises(tf.errors.InvalidArgumentError, match=shard):
        list(data.build_train_dataset(_cfg(damaged), 8).take(8))
    batches = list(data.build_train_dataset(_cfg(damaged, skip_corrupt=True), 8).take(8))
    assert len(batches) == 8


def test_label_outside_num_classes_fails_loudly(data_dir):
    cfg = _cfg(data_dir, num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"data\.num_classes=2"):
        list(data.build_train_dataset(cfg, 8).take(4))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"data\.label_offset=1"):
        list(data.build_eval_dataset(cfg, 8))


def test_missing_or_empty_data_dir(tmp_path):
    for data_dir in ("", str(tmp_path / "missing"), str(tmp_path)):
        with pytest.raises(data.DataError, match=r"train-\*-of-\*") as error:
            data.build_train_dataset(_cfg(data_dir), 8)
        assert "build_tfrecords" in str(error.value)
    (tmp_path / "train-junk").write_text("")  # a file that does not match the pattern
    with pytest.raises(data.DataError, match="No file matches"):
        data.build_eval_dataset(_cfg(str(tmp_path)), 8)
    with pytest.raises(data.DataError, match="data.augment"):
        data.prepare(_cfg(str(tmp_path), augment="mixup"))


def test_eval_count_without_metadata_is_counted(data_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    os.remove(copy / records.METADATA_FILE)
    for configured in (0, 50_000, 7):  # unknown, or wrong (a small set is always counted)
        cfg = _cfg(str(copy), num_eval_examples=configured, cache=True)
        assert data.num_eval_examples(cfg) == NUM_EVAL
        assert data.num_eval_batches(cfg, 4) == 3
    ds = data.build_eval_dataset(cfg, 4)
    assert sum(float(w.numpy().sum()) for _, _, w in ds) == NUM_EVAL
    assert sum(float(w.numpy().sum()) for _, _, w in ds) == NUM_EVAL  # second pass: cache


def test_preprocess_for_eval_matches_pipeline_and_serves_strings(data_dir):
    yy, xx = np.mgrid[0:48, 0:60]
    array = np.stack([yy * 4, xx * 3, 255 - yy * 2], axis=-1).astype(np.uint8)  # smooth
    jpeg, png = _encode(array, "JPEG"), _encode(array, "PNG")

    @tf.function
    def serve(strings):
        return tf.map_fn(
            lambda s: data.preprocess_for_eval(s, SIZE, tf.float32),
            strings,
            fn_output_signature=tf.TensorSpec([SIZE, SIZE, 3], tf.float32),
        )

    out = serve(tf.constant([jpeg, png])).numpy()
    assert out.shape == (2, SIZE, SIZE, 3)
    assert np.abs(out[0] - out[1]).mean() < 0.05  # JPEG loss only
    # Same function as the eval pipeline: a stored eval image comes out identical.
    raw = next(iter(sources.make_source(_cfg(data_dir), "validation").records(False, 1, 0, True,
                                                                               None)))
    image_bytes, _ = records.parse_example(raw)
    pipeline_image = next(iter(data.build_eval_dataset(_cfg(data_dir), 1)))[0][0].numpy()
    np.testing.assert_array_equal(data.preprocess_for_eval(image_bytes, SIZE).numpy(),
                                  pipeline_image)
    normalized = data.normalize(tf.constant(data.IMAGENET_MEAN))
    np.testing.assert_allclose(normalized.numpy(), 0.0, atol=1e-6)


def test_class_names(data_dir):
    assert data.class_names(_cfg(data_dir)) == ["class 1", "class 2", "class 3"]
    assert data.read_labels_file(data_dir) == ["class 1", "class 2", "class 3"]


def test_num_eval_batches():
    cfg = data.default_data_config()  # ImageNet: 50000 eval images
    assert data.num_eval_batches(cfg, 1024) == 49
    assert data.num_eval_batches(cfg, 4096, 32) == 13
    assert data.num_eval_batches(cfg, 50000) == 1
    counts = collections.Counter(data.num_eval_batches(cfg, b) for b in (100, 125, 250))
    assert counts == {500: 1, 400: 1, 200: 1}
