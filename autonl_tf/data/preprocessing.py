"""Per-image preprocessing: decode + crop, resize, augment, normalise.

Crops are computed from the encoded image's shape and applied inside JPEG decoding
(`decode_and_crop_jpeg`), so only the cropped region is decoded. Anything that is not a JPEG
(PNG in TFDS, GIF, BMP) goes through `decode_image` and is cropped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from autonl_tf.data import autoaugment

# ImageNet statistics on the 0..255 scale (the usual ImageNet mean and std).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# (offset_y, offset_x, height, width), int32 scalars.
Window = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]


def normalize(images: tf.Tensor) -> tf.Tensor:
    """(images - mean) / std over the last axis (3 channels, 0..255 scale); any leading shape.

    Returns float32 (bfloat16/float16 inputs are computed in float32).
    """
    images = tf.cast(images, tf.float32)
    return (images - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def center_crop_window(shape: tf.Tensor, image_size: int, crop_padding: int) -> Window:
    """Central square of image_size / (image_size + crop_padding) of the shorter side."""
    height, width = shape[0], shape[1]
    fraction = image_size / (image_size + crop_padding)
    side = tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return (height - side + 1) // 2, (width - side + 1) // 2, side, side


def random_crop_window(
    shape: tf.Tensor,
    seed: tf.Tensor,
    image_size: int,
    crop_padding: int,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
) -> Window:
    """Inception crop: random area/aspect box; the central crop when sampling fails.

    `sample_distorted_bounding_box` returns the whole image after 10 failed attempts; that
    case falls back to the eval crop, as in the reference ImageNet pipelines.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.stack([shape[0], shape[1], 3]),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=0.1,
        aspect_ratio_range=aspect_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    whole = tf.logical_and(tf.equal(size[0], shape[0]), tf.equal(size[1], shape[1]))
    center = center_crop_window(shape, image_size, crop_padding)
    return tuple(  # type: ignore[return-value]
        tf.where(whole, c, r) for c, r in zip(center, (begin[0], begin[1], size[0], size[1]),
                                              strict=True)
    )


def decode_and_crop(image_bytes: tf.Tensor, window_fn: Callable[[tf.Tensor], Window]) -> tf.Tensor:
    """Encoded image (string []) -> cropped uint8 [h, w, 3].

    window_fn maps the image's [height, width] (int32 [2]) to the crop window.
    """

    def jpeg() -> tf.Tensor:
        shape = tf.image.extract_jpeg_shape(image_bytes)
        window = tf.stack(window_fn(shape))
        return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

    def other() -> tf.Tensor:
        image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8, expand_animations=False)
        y, x, h, w = window_fn(tf.shape(image)[:2])
        return tf.slice(image, tf.stack([y, x, 0]), tf.stack([h, w, 3]))

    image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Bicubic resize to [image_size, image_size, 3] float32, clipped to 0..255."""
    image = tf.image.resize(image[None], [image_size, image_size], method="bicubic")[0]
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([image_size, image_size, 3])
    return image


def preprocess_for_eval(
    image_bytes: tf.Tensor,
    image_size: int = 224,
    dtype: tf.DType | str = tf.float32,
    crop_padding: int = 32,
) -> tf.Tensor:
    """Encoded JPEG/PNG/... (string []) -> normalised image [image_size, image_size, 3] `dtype`.

    Central crop of image_size / (image_size + crop_padding) of the shorter side, bicubic
    resize, ImageNet normalisation. Usable in tf.map_fn over a batch of strings.
    """
    image = decode_and_crop(
        image_bytes, lambda shape: center_crop_window(shape, image_size, crop_padding)
    )
    return tf.cast(normalize(resize(image, image_size)), tf.as_dtype(dtype))


def preprocess_for_train(
    image_bytes: tf.Tensor,
    image_size: int,
    seed: tf.Tensor,
    *,
    random_crop: bool = True,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    crop_padding: int = 32,
    random_flip: bool = True,
    augment: str = "none",
    randaugment_num_layers: int = 2,
    randaugment_magnitude: float = 9.0,
    dtype: tf.DType | str = tf.float32,
) -> tf.Tensor:
    """Encoded image (string []) -> augmented, normalised [image_size, image_size, 3] `dtype`.

    seed: int32/int64 [2]; the same seed gives the same crop, flip and augmentation.
    """
    crop_seed, flip_seed, aug_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if random_crop:
        window_fn = lambda shape: random_crop_window(  # noqa: E731
            shape, crop_seed, image_size, crop_padding, tuple(area_range), tuple(aspect_range)
        )
    else:
        window_fn = lambda shape: center_crop_window(shape, image_size, crop_padding)  # noqa: E731
    image = resize(decode_and_crop(image_bytes, window_fn), image_size)
    if random_flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if augment == "autoaugment":
        image = autoaugment.autoaugment(image, aug_seed)
    elif augment == "randaugment":
        image = autoaugment.randaugment(
            image, aug_seed, randaugment_num_layers, randaugment_magnitude
        )
    elif augment != "none":
        raise ValueError(
            f"data.augment={augment!r}: expected 'none', 'autoaugment' or 'randaugment'"
        )
    return tf.cast(normalize(image), tf.as_dtype(dtype))
