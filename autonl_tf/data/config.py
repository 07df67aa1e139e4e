"""Configuration of the input pipeline (one `ml_collections.ConfigDict`, usually `cfg.data`)."""

from __future__ import annotations

import ml_collections

# ImageNet (ILSVRC-2012) sizes of the Cloud TPU TFRecord layout.
IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_EVAL_EXAMPLES = 50_000

AUGMENTATIONS = ("none", "autoaugment", "randaugment")
DTYPES = ("float32", "bfloat16")


def _embedded_defaults() -> ml_collections.ConfigDict:
    """Parameters of the generated dataset (see `autonl_tf.data.embedded`)."""
    return ml_collections.ConfigDict(
        {
            "image_size": 48,  # stored resolution (px); `image_size` above is the model input
            "num_train": 3000,
            "num_eval": 600,
            "num_train_shards": 4,
            "num_eval_shards": 2,
            "seed": 0,
        }
    )


def default_data_config(dataset: str = "imagenet") -> ml_collections.ConfigDict:
    """The data section of a run config.

    Args:
      dataset: 'imagenet' (default: the paper's recipe), 'embedded' (defaults suited to the
        small generated set: 48 px, no random crop or AutoAugment, full-image eval) or
        'tfds:<name>'.

    Keys:
      dataset: 'imagenet' (TFRecord layout of the Cloud TPU tools, also what
        `python -m autonl_tf.data.build_tfrecords` writes) | 'tfds:<name>' (a TFDS dataset
        already present in `data_dir`; nothing is ever downloaded) | 'embedded'.
      data_dir: shard directory / TFDS data dir; for 'embedded' the cache root ('' =
        ~/.cache/autonl_tf/embedded). `prepare()` replaces it by the resolved directory.
      image_size: side of the square model input, px.
      num_classes: labels must lie in [0, num_classes) after subtracting `label_offset`.
      label_offset: 1 for the ImageNet layout (labels stored 1..1000); TFDS labels are 0-based
        and ignore this key.
      num_train_examples / num_eval_examples: 0 = unknown (prepare() fills or counts them).
        The eval count fixes the number of (padded) eval batches.
      augment: 'none' | 'autoaugment' (ImageNet policy) | 'randaugment'.
      randaugment_num_layers / randaugment_magnitude: RandAugment N and M (M on the 0..10
        level scale shared with AutoAugment; values above 10 extrapolate).
      random_crop: Inception random-resized crop (area `crop_area_range`, aspect
        `crop_aspect_range`); False = the eval crop.
      random_flip: random horizontal flip at training time.
      eval_crop_padding: eval central crop keeps image_size / (image_size + padding) of the
        shorter side (32 -> 224/256 = 0.875); 0 keeps the whole image.
      cache: cache the serialized records in memory after the first epoch.
      deterministic: reproducible order and augmentation given `seed`.
      skip_corrupt: skip damaged records (corrupt image, label out of range, truncated shard,
        unparsable record) instead of failing; counted per shard at the end of a run.
      shuffle_buffer: records in the training shuffle buffer.
      dtype: image dtype of the batches, 'float32' | 'bfloat16'.
      embedded: parameters of the generated dataset.
    """
    cfg = ml_collections.ConfigDict(
        {
            "dataset": "imagenet",
            "data_dir": "",
            "image_size": 224,
            "num_classes": 1000,
            "label_offset": 1,
            "train_split": "train",
            "eval_split": "validation",
            "num_train_examples": IMAGENET_TRAIN_EXAMPLES,
            "num_eval_examples": IMAGENET_EVAL_EXAMPLES,
            "augment": "autoaugment",
            "randaugment_num_layers": 2,
            "randaugment_magnitude": 9.0,
            "random_crop": True,
            "crop_area_range": (0.08, 1.0),
            "crop_aspect_range": (3.0 / 4.0, 4.0 / 3.0),
            "random_flip": True,
            "eval_crop_padding": 32,
            "cache": False,
            "deterministic": False,
            "seed": 0,
            "skip_corrupt": False,
            "shuffle_buffer": 10_000,
            "dtype": "float32",
            "embedded": _embedded_defaults(),
        }
    )
    if dataset == "embedded":
        # The label of the generated set depends on two small patterns anywhere in the image:
        # a random crop or the 0.875 eval crop could cut one off, so both see the whole image.
        cfg.dataset = "embedded"
        cfg.image_size = cfg.embedded.image_size
        cfg.num_classes = 10
        cfg.num_train_examples = cfg.embedded.num_train
        cfg.num_eval_examples = cfg.embedded.num_eval
        cfg.augment = "none"
        cfg.random_crop = False
        cfg.eval_crop_padding = 0
        cfg.shuffle_buffer = 4096
    elif dataset.startswith("tfds:"):
        cfg.dataset = dataset
        cfg.label_offset = 0
        cfg.num_train_examples = 0
        cfg.num_eval_examples = 0
    elif dataset != "imagenet":
        raise ValueError(
            f"default_data_config: unknown dataset {dataset!r}; "
            "expected 'imagenet', 'embedded' or 'tfds:<name>'"
        )
    return cfg
