"""Damaged TFRecord shards: find the bad records, name them in one line, count skipped ones.

TensorFlow's errors from inside tf.data ("jpeg::Uncompress failed", "truncated record at ...",
an `assertion failed` on labels) name neither the shard nor the record. Instead of threading
that information through every pipeline stage, the input pipelines register the splits they
read (`register_split`), and when iterating fails `explain_input_errors` scans those shards for
the first damaged record and raises a `DataError` that names the shard file, the record index,
the field and the fix. With ``data.skip_corrupt=True`` the pipelines skip damaged records, and
`count_damaged_records` counts them per shard for the end-of-run report.

A record is damaged when the shard's framing cannot be read (truncated file, CRC mismatch), the
record is not a parsable `tf.train.Example` with `image/encoded` and `image/class/label`, the
label minus `data.label_offset` is outside [0, data.num_classes), or the image does not decode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading

import ml_collections
import tensorflow as tf
from absl import logging

from autonl_tf.data import records
from autonl_tf.data.errors import DataError

__all__ = [
    "Damage",
    "report_skipped_records",
    "count_damaged_records",
    "explain_input_errors",
    "find_damaged_records",
    "register_split",
]

_FRAMING_BYTES = 16  # length (8) + length CRC (4) + data CRC (4) per TFRecord record
_SKIP_FIX = "or set --config.data.skip_corrupt=true to skip damaged records"

# (data_dir, split) -> (registration number, the prepared data config) of the pipelines built
# in this process; the number lets a caller consider only the pipelines it built itself.
_REGISTERED: dict[tuple[str, str], tuple[int, ml_collections.ConfigDict]] = {}
_LOCK = threading.Lock()
_COUNTER = [0]


@dataclasses.dataclass(frozen=True)
class Damage:
    """One damaged record (or the unreadable tail of a shard)."""

    shard: str
    record: int  # 0-based index of the record in the shard
    field: str  # 'TFRecord framing', 'tf.train.Example', 'image/class/label', 'image/encoded'
    problem: str

    def message(self) -> str:
        fixes = {
            "TFRecord framing": "rebuild the shard (python -m autonl_tf.data.build_tfrecords)",
            "tf.train.Example": "rebuild the shard (python -m autonl_tf.data.build_tfrecords)",
            "image/class/label": "fix data.num_classes / data.label_offset or the labels",
            "image/encoded": "replace or remove the image and rebuild the shard",
        }
        return (f"damaged data in shard {self.shard}, record {self.record}: {self.field}: "
                f"{self.problem}. Fix: {fixes[self.field]}, {_SKIP_FIX}.")


def register_split(cfg: ml_collections.ConfigDict, split: str) -> None:
    """Remember that a pipeline reads `split` of the prepared config `cfg` (TFRecord only)."""
    if cfg.dataset.startswith("tfds:") or not cfg.data_dir:
        return
    with _LOCK:
        _COUNTER[0] += 1
        _REGISTERED[(cfg.data_dir, split)] = (_COUNTER[0], ml_collections.ConfigDict(cfg.to_dict()))


def registration_mark() -> int:
    """Pass to `registered_splits(since=...)` to see only the pipelines built after now."""
    with _LOCK:
        return _COUNTER[0]


def registered_splits(since: int = 0) -> list[tuple[ml_collections.ConfigDict, str]]:
    """(prepared data config, split) of the TFRecord pipelines built after mark `since`."""
    with _LOCK:
        return [(cfg, split) for (_, split), (number, cfg) in _REGISTERED.items()
                if number > since]


def _record_problem(serialized: bytes, cfg: ml_collections.ConfigDict) -> tuple[str, str] | None:
    """(field, problem) of one serialized record, None when it is fine (eager, one record)."""
    try:
        example = tf.train.Example.FromString(serialized)
    except Exception as e:  # protobuf's DecodeError
        return "tf.train.Example", f"not a parsable tf.train.Example ({type(e).__name__})"
    feature = example.features.feature
    labels = feature["image/class/label"].int64_list.value if "image/class/label" in feature else []
    if len(labels) != 1:
        return "image/class/label", "missing (expected one int64)"
    label = int(labels[0]) - int(cfg.label_offset)
    if not 0 <= label < int(cfg.num_classes):
        return ("image/class/label",
                f"stored label {labels[0]} minus data.label_offset={cfg.label_offset} is "
                f"outside [0, data.num_classes={cfg.num_classes})")
    images = feature["image/encoded"].bytes_list.value if "image/encoded" in feature else []
    if len(images) != 1:
        return "image/encoded", "missing (expected one bytes value)"
    try:
        tf.io.decode_image(images[0], channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        first_line = (e.message or type(e).__name__).splitlines()[0].strip()
        return "image/encoded", f"not a decodable image ({first_line[:120]})"
    return None


@tf.autograph.experimental.do_not_convert
def _record_ok(serialized: tf.Tensor, num_classes: int, label_offset: int) -> tf.Tensor:
    """Graph check of one record; raises (and is dropped by ignore_errors) when damaged."""
    encoded, label = records.parse_example(serialized)
    label = label - label_offset
    in_range = tf.logical_and(label >= 0, label < num_classes)
    check = tf.debugging.Assert(in_range, ["label out of range"])
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.size(image) > 0


def _scan_shard(path: str, cfg: ml_collections.ConfigDict, first_only: bool) -> list[Damage]:
    """Damaged records of one shard, in record order."""
    size = tf.io.gfile.stat(path).length
    readable = tf.data.TFRecordDataset(path).ignore_errors()
    lengths = readable.map(lambda r: tf.strings.length(r, unit="BYTE"))
    num_readable, consumed = lengths.reduce(
        (tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
        lambda state, n: (state[0] + 1, state[1] + tf.cast(n, tf.int64) + _FRAMING_BYTES))
    num_readable, consumed = int(num_readable), int(consumed)
    num_classes, offset = int(cfg.num_classes), int(cfg.label_offset)
    good = (readable.enumerate()
            .map(lambda i, r: (i, _record_ok(r, num_classes, offset)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .ignore_errors()
            .map(lambda i, ok: i))
    kept = {int(i) for i in good.as_numpy_iterator()}
    damage = []
    name = os.path.basename(path)
    if len(kept) < num_readable:
        for index, serialized in enumerate(tf.data.TFRecordDataset(path).ignore_errors()
                                           .as_numpy_iterator()):
            if index in kept:
                continue
            field, problem = _record_problem(serialized, cfg) or ("image/encoded",
                                                                   "could not be decoded")
            damage.append(Damage(path, index, field, problem))
            if first_only:
                return damage
    if consumed != size:
        damage.append(Damage(
            path, num_readable, "TFRecord framing",
            f"{name} is truncated or corrupt after record {num_readable - 1} "
            f"({consumed} of {size} bytes readable)"))
    return damage


def find_damaged_records(cfg: ml_collections.ConfigDict, split: str,
                         first_only: bool = False) -> list[Damage]:
    """Damaged records of the TFRecord shards of `split` (prepared `cfg`), shard by shard."""
    found: list[Damage] = []
    for path in records.list_shards(cfg.data_dir, split):
        found += _scan_shard(path, cfg, first_only)
        if first_only and found:
            return found[:1]
    return found


def report_skipped_records(since: int, summary_dir: str | None, step: int) -> dict[str, int]:
    """Counts, logs and summarises the records skipped by data.skip_corrupt pipelines.

    Considers the pipelines registered after mark `since` whose config has skip_corrupt; one
    decode pass over their shards. Logged per shard, and written to TensorBoard as the scalar
    ``data/skipped_records`` (total) in `summary_dir` when given. Returns {shard path: count}.
    """
    counts: dict[str, int] = {}
    for cfg, split in registered_splits(since):
        if not cfg.skip_corrupt:
            continue
        for damage in find_damaged_records(cfg, split):
            counts[damage.shard] = counts.get(damage.shard, 0) + 1
    if not any(cfg.skip_corrupt for cfg, _ in registered_splits(since)):
        return counts
    for shard, count in sorted(counts.items()):
        logging.warning("data.skip_corrupt: skipped %d damaged record(s) of shard %s",
                        count, shard)
    logging.info("data.skip_corrupt: %d damaged record(s) skipped in %d shard(s)",
                 sum(counts.values()), len(counts))
    if summary_dir:
        writer = tf.summary.create_file_writer(summary_dir)
        with writer.as_default(step=step):
            tf.summary.scalar("data/skipped_records", sum(counts.values()))
        writer.close()
    return counts


def count_damaged_records(cfg: ml_collections.ConfigDict, split: str) -> dict[str, int]:
    """{shard base name: damaged records} of the shards of `split` that have any."""
    counts: dict[str, int] = {}
    for damage in find_damaged_records(cfg, split):
        name = os.path.basename(damage.shard)
        counts[name] = counts.get(name, 0) + 1
    return counts


# What iterating a pipeline over damaged records raises. UnicodeDecodeError: TensorFlow fails
# to decode its own error message when that quotes the bytes of an unparsable record.
_INPUT_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
                 tf.errors.OutOfRangeError, UnicodeDecodeError)


# Words of TensorFlow's messages for errors raised while reading or decoding input: only then
# are the shards scanned (a scan decodes every record, not worth it for a model's own errors).
_INPUT_HINTS = ("IteratorGetNext", "Iterator", "jpeg", "JPEG", "image", "label out of range",
                "truncated", "corrupted record", "Example", "DataLoss", "decode", "Decode",
                "TFRecord", "record")


def _may_come_from_input(error: BaseException) -> bool:
    if isinstance(error, tf.errors.DataLossError | UnicodeDecodeError):
        return True
    text = str(getattr(error, "message", "") or error)
    return any(hint in text for hint in _INPUT_HINTS)


def explain(error: BaseException, since: int = 0) -> DataError | None:
    """A `DataError` naming the first damaged record of the registered splits, if any.

    Called with an error raised while a pipeline ran; None when no shard registered after mark
    `since` is damaged (then the error came from elsewhere and is left as it is).
    """
    if not isinstance(error, _INPUT_ERRORS) or not _may_come_from_input(error):
        return None
    for cfg, split in registered_splits(since):
        try:
            damage = find_damaged_records(cfg, split, first_only=True)
        except DataError as e:
            return e
        if damage:
            return DataError(damage[0].message())
    return None


@contextlib.contextmanager
def explain_input_errors(all_pipelines: bool = False):
    """Re-raises tf.data errors caused by damaged records as a one-line `DataError`.

    Considers the pipelines built inside the block (all of this process's with all_pipelines).
    """
    mark = 0 if all_pipelines else registration_mark()
    try:
        yield
    except _INPUT_ERRORS as e:
        explained = explain(e, mark)
        if explained is None:
            raise
        raise explained from None
