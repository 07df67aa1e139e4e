"""Resolve a data config: build/locate the embedded set, fill sizes, validate values."""

from __future__ import annotations

import os

import ml_collections
import tensorflow as tf

from autonl_tf.data import embedded, records
from autonl_tf.data.config import AUGMENTATIONS, DTYPES
from autonl_tf.data.errors import DataError


def _validate(cfg: ml_collections.ConfigDict) -> None:
    if cfg.augment not in AUGMENTATIONS:
        raise DataError(f"data.augment={cfg.augment!r}: expected one of {AUGMENTATIONS}")
    if cfg.dtype not in DTYPES:
        raise DataError(f"data.dtype={cfg.dtype!r}: expected one of {DTYPES}")
    if cfg.image_size < 1 or cfg.num_classes < 1:
        raise DataError("data.image_size and data.num_classes must be >= 1")
    if not (cfg.dataset in ("imagenet", "embedded") or cfg.dataset.startswith("tfds:")):
        raise DataError(
            f"data.dataset={cfg.dataset!r}: expected 'imagenet', 'embedded' or 'tfds:<name>'"
        )


def prepare(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A resolved copy of the data config (the input is not modified); idempotent.

    'embedded': builds the set (or finds the cached build) under data_dir ('' = the user
    cache) and sets data_dir to it, num_classes, label_offset and the example counts.
    'tfds:<name>': num_classes and example counts from the prepared dataset's info,
    label_offset 0. 'imagenet': example counts from the builder's metadata.json when present
    (otherwise the configured counts stay; 0 means counted when needed).
    """
    cfg = cfg.copy_and_resolve_references()
    _validate(cfg)
    if cfg.dataset == "embedded" and _holds_own_shards(cfg.data_dir):
        _use_own_shards(cfg)
    if cfg.dataset == "embedded":
        e = cfg.embedded
        cfg.data_dir = embedded.ensure_embedded_dataset(
            cfg.data_dir, e.image_size, e.num_train, e.num_eval,
            e.num_train_shards, e.num_eval_shards, e.seed,
        )
        manifest = embedded.read_manifest(cfg.data_dir) or {}
        cfg.num_classes = embedded.NUM_CLASSES
        cfg.label_offset = 1
        cfg.train_split, cfg.eval_split = embedded.TRAIN_SPLIT, embedded.EVAL_SPLIT
        cfg.num_train_examples = manifest["splits"][embedded.TRAIN_SPLIT]
        cfg.num_eval_examples = manifest["splits"][embedded.EVAL_SPLIT]
    elif cfg.dataset.startswith("tfds:"):
        from autonl_tf.data import sources

        name = cfg.dataset.split(":", 1)[1]
        if not name:
            raise DataError("data.dataset='tfds:' needs a dataset name, e.g. 'tfds:imagenette'")
        train = sources.TfdsSource(cfg, cfg.train_split) if _has_split(cfg, cfg.train_split) \
            else None
        evaluation = sources.TfdsSource(cfg, cfg.eval_split)
        cfg.num_classes = evaluation.num_classes
        cfg.label_offset = 0
        cfg.num_eval_examples = evaluation.num_examples
        if train is not None:
            cfg.num_train_examples = train.num_examples
    else:
        splits = records.read_metadata(cfg.data_dir).get("splits", {})
        if cfg.train_split in splits:
            cfg.num_train_examples = splits[cfg.train_split]["num_examples"]
        if cfg.eval_split in splits:
            cfg.num_eval_examples = splits[cfg.eval_split]["num_examples"]
    return cfg


def _holds_own_shards(data_dir: str) -> bool:
    """data_dir holds TFRecord shards that are not a build of the embedded set."""
    if not data_dir or embedded.read_manifest(data_dir) is not None:
        return False
    if records.read_metadata(data_dir).get("format") == "imagenet-tfrecord":
        return True
    return bool(tf.io.gfile.isdir(data_dir) and tf.io.gfile.glob(
        records.shard_pattern(data_dir, "*")))


def _use_own_shards(cfg: ml_collections.ConfigDict) -> None:
    """An 'embedded' config pointed at one's own shards: read them, never generate into them.

    The shards are the ImageNet layout of `build_tfrecords` (labels 1..K in labels.txt). The
    embedded set's flip-safe augmentation does not carry over: random flips are turned off
    unless the labels are known to survive them (set data.random_flip=True then).
    """
    import logging

    labels_path = os.path.join(cfg.data_dir, records.LABELS_FILE)
    if not tf.io.gfile.exists(labels_path):
        raise DataError(
            f"data.data_dir {cfg.data_dir!r} holds TFRecord shards but no {records.LABELS_FILE}: "
            "shards from other tools need --config.data.dataset=imagenet and "
            "--config.data.num_classes=K (or write labels.txt, one '<label>\\t<name>' line "
            "per class)")
    entries = records.read_labels_entries(labels_path)
    splits = records.read_metadata(cfg.data_dir).get("splits", {})
    cfg.dataset = "imagenet"
    cfg.label_offset = 1
    cfg.num_classes = len(entries)
    cfg.train_split, cfg.eval_split = "train", "validation"
    cfg.num_train_examples = splits.get("train", {}).get("num_examples", 0)
    cfg.num_eval_examples = splits.get("validation", {}).get("num_examples", 0)
    cfg.random_flip = False
    logging.getLogger(__name__).info(
        "data.data_dir %s holds TFRecord shards: training on them (%d classes from %s), not on "
        "the embedded set; random flips off", cfg.data_dir, cfg.num_classes, labels_path)


def _has_split(cfg: ml_collections.ConfigDict, split: str) -> bool:
    from autonl_tf.data import sources

    builder = sources.tfds_builder(cfg.dataset.split(":", 1)[1], cfg.data_dir)
    return split in builder.info.splits


def class_names(cfg: ml_collections.ConfigDict) -> list[str]:
    """Class names, index = 0-based label (labels.txt, or the TFDS ClassLabel names)."""
    cfg = prepare(cfg)
    if cfg.dataset.startswith("tfds:"):
        from autonl_tf.data import sources

        source = sources.TfdsSource(cfg, cfg.eval_split)
        return list(source.builder.info.features[source.label_key].names)
    return records.read_labels_file(cfg.data_dir, cfg.label_offset)
