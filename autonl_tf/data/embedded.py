"""The embedded dataset: generated on the fly, deterministic, no download.

Each image (default 48x48) shows two small coloured tokens of the same shape at random
positions at least half the image side apart, on a noisy gradient background with thin
clutter strokes. The label (10 classes) combines a local attribute with a long-range relation:

    label = 2 * shape + (the two tokens have the same colour)

shape in {square, frame, plus, cross, triangle}: one token suffices to see the shape, but the
colour match needs both, far apart. All shapes are left-right symmetric, so horizontal flips
keep the label. Images are written as PNG bytes through the builder's writer (re-encoded to
JPEG, `tf.train.Example`, atomic shards), i.e. exactly the layout of real data.

    python -m autonl_tf.data.embedded --epochs=10   # build + train a tiny CNN, print accuracy
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import uuid

import numpy as np
from PIL import Image

from autonl_tf import files
from autonl_tf.data import writer

GENERATOR_VERSION = 2
NUM_CLASSES = 10
SHAPES = ("square", "frame", "plus", "cross", "triangle")
# Three maximally distinct colours. With two, "different colours" reduces to "both colours are
# present", which a pooled CNN solves at once (tiny CNN below: 99.8% after 10 epochs); with six,
# the relation was not learned within minutes (48% = shape only after 10 epochs, also with a
# non-local block after 15). With three: ~50% after 10 epochs, 62% and rising after 20.
PALETTE = np.array(
    [
        [230, 40, 40],  # red
        [40, 200, 60],  # green
        [50, 80, 235],  # blue
    ],
    dtype=np.float32,
)
MANIFEST = "manifest.json"
TRAIN_SPLIT, EVAL_SPLIT = "train", "validation"

_log = logging.getLogger(__name__)


def class_names() -> list[str]:
    """Human-readable names, index = 0-based label."""
    return [
        f"{shape} pair, {'same' if same else 'different'} colours"
        for shape in SHAPES
        for same in (0, 1)
    ]


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean [size, size] mask, left-right symmetric by construction."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2.0
    half = max(1.0, size / 7.0)  # stroke half-width
    if shape == "square":
        mask = np.ones((size, size), bool)
    elif shape == "frame":
        mask = (np.minimum.reduce([yy, xx, size - 1 - yy, size - 1 - xx]) < 2)
    elif shape == "plus":
        mask = (np.abs(yy - c) < half) | (np.abs(xx - c) < half)
    elif shape == "cross":
        mask = (np.abs(yy - xx) < half) | (np.abs(yy + xx - (size - 1)) < half)
    elif shape == "triangle":
        mask = np.abs(xx - c) <= (yy + 0.5) / 2.0
    else:
        raise ValueError(shape)
    return mask | mask[:, ::-1]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dim two-colour gradient along a random direction, plus thin low-saturation strokes."""
    a, b = rng.uniform(30, 150, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.0) / 2.0
    image = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    for _ in range(rng.integers(4, 9)):
        grey = rng.uniform(20, 200) + rng.uniform(-15, 15, size=3)
        y0, x0, y1, x1 = rng.uniform(0, size - 1, size=4)
        n = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
        ys = np.round(np.linspace(y0, y1, n)).astype(int)
        xs = np.round(np.linspace(x0, x1, n)).astype(int)
        image[ys, xs] = grey
    return image


def _positions(rng: np.random.Generator, size: int, token: int) -> tuple[tuple[int, int], ...]:
    """Two top-left corners whose token centres are at least size / 2 apart."""
    while True:
        p = rng.integers(1, size - token - 1, size=(2, 2))
        if np.linalg.norm(p[0] - p[1]) >= size / 2:
            return (int(p[0, 0]), int(p[0, 1])), (int(p[1, 0]), int(p[1, 1]))


