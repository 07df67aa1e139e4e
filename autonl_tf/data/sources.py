"""Where encoded images come from: ImageNet-layout TFRecord shards or a prepared TFDS dataset.

A source yields, per input pipeline, a dataset of raw elements and decodes one element into
(encoded image bytes: string [], stored label: int []).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging

import ml_collections
import tensorflow as tf

from autonl_tf.data import records
from autonl_tf.data.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
_READ_BUFFER = 8 << 20  # bytes; large sequential reads matter on network filesystems / GCS
_MAX_CYCLE = 16

_log = logging.getLogger(__name__)


def file_sizes(files: list[str]) -> list[int]:
    """Byte sizes of `files` (stat in parallel: instant locally, a round trip each on GCS)."""
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda f: tf.io.gfile.stat(f).length, files))


@tf.autograph.experimental.do_not_convert
def read_checked(filename: tf.Tensor, expected_size: tf.Tensor, strict: bool) -> tf.data.Dataset:
    """Serialized records of one TFRecord file, checking the file was read to its end.

    TFRecord reader errors (truncation, CRC mismatch) do not name the file. The file's records
    are read with `ignore_errors` (which ends the file at the first bad record), and a final
    sentinel compares the bytes consumed (record length + 16 bytes of framing each) with the
    file size. strict: a short read fails with an error naming the file; otherwise the
    remainder of the file is skipped and a warning with the counts is printed.
    """
    tagged = (
        tf.data.TFRecordDataset(filename, buffer_size=_READ_BUFFER)
        .ignore_errors()
        .map(lambda r: (r, False))
        .concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), True)))
    )

    def accumulate(state, element):
        consumed, count = state
        record, is_end = element
        size = tf.cast(tf.strings.length(record), tf.int64) + 16
        consumed += tf.where(is_end, tf.constant(0, tf.int64), size)
        count += tf.where(is_end, tf.constant(0, tf.int64), 1)
        return (consumed, count), (record, is_end, consumed, count)

    def check(record, is_end, consumed, count):
        complete = tf.logical_or(tf.logical_not(is_end), tf.equal(consumed, expected_size))
        if strict:
            assertion = tf.debugging.Assert(
                complete,
                [
                    "Corrupt or truncated TFRecord shard",
                    filename,
                    "- valid records before the damage:",
                    count,
                    "- bytes readable:",
                    consumed,
                    "of",
                    expected_size,
                    ". Rebuild the shard, or set data.skip_corrupt=True to skip damaged records.",
                ],
                summarize=16,
            )
        else:

            def warn():
                printed = tf.print(
                    "WARNING: skipped the damaged remainder of TFRecord shard", filename,
                    "after", count, "valid records (data.skip_corrupt=True)",
                )
                with tf.control_dependencies([printed]):
                    return tf.constant(False)

            assertion = tf.cond(complete, lambda: tf.constant(True), warn)
        with tf.control_dependencies([assertion]):
            return tf.identity(record), is_end

    return (
        tagged.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), accumulate)
        .map(check)
        .filter(lambda record, is_end: tf.logical_not(is_end))
        .map(lambda record, is_end: record)
    )


class TFRecordSource:
    """Shards `<data_dir>/<split>-*-of-*` of `tf.train.Example`s (records.py)."""

    def __init__(self, cfg: ml_collections.ConfigDict, split: str):
        self.files = records.list_shards(cfg.data_dir, split)
        self.strict = not cfg.skip_corrupt
        self.label_offset = int(cfg.label_offset)

    def records(
        self,
        training: bool,
        num_pipelines: int,
        pipeline_id: int,
        deterministic: bool,
        seed: int | None,
    ) -> tf.data.Dataset:
        """Serialized Examples of pipeline `pipeline_id` (disjoint across pipelines).

        Training with at least one file per pipeline: whole files per pipeline, shuffled.
        Otherwise (eval, or few files): every pipeline reads the files in the same order and
        keeps every num_pipelines-th record, so each keeps at most ceil(N / num_pipelines).
        """
        files = self.files
        by_file = training and num_pipelines > 1 and len(files) >= num_pipelines
        if by_file:
            files = files[pipeline_id::num_pipelines]
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.constant(files, tf.string), tf.constant(file_sizes(files), tf.int64))
        )
        same_order_everywhere = num_pipelines > 1 and not by_file
        if training and not same_order_everywhere:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        strict = self.strict
        cycle = min(len(files), _MAX_CYCLE)
        ds = ds.interleave(
            lambda f, n: read_checked(f, n, strict),
            cycle_length=cycle,
            block_length=1,
            num_parallel_calls=cycle,
            deterministic=deterministic or same_order_everywhere,
        )
        if same_order_everywhere:
            ds = ds.shard(num_pipelines, pipeline_id)
        return ds

    @staticmethod
    def decode(element: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return records.parse_example(element)

    def total_bytes(self) -> int:
        return sum(file_sizes(self.files))

    def count(self) -> int:
        """Records in all shards (one pass, nothing decoded; cached per files and sizes)."""
        return _count_records(tuple(self.files), tuple(file_sizes(self.files)), self.strict)


@functools.lru_cache(maxsize=32)
def _count_records(files: tuple[str, ...], sizes: tuple[int, ...], strict: bool) -> int:
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files, tf.string), tf.constant(sizes, tf.int64))
    ).interleave(lambda f, n: read_checked(f, n, strict), cycle_length=min(len(files), _MAX_CYCLE),
                 num_parallel_calls=AUTOTUNE)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


@functools.lru_cache(maxsize=8)
def tfds_builder(name: str, data_dir: str):
    """The TFDS builder of a dataset already prepared in data_dir (never downloads)."""
    import tensorflow_datasets as tfds  # heavy import, only for 'tfds:' datasets

    where = data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
    fix = (
        f"Prepare it where there is network (`tfds build {name} --data_dir=DIR`) and point "
        "data.data_dir at DIR; this pipeline never downloads."
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # tfds raises several types (DatasetNotFoundError, ValueError...)
        # Its message lists every TFDS dataset (hundreds of lines): keep the first sentence.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"TFDS dataset {name!r} not found in {where} ({first[:200]}). "
                        f"{fix}") from None
    if not builder.is_prepared():
        raise DataError(f"TFDS dataset {name!r} is not prepared in {where}. {fix}")
    return builder


class TfdsSource:
    """A TFDS image-classification dataset (first Image and ClassLabel features)."""

    def __init__(self, cfg: ml_collections.ConfigDict, split: str):
        import tensorflow_datasets as tfds

        name = cfg.dataset.split(":", 1)[1]
        self.builder = tfds_builder(name, cfg.data_dir)
        self.image_key, self.label_key = tfds_keys(self.builder)
        self.num_classes = self.builder.info.features[self.label_key].num_classes
        if split not in self.builder.info.splits:
            raise DataError(
                f"TFDS dataset {name!r} has no split {split!r} (data.train_split / "
                f"data.eval_split); it has {sorted(self.builder.info.splits)}"
            )
        self.split = split
        self.num_examples = self.builder.info.splits[split].num_examples
        self.strict = not cfg.skip_corrupt
        self.label_offset = 0  # TFDS ClassLabels are 0-based
        self._tfds = tfds

    def records(
        self,
        training: bool,
        num_pipelines: int,
        pipeline_id: int,
        deterministic: bool,
        seed: int | None,
    ) -> tf.data.Dataset:
        """{'image': bytes, 'label': int64} of an even, disjoint sub-split per pipeline."""
        tfds = self._tfds
        split = self.split
        if num_pipelines > 1:
            split = tfds.even_splits(split, n=num_pipelines)[pipeline_id]
        options = tf.data.Options()
        options.deterministic = deterministic
        read_config = tfds.ReadConfig(
            options=options, shuffle_seed=seed, try_autocache=False, skip_prefetch=True
        )
        ds = self.builder.as_dataset(
            split=split,
            shuffle_files=training,
            decoders={self.image_key: tfds.decode.SkipDecoding()},
            read_config=read_config,
        )
        if not self.strict:
            ds = ds.ignore_errors(log_warning=True)
        image_key, label_key = self.image_key, self.label_key
        # One dict per element (not a tuple, which map functions would receive unpacked).
        return ds.map(
            tf.autograph.experimental.do_not_convert(
                lambda ex: {"image": ex[image_key], "label": ex[label_key]}
            )
        )

    @staticmethod
    def decode(element: dict) -> tuple[tf.Tensor, tf.Tensor]:
        return element["image"], element["label"]

    def count(self) -> int:
        return int(self.num_examples)


def tfds_keys(builder) -> tuple[str, str]:
    """(image feature key, label feature key) of a TFDS builder."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    supervised = builder.info.supervised_keys
    if supervised and len(supervised) == 2 and all(isinstance(k, str) for k in supervised):
        image_key, label_key = supervised
    else:
        images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
        labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
        if not images or not labels:
            raise DataError(
                f"TFDS dataset {builder.name!r} is not image classification: it needs an Image "
                f"and a ClassLabel feature, has {list(features.keys())}"
            )
        image_key, label_key = images[0], labels[0]
    if not isinstance(features[image_key], tfds.features.Image):
        raise DataError(f"TFDS feature {image_key!r} of {builder.name!r} is not an Image")
    return image_key, label_key


def make_source(cfg: ml_collections.ConfigDict, split: str) -> TFRecordSource | TfdsSource:
    if cfg.dataset.startswith("tfds:"):
        return TfdsSource(cfg, split)
    return TFRecordSource(cfg, split)
