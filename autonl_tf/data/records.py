"""The ImageNet TFRecord layout: shard names, `tf.train.Example` encoding and parsing.

One record = one image, fields of the Cloud TPU tools (label 1-based):
  image/encoded (JPEG bytes), image/format, image/class/label (int64), image/class/synset,
  image/class/text, image/height, image/width, image/filename.
"""

from __future__ import annotations

import json
import logging
import os
import re

import tensorflow as tf

from autonl_tf.data.errors import DataError

LABELS_FILE = "labels.txt"
METADATA_FILE = "metadata.json"

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}

_log = logging.getLogger(__name__)


def shard_name(split: str, index: int, num_shards: int) -> str:
    """'train', 3, 1024 -> 'train-00003-of-01024'."""
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def shard_pattern(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"{split}-*-of-*")


def list_shards(data_dir: str, split: str) -> list[str]:
    """Sorted shard paths of `split` in `data_dir`.

    Raises:
      DataError: no data_dir, or no file matches `<data_dir>/<split>-*-of-*`.
    """
    pattern = shard_pattern(data_dir or "<unset>", split)
    fix = (
        "Set data.data_dir to a directory holding ImageNet-layout TFRecord shards "
        f"('{split}-00000-of-00128', ...); build them from a folder of class sub-folders with "
        f"`python -m autonl_tf.data.build_tfrecords --input_dir=DIR --output_dir=OUT "
        f"--split={split} --num_shards=N`, or use data.dataset='embedded' for the generated demo set."
    )
    if not data_dir:
        raise DataError(f"data.data_dir is empty: no file can match {pattern}. {fix}")
    if not tf.io.gfile.isdir(data_dir):
        raise DataError(f"data.data_dir {data_dir!r} does not exist: no file matches {pattern}. {fix}")
    regex = re.compile(rf"^{re.escape(split)}-\d+-of-\d+$")
    files = sorted(
        f for f in tf.io.gfile.glob(pattern) if regex.match(os.path.basename(f))
    )
    if not files:
        raise DataError(f"No file matches {pattern}. {fix}")
    _warn_missing_shards(files, split)
    return files


def _warn_missing_shards(files: list[str], split: str) -> None:
    """Missing shards silently shrink the data: say so (a subset may be intentional)."""
    totals = {int(os.path.basename(f).rsplit("-of-", 1)[1]) for f in files}
    if len(totals) == 1 and len(files) != next(iter(totals)):
        _log.warning(
            "%s: %d shards found but their names say %d; the split is incomplete",
            split, len(files), next(iter(totals)),
        )


def make_example(
    encoded: bytes,
    label: int,
    *,
    synset: str,
    text: str,
    height: int,
    width: int,
    filename: str,
    image_format: str = "JPEG",
) -> tf.train.Example:
    """A `tf.train.Example` of the ImageNet layout (`label` as stored, 1-based there)."""

    def _bytes(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def _int(v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": _bytes(encoded),
                "image/format": _bytes(image_format.encode()),
                "image/class/label": _int(label),
                "image/class/synset": _bytes(synset.encode()),
                "image/class/text": _bytes(text.encode()),
                "image/height": _int(height),
                "image/width": _int(width),
                "image/filename": _bytes(filename.encode()),
            }
        )
    )


def parse_example(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Scalar serialized Example -> (encoded image bytes: string [], stored label: int64 [])."""
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    return parsed["image/encoded"], parsed["image/class/label"]


def parse_filename(serialized: tf.Tensor) -> tf.Tensor:
    """The `image/filename` field (string []), used by tests and diagnostics."""
    spec = {"image/filename": tf.io.FixedLenFeature([], tf.string, default_value="")}
    return tf.io.parse_single_example(serialized, spec)["image/filename"]


def read_metadata(data_dir: str) -> dict:
    """`metadata.json` written by the builder ({} when absent)."""
    path = os.path.join(data_dir, METADATA_FILE)
    if not data_dir or not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def read_labels_file(data_dir: str, label_offset: int = 1) -> list[str]:
    """Class names of `labels.txt` (`<label>\\t<synset>\\t<text>` lines).

    Returns:
      names, where names[i] is the human-readable text of the 0-based label i
      (stored label i + label_offset).
    """
    path = os.path.join(data_dir, LABELS_FILE)
    if not tf.io.gfile.exists(path):
        raise DataError(
            f"No labels file {path}. It is written by `python -m autonl_tf.data.build_tfrecords`; "
            "for shards from other tools write one line `<label>\\t<synset>\\t<text>` per class."
        )
    entries = read_labels_entries(path)
    names = []
    for i, (label, (synset, text)) in enumerate(sorted(entries.items())):
        if label != i + label_offset:
            raise DataError(
                f"{path}: labels must be consecutive from {label_offset} "
                f"(data.label_offset); found {label} at position {i}"
            )
        names.append(text or synset)
    return names


def read_labels_entries(path: str) -> dict[int, tuple[str, str]]:
    """{stored label: (synset/folder, text)} of a labels file."""
    entries: dict[int, tuple[str, str]] = {}
    with tf.io.gfile.GFile(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            try:
                label = int(parts[0])
            except ValueError as e:
                raise DataError(f"{path}:{lineno}: expected '<label>\\t<synset>\\t<text>'") from e
            synset = parts[1] if len(parts) > 1 else ""
            text = parts[2] if len(parts) > 2 else synset
            entries[label] = (synset, text)
    return entries