def render(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """One uint8 image [size, size, 3] of 0-based class `label`."""
    shape, same = SHAPES[label // 2], label % 2 == 1
    token = max(7, size // 6)
    image = _background(rng, size)
    mask = _shape_mask(shape, token)
    first = int(rng.integers(len(PALETTE)))
    second = first if same else int((first + rng.integers(1, len(PALETTE))) % len(PALETTE))
    for (y, x), colour in zip(_positions(rng, size, token), (first, second), strict=True):
        jitter = rng.uniform(-12, 12, size=3)
        patch = image[y : y + token, x : x + token]
        patch[mask] = PALETTE[colour] + jitter
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def generate_items(num: int, size: int, seed: int, split_id: int) -> list[writer.ImageItem]:
    """`num` class-balanced images (PNG bytes), deterministic in (seed, split_id)."""
    rng = np.random.default_rng([seed, split_id, GENERATOR_VERSION])
    labels = rng.permutation(np.arange(num) % NUM_CLASSES)
    names = class_names()
    items = []
    for i, label in enumerate(labels):
        buffer = io.BytesIO()
        Image.fromarray(render(rng, int(label), size)).save(buffer, format="PNG")
        synset = f"{SHAPES[label // 2]}_{'same' if label % 2 else 'diff'}"
        items.append(
            writer.ImageItem(buffer.getvalue(), int(label) + 1, synset, names[label],
                             f"{synset}_{split_id}_{i:06d}.png")
        )
    return items


def _params(image_size, num_train, num_eval, num_train_shards, num_eval_shards, seed) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "image_size": int(image_size),
        "num_train": int(num_train),
        "num_eval": int(num_eval),
        "num_train_shards": int(num_train_shards),
        "num_eval_shards": int(num_eval_shards),
        "seed": int(seed),
    }


def read_manifest(data_dir: str) -> dict | None:
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _is_complete(data_dir: str, params: dict) -> bool:
    """The manifest matches `params` and every file it lists is there with its size."""
    manifest = read_manifest(data_dir)
    if manifest is None or manifest.get("params") != params:
        return False
    for name, size in manifest.get("files", {}).items():
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return False
    return True


def default_root() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "autonl_tf", "embedded")


def ensure_embedded_dataset(
    root_dir: str = "",
    image_size: int = 48,
    num_train: int = 3000,
    num_eval: int = 600,
    num_train_shards: int = 4,
    num_eval_shards: int = 2,
    seed: int = 0,
) -> str:
    """Build the dataset under root_dir unless an identical build exists; return its data dir.

    The data dir (root_dir/<parameters>, or root_dir itself when it already is such a build)
    holds train-*-of-* and validation-*-of-* shards, labels.txt, metadata.json and a
    manifest.json with the parameters and file sizes, which is how a build is recognised.
    Builds go to a temporary sibling directory renamed into place, so concurrent callers and
    interrupted builds never expose a half-written dataset.
    """
    params = _params(image_size, num_train, num_eval, num_train_shards, num_eval_shards, seed)
    root_dir = root_dir or default_root()
    if _is_complete(root_dir, params):
        return root_dir
    name = (
        f"pairs-v{GENERATOR_VERSION}-{image_size}px-{num_train}+{num_eval}"
        f"-seed{seed}-shards{num_train_shards}x{num_eval_shards}"
    )
    data_dir = os.path.join(root_dir, name)
    if _is_complete(data_dir, params):
        return data_dir
    if os.path.exists(data_dir):  # incomplete or stale: rebuild
        shutil.rmtree(data_dir)
    os.makedirs(root_dir, exist_ok=True)
    tmp_dir = os.path.join(root_dir, f"{files.TMP_PREFIX}{name}.{uuid.uuid4().hex[:8]}")
    try:
        _build(tmp_dir, params)
        try:
            os.rename(tmp_dir, data_dir)
        except OSError:
            if not _is_complete(data_dir, params):  # lost a race against a broken build
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return data_dir


def _build(out_dir: str, params: dict) -> None:
    _log.info("building the embedded dataset in %s", out_dir)
    os.makedirs(out_dir)
    size, seed = params["image_size"], params["seed"]
    splits = {
        TRAIN_SPLIT: (params["num_train"], params["num_train_shards"], 0),
        EVAL_SPLIT: (params["num_eval"], params["num_eval_shards"], 1),
    }
    labels = {}
    for split, (num, shards, split_id) in splits.items():
        items = generate_items(num, size, seed, split_id)
        labels.update({item.label: (item.synset, item.text) for item in items})
        summary = writer.write_shards(items, out_dir, split, shards)
        if summary.unreadable:  # generated images are always readable: a bug if not
            raise RuntimeError(f"embedded dataset: unreadable generated images {summary.unreadable}")
    writer.write_labels_file(out_dir, labels)
    files = {
        f: os.path.getsize(os.path.join(out_dir, f))
        for f in sorted(os.listdir(out_dir))
        if not f.startswith(".")
    }
    manifest = {
        "params": params,
        "num_classes": NUM_CLASSES,
        "label_offset": 1,
        "splits": {TRAIN_SPLIT: params["num_train"], EVAL_SPLIT: params["num_eval"]},
        "files": files,
    }
    with open(os.path.join(out_dir, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


def _check_learnable(argv: list[str] | None = None) -> float:
    """Train a tiny CNN on the set; print and return the final eval accuracy."""
    import argparse
    import time

    import keras

    from autonl_tf.data import build_eval_dataset, build_train_dataset, default_data_config

    parser = argparse.ArgumentParser(description="Learnability check of the embedded dataset.")
    parser.add_argument("--data_dir", default="", help="cache root ('' = user cache)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args(argv)
    cfg = default_data_config("embedded")
    cfg.data_dir = args.data_dir
    train = build_train_dataset(cfg, args.batch_size)
    evals = build_eval_dataset(cfg, 100)
    layers = keras.layers
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3))
    x = inputs
    for filters, stride in ((32, 1), (32, 2), (64, 1), (64, 2), (128, 1)):
        x = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.Dense(128, activation="relu")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, layers.Dense(NUM_CLASSES)(x))
    steps = cfg.embedded.num_train // args.batch_size
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps * args.epochs)),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )
    start = time.monotonic()
    history = model.fit(train, steps_per_epoch=steps, epochs=args.epochs,
                        validation_data=evals, verbose=2)
    accuracy = float(history.history["val_accuracy"][-1])
    print(
        f"tiny CNN, {args.epochs} epochs in {time.monotonic() - start:.0f} s: eval accuracy "
        f"{accuracy:.3f} (chance {1 / NUM_CLASSES:.3f}; shape alone gives at most 0.5)"
    )
    return accuracy


if __name__ == "__main__":
    _check_learnable()
