"""Input pipeline throughput next to the AutoNL-S training step, measured in the same run.

Writes ImageNet-like JPEGs (default 400x350, as ImageNet's typical size) through the TFRecord
builder into a temporary directory, then measures images/s of the train pipeline (no
augmentation, AutoAugment, RandAugment) and of the eval pipeline at 224 px, and the training
throughput of AutoNL-S (forward + backward + RMSProp update, batch `--batch_size`). The ratio
pipeline / step says whether the pipeline can feed the model on this machine (> 1: it can,
with that margin, if it had the cores to itself; both compete for the same cores here).

    python benchmarks/input_pipeline.py                 # ~2-3 min on 2 CPU cores
    python benchmarks/input_pipeline.py --num_images=1024 --pipeline_batches=40 --train_steps=10

The results go to benchmarks/results/input_pipeline.json (``--output_json``), rendered into
docs/benchmarks.md by scripts/render_benchmarks.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import io  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

from autonl_tf import data  # noqa: E402
from autonl_tf.data import writer  # noqa: E402
from benchmarks import record  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 256, "JPEG images written to the temporary TFRecords.")
flags.DEFINE_integer("image_height", 350, "Height of the generated JPEGs.")
flags.DEFINE_integer("image_width", 400, "Width of the generated JPEGs.")
flags.DEFINE_integer("image_size", 224, "Model input size.")
flags.DEFINE_integer("batch_size", 32, "Batch size of the pipelines and of the training step.")
flags.DEFINE_integer("pipeline_batches", 12, "Timed batches per train pipeline variant.")
flags.DEFINE_integer("train_steps", 5, "Timed training steps.")
flags.DEFINE_string("model", "autonl_s", "Model name for build_named_model.")
flags.DEFINE_string("dtype", "float32", "Pipeline output dtype (float32 | bfloat16).")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/input_pipeline.json).")


def realistic_jpeg(rng: np.random.Generator, height: int, width: int) -> bytes:
    """Photo-like content (colour fields, edges, texture noise): ~90 KB, near ImageNet's mean."""
    coarse = rng.uniform(0, 255, (30, 36, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    for _ in range(6):
        y, x = rng.integers(0, height - 20), rng.integers(0, width - 20)
        h, w = rng.integers(10, height // 2), rng.integers(10, width // 2)
        image[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 16, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=93)
    return buffer.getvalue()


def write_records(out_dir: str) -> float:
    """train/validation shards of FLAGS.num_images JPEGs; returns the mean JPEG size (KB)."""
    rng = np.random.default_rng(0)
    items = [
        writer.ImageItem(realistic_jpeg(rng, FLAGS.image_height, FLAGS.image_width),
                         1 + i % 1000, f"n{i % 1000:08d}", "class", f"{i}.JPEG")
        for i in range(FLAGS.num_images)
    ]
    for split in ("train", "validation"):
        writer.write_shards(items, out_dir, split, 4)
    return float(np.mean([len(item.source) for item in items])) / 1024


def images_per_second(dataset: tf.data.Dataset, batches: int, warmup: int = 2) -> float:
    iterator = iter(dataset)
    for _ in range(warmup):  # graph building, autotuning, first reads
        next(iterator)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        images = next(iterator)[0]
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def pipeline_throughputs(data_dir: str) -> dict[str, float]:
    cfg = data.default_data_config()
    cfg.update(data_dir=data_dir, image_size=FLAGS.image_size, dtype=FLAGS.dtype,
               shuffle_buffer=256)
    results = {}
    for augment in ("none", "autoaugment", "randaugment"):
        cfg.augment = augment
        ds = data.build_train_dataset(cfg, FLAGS.batch_size)
        results[f"train pipeline, augment={augment}"] = images_per_second(
            ds, FLAGS.pipeline_batches)
    eval_batches = FLAGS.num_images // FLAGS.batch_size
    eval_ds = data.build_eval_dataset(cfg, FLAGS.batch_size).repeat()
    results["eval pipeline"] = images_per_second(eval_ds, max(eval_batches, FLAGS.pipeline_batches))
    return results


def training_step_throughput() -> float:
    """Images/s of model.train_on_batch on a fixed batch (no input pipeline involved)."""
    import keras

    from autonl_tf.models import build_named_model

    model = build_named_model(FLAGS.model, num_classes=1000, image_size=FLAGS.image_size)
    model.compile(
        optimizer=keras.optimizers.RMSprop(0.016, rho=0.9, momentum=0.9, epsilon=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    size = FLAGS.image_size
    images = rng.normal(size=(FLAGS.batch_size, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, 1000, FLAGS.batch_size).astype(np.int32)
    for _ in range(2):  # tracing + first step
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(FLAGS.train_steps):
        model.train_on_batch(images, labels)
    return FLAGS.train_steps * FLAGS.batch_size / (time.perf_counter() - start)


def main(argv):
    del argv
    logging.getLogger("autonl_tf.data.writer").setLevel(logging.WARNING)  # no per-shard lines
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        kilobytes = write_records(tmp)
        print(f"wrote {FLAGS.num_images} JPEGs {FLAGS.image_width}x{FLAGS.image_height} "
              f"(mean {kilobytes:.0f} KB) to TFRecords in {time.perf_counter() - start:.1f} s")
        pipelines = pipeline_throughputs(tmp)
    step = training_step_throughput()
    cores = os.cpu_count()
    print(f"\n{FLAGS.image_size} px, batch {FLAGS.batch_size}, {cores} CPU cores, "
          f"pipeline dtype {FLAGS.dtype}")
    print(f"{'':36s} {'images/s':>10s} {'pipeline/step':>14s}")
    print(f"{FLAGS.model + ' training step':36s} {step:10.1f} {'':>14s}")
    for name, rate in pipelines.items():
        print(f"{name:36s} {rate:10.1f} {rate / step:13.2f}x")
    table = record.Table(
        title=f"Input pipeline vs {FLAGS.model} training step, {FLAGS.image_size} px, batch "
              f"{FLAGS.batch_size}, pipeline dtype {FLAGS.dtype}",
        columns=["stage", "images/s", "pipeline / step"],
        rows=[[f"{FLAGS.model} training step", step, None]]
        + [[name, rate, rate / step] for name, rate in pipelines.items()],
        formats=["", ".1f", ".2f"],
        notes=f"{FLAGS.num_images} synthetic {FLAGS.image_width}x{FLAGS.image_height} JPEGs "
              f"(mean {kilobytes:.0f} KB) in TFRecords; {FLAGS.pipeline_batches} timed batches "
              f"per train pipeline, {FLAGS.train_steps} timed training steps (train_on_batch on "
              "a fixed batch). Above 1, the pipeline can feed the step with that margin if it "
              "had the cores to itself; both share the same cores here.")
    slowest = min(pipelines, key=pipelines.get)
    summary = (f"The slowest train pipeline ({slowest}) delivers {pipelines[slowest] / step:.2f}x "
               f"the images/s the {FLAGS.model} training step consumes on {cores} CPU cores.")
    settings = {name: getattr(FLAGS, name) for name in (
        "num_images", "image_height", "image_width", "image_size", "batch_size",
        "pipeline_batches", "train_steps", "model", "dtype")}
    path = record.write_result(
        "input_pipeline", {"settings": settings, "mean_jpeg_kb": kilobytes,
                           "training_step_images_per_second": step,
                           "pipeline_images_per_second": pipelines},
        tables=[table], summary=summary, path=FLAGS.output_json)
    print(f"wrote {path}")

if __name__ == "__main__":
    app.run(main)
