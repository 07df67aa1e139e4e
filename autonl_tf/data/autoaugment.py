"""AutoAugment (ImageNet policy) and RandAugment over the ops of `augment_ops`.

Magnitudes use the AutoAugment level scale 0..10 (Cubuk et al. 2019, appendix): level 10 =
rotate 30 deg, shear 0.3, translate 150/331 of the side, enhance factor 0.1..1.9, solarize
threshold 0, posterize 4 bits; higher levels are stronger for every op. Geometric ops get a
random sign. All randomness is stateless, drawn from a `seed` tensor [2], so a pipeline with a
fixed seed reproduces the same augmentation whatever the parallelism.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tensorflow as tf

from autonl_tf.data import augment_ops as ops

MAX_LEVEL = 10.0

# (op, probability, level) pairs; 25 sub-policies of the ImageNet policy, AutoAugment paper
# (Cubuk et al., CVPR 2019), appendix table "Policy found on reduced ImageNet".
IMAGENET_POLICY: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)

# The 14 transformations of RandAugment (Cubuk et al. 2020), identity included.
RANDAUGMENT_OPS = (
    "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
)


def _signed(value: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """+value or -value with probability 1/2 each."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.where(flip, -value, value)


def apply_op(name: str, image: tf.Tensor, level: float | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Op `name` at magnitude `level` (python or float32 [] tensor) on image [H, W, 3] 0..255."""
    level = tf.cast(level, tf.float32)
    frac = level / MAX_LEVEL
    enhance = tf.maximum(0.0, frac * 1.8 + 0.1)
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    translate = 150.0 / 331.0 * frac
    table: dict[str, Callable[[], tf.Tensor]] = {
        "Identity": lambda: image,
        "AutoContrast": lambda: ops.autocontrast(image),
        "Equalize": lambda: ops.equalize(image),
        "Invert": lambda: ops.invert(image),
        "Rotate": lambda: ops.rotate(image, _signed(30.0 * frac, seed)),
        "Solarize": lambda: ops.solarize(image, tf.maximum(0.0, 256.0 - 256.0 * frac)),
        "Posterize": lambda: ops.posterize(
            image, tf.clip_by_value(8 - tf.cast(tf.floor(4.0 * frac), tf.int32), 1, 8)
        ),
        "Color": lambda: ops.color(image, enhance),
        "Contrast": lambda: ops.contrast(image, enhance),
        "Brightness": lambda: ops.brightness(image, enhance),
        "Sharpness": lambda: ops.sharpness(image, enhance),
        "ShearX": lambda: ops.shear_x(image, _signed(0.3 * frac, seed)),
        "ShearY": lambda: ops.shear_y(image, _signed(0.3 * frac, seed)),
        "TranslateX": lambda: ops.translate_x(image, _signed(translate, seed) * width),
        "TranslateY": lambda: ops.translate_y(image, _signed(translate, seed) * height),
    }
    if name not in table:
        raise ValueError(f"unknown augmentation op {name!r}")
    out = table[name]()
    out.set_shape(image.shape)
    return out


def _switch_op(names, index, image, level, seed) -> tf.Tensor:
    """names[index](image, level); only the selected op runs."""
    branches = [functools.partial(apply_op, name, image, level, seed) for name in names]
    out = tf.switch_case(index, branches)
    out.set_shape(image.shape)
    return out


def autoaugment(image: tf.Tensor, seed: tf.Tensor, policy=IMAGENET_POLICY) -> tf.Tensor:
    """One sub-policy drawn uniformly from `policy`, applied to image [H, W, 3] float32 0..255.

    The policy is a table indexed by the drawn sub-policy; each of its two slots switches over
    the distinct ops of the policy (a small graph, and only the drawn op runs).
    """
    names = sorted({name for sub in policy for name, _, _ in sub})
    op_index = tf.constant([[names.index(n) for n, _, _ in sub] for sub in policy], tf.int32)
    probs = tf.constant([[p for _, p, _ in sub] for sub in policy], tf.float32)
    levels = tf.constant([[float(m) for _, _, m in sub] for sub in policy], tf.float32)
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 1 + 2 * op_index.shape[1]))
    choice = tf.random.stateless_uniform([], seeds[0], 0, len(policy), dtype=tf.int32)
    for slot in range(op_index.shape[1]):
        prob_seed, op_seed = seeds[1 + 2 * slot], seeds[2 + 2 * slot]
        apply = tf.random.stateless_uniform([], prob_seed) < probs[choice, slot]
        image = tf.cond(
            apply,
            functools.partial(_switch_op, names, op_index[choice, slot], image,
                              levels[choice, slot], op_seed),
            functools.partial(tf.identity, image),
        )
    return image


def randaugment(
    image: tf.Tensor, seed: tf.Tensor, num_layers: int = 2, magnitude: float = 9.0
) -> tf.Tensor:
    """`num_layers` ops drawn uniformly from RANDAUGMENT_OPS, each at level `magnitude`.

    Only the drawn op runs for each layer (tf.switch_case).
    """
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 2 * num_layers))
    for layer in range(num_layers):
        choice_seed, op_seed = seeds[2 * layer], seeds[2 * layer + 1]
        index = tf.random.stateless_uniform(
            [], choice_seed, 0, len(RANDAUGMENT_OPS), dtype=tf.int32
        )
        image = _switch_op(RANDAUGMENT_OPS, index, image, float(magnitude), op_seed)
    return image
