"""Image operations of AutoAugment / RandAugment, in TF ops (run inside tf.data graphs).

Every op takes and returns one float32 image [H, W, 3] with values in [0, 255] and keeps its
static shape. The photometric ops follow the PIL definitions the policies were searched with
(ImageEnhance / ImageOps); geometric ops fill uncovered pixels with grey (128).
"""

from __future__ import annotations

import math

import tensorflow as tf

FILL_VALUE = 128.0


def _clip(image: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(image, 0.0, 255.0)


def blend(degenerate: tf.Tensor, image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """PIL ImageEnhance: degenerate + factor * (image - degenerate); factor 1 = identity."""
    return _clip(degenerate + factor * (image - degenerate))


def _grayscale(image: tf.Tensor) -> tf.Tensor:
    """[H, W, 3] -> [H, W, 3], ITU-R 601 luma (PIL's 'L' conversion) in each channel."""
    return tf.broadcast_to(tf.image.rgb_to_grayscale(image), tf.shape(image))


def brightness(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    return blend(tf.zeros_like(image), image, factor)


def color(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """Saturation: factor 0 = greyscale."""
    return blend(_grayscale(image), image, factor)


def contrast(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """Blend with a flat image at the mean grey level (PIL rounds the mean)."""
    mean = tf.round(tf.reduce_mean(tf.image.rgb_to_grayscale(image)))
    return blend(tf.fill(tf.shape(image), mean), image, factor)


def sharpness(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """Blend with PIL's SMOOTH filter (3x3, centre weight 5, /13); borders stay unfiltered."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(tf.round(smooth), [[1, 1], [1, 1], [0, 0]])
    interior = tf.pad(tf.ones_like(smooth[1:-1, 1:-1]), [[1, 1], [1, 1], [0, 0]]) > 0
    degenerate = tf.where(interior, smooth, image)
    return blend(degenerate, image, factor)


def posterize(image: tf.Tensor, bits: int | tf.Tensor) -> tf.Tensor:
    """Keep the `bits` most significant bits of each 8-bit value."""
    shift = tf.cast(8 - bits, tf.uint8)
    pixels = tf.cast(tf.round(_clip(image)), tf.uint8)
    pixels = tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift)
    return tf.cast(pixels, tf.float32)


def solarize(image: tf.Tensor, threshold: float | tf.Tensor) -> tf.Tensor:
    """Invert the values >= threshold."""
    return tf.where(image < threshold, image, 255.0 - image)


def invert(image: tf.Tensor) -> tf.Tensor:
    return 255.0 - image


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """Stretch each channel to [0, 255] (channels with a single value stay as they are)."""
    lo = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scale = 255.0 / tf.maximum(hi - lo, 1e-6)
    return tf.where(hi > lo, _clip((image - lo) * scale), image)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Histogram equalisation per channel, the PIL ImageOps.equalize algorithm."""
    pixels = tf.cast(tf.round(_clip(image)), tf.int32)
    # One bincount over 3 * 256 bins: value v of channel c goes to bin 256 * c + v.
    binned = pixels + tf.constant([0, 256, 512])
    hist = tf.reshape(tf.math.bincount(binned, minlength=768, maxlength=768), [3, 256])
    # Count of the brightest occupied bin: PIL leaves it out of the step size.
    last_bin = tf.reduce_max(tf.where(hist > 0, tf.range(256)[None, :], -1), axis=1)
    last_count = tf.gather(hist, tf.maximum(last_bin, 0), batch_dims=1)
    step = (tf.reduce_sum(hist, axis=1) - last_count) // 255  # [3]
    safe_step = tf.maximum(step, 1)[:, None]
    exclusive = tf.cumsum(hist, axis=1, exclusive=True)
    lut = tf.minimum((exclusive + safe_step // 2) // safe_step, 255)  # [3, 256]
    # Flat channels (step 0) keep their values: identity rows in the table.
    lut = tf.where(step[:, None] > 0, lut, tf.range(256)[None, :])
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), binned), tf.float32)


def _project(image: tf.Tensor, transform: list) -> tf.Tensor:
    """Apply a projective map (output pixel -> input pixel, 8 coefficients), bilinear."""
    transform = tf.cast(tf.stack(transform), tf.float32)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=FILL_VALUE,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    out.set_shape(image.shape)
    return out


def rotate(image: tf.Tensor, degrees: float | tf.Tensor) -> tf.Tensor:
    """Rotate about the image centre."""
    theta = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    h = tf.cast(tf.shape(image)[0], tf.float32) - 1.0
    w = tf.cast(tf.shape(image)[1], tf.float32) - 1.0
    cos, sin = tf.cos(theta), tf.sin(theta)
    x_offset = (w - (cos * w - sin * h)) / 2.0
    y_offset = (h - (sin * w + cos * h)) / 2.0
    return _project(image, [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])


def shear_x(image: tf.Tensor, level: float | tf.Tensor) -> tf.Tensor:
    return _project(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image: tf.Tensor, level: float | tf.Tensor) -> tf.Tensor:
    return _project(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def translate_x(image: tf.Tensor, pixels: float | tf.Tensor) -> tf.Tensor:
    return _project(image, [1.0, 0.0, -pixels, 0.0, 1.0, 0.0, 0.0, 0.0])


def translate_y(image: tf.Tensor, pixels: float | tf.Tensor) -> tf.Tensor:
    return _project(image, [1.0, 0.0, 0.0, 0.0, 1.0, -pixels, 0.0, 0.0])
