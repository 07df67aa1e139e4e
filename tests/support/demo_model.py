"""A small trained classifier and matching images, for the export tests and demos.

The demo model is tiny (three MBConv blocks with SE and LightNL, both LightNL multiplication
orders) and trained for a few dozen steps on a synthetic 10-class set whose class is the
dominant colour of the image, so that its logits are confident rather than degenerate.
"""

from __future__ import annotations

import io

import keras
import numpy as np

from autonl_tf.data import normalize
from autonl_tf.models import ModelSpec, build_model, resolve_model_spec

__all__ = ["DEMO_ARCH", "build_demo_model", "demo_images", "demo_labels", "demo_spec", "encode_images",
           "train_demo_model"]

# 16x16 LightNL (context-first order), 8x8 LightNL with stride-2 keys and SE (context first),
# 4x4 LightNL with 64 channels and SE (affinity-first order), at a 32 px input.
DEMO_ARCH = ("r1_k3_s11_e1_i32_o16_sw_nonlocal0.25 "
             "r1_k3_s22_e3_i16_o24_se0.25_sw_nonlocal0.25-2 "
             "r1_k5_s22_e3_i24_o64_se0.25_sw_nonlocal0.25")
NUM_CLASSES = 10
_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                     [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230],
                     [250, 190, 190], [0, 128, 128]], np.float32)


def demo_spec() -> ModelSpec:
    return resolve_model_spec(DEMO_ARCH)


def demo_labels() -> list[str]:
    return [f"colour_{i}" for i in range(NUM_CLASSES)]


def demo_images(count: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [count, size, size, 3] RGB, int32 [count] labels): the class colour fills a
    random rectangle covering most of the image, over a random noisy background."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
    images = rng.uniform(0, 255, (count, size, size, 3)).astype(np.float32)
    for image, label in zip(images, labels, strict=True):
        top, left = rng.integers(0, size // 6, 2)
        bottom, right = size - rng.integers(0, size // 6, 2)
        shade = _PALETTE[label] * rng.uniform(0.8, 1.1)
        image[top:bottom, left:right] = 0.7 * shade + 0.3 * image[top:bottom, left:right]
    return np.clip(images, 0, 255).astype(np.uint8), labels


def encode_images(images: np.ndarray, image_format: str = "JPEG") -> list[bytes]:
    """uint8 [N, H, W, 3] -> N encoded files (JPEG quality 95, or PNG)."""
    from PIL import Image

    encoded = []
    for image in images:
        buffer = io.BytesIO()
        options = {"quality": 95} if image_format == "JPEG" else {}
        Image.fromarray(image).save(buffer, format=image_format, **options)
        encoded.append(buffer.getvalue())
    return encoded


def build_demo_model(image_size: int = 32) -> keras.Model:
    """The demo network, untrained: the one `train_demo_model` trains (and whose weights it
    saved loads into)."""
    return build_model(demo_spec(), num_classes=NUM_CLASSES, image_size=image_size,
                       dropout_rate=0.0, bn_momentum=0.9)


def train_demo_model(image_size: int = 32, steps: int = 60, batch_size: int = 32,
                     seed: int = 0) -> keras.Model:
    """The demo network trained with Adam for `steps` steps (a few seconds on a CPU)."""
    keras.utils.set_random_seed(seed)
    model = build_demo_model(image_size)
    images, labels = demo_images(steps * batch_size // 4, image_size, seed=seed + 1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(np.asarray(normalize(images)), labels, batch_size=batch_size, epochs=4,
              verbose=0, shuffle=True)
    return model
