"""Batch-1 CPU inference latency of AutoNL-S/L next to keras.applications baselines.

Every model is measured in the same run, as a TensorFlow graph (tf.function, no XLA) on batch-1
images, and reported as a ratio to MobileNetV2 (machines are noisy; ratios travel). Latency per
MAC relative to MobileNetV2 shows how well each network's MACs turn into speed on this machine.

    python benchmarks/latency.py               # 224 px, 1000 classes
    python benchmarks/latency.py --image_size=160 --runs=30

The results go to benchmarks/results/latency.json (``--output_json``), rendered into
docs/benchmarks.md by scripts/render_benchmarks.py.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import autonl_tf  # noqa: F401, E402  (quiet TensorFlow logs)
from autonl_tf.models import build_model, resolve_model_spec  # noqa: E402
from benchmarks import record  # noqa: E402
from tests.support.graph_profile import graph_profiler_macs  # noqa: E402

REFERENCE = "mobilenet_v2"

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 224, "Input resolution.")
flags.DEFINE_integer("runs", 50, "Timed runs per model (the median is reported).")
flags.DEFINE_integer("warmup", 5, "Untimed runs per model.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds over all models (reduces drift).")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/latency.json).")


def candidates(size: int) -> dict[str, tuple[keras.Model, int]]:
    """name -> (model, MACs). Our MACs are analytic; the baselines' come from TF's profiler."""
    models = {}
    for name in ("autonl_s", "autonl_l"):
        spec = resolve_model_spec(name)
        models[name] = (build_model(spec, image_size=size), spec.cost(size).macs)
    shape = (size, size, 3)
    for name, ctor in (("mobilenet_v2", keras.applications.MobileNetV2),
                       ("efficientnet_b0", keras.applications.EfficientNetB0)):
        model = ctor(weights=None, input_shape=shape)
        models[name] = (model, sum(graph_profiler_macs(model, size).values()))
    return models


def main(argv):
    del argv
    size = FLAGS.image_size
    models = candidates(size)
    image = tf.constant(np.random.default_rng(0).normal(size=(1, size, size, 3)).astype(np.float32))
    functions = {}
    for name, (model, _) in models.items():
        functions[name] = tf.function(lambda x, m=model: m(x, training=False))
        for _ in range(FLAGS.warmup):
            functions[name](image).numpy()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(FLAGS.rounds):
        for name, fn in functions.items():
            for _ in range(FLAGS.runs // FLAGS.rounds):
                start = time.perf_counter()
                fn(image).numpy()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    ref_time, ref_macs = median[REFERENCE], models[REFERENCE][1]
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "all"
    print(f"batch-1 CPU latency, {size}px, {threads}"
          f" threads, median of {FLAGS.runs} runs")
    print(f"{'model':<16} {'MMACs':>8} {'ms':>8} {'x MobileNetV2':>14} {'ms/MAC vs MBv2':>15}")
    rows, figures = [], {}
    for name, (_, macs) in models.items():
        ratio = median[name] / ref_time
        per_mac = (median[name] / macs) / (ref_time / ref_macs)
        print(f"{name:<16} {macs / 1e6:8.1f} {median[name] * 1e3:8.2f} {ratio:14.2f} {per_mac:15.2f}")
        rows.append([name, macs / 1e6, median[name] * 1e3, ratio, per_mac])
        figures[name] = {"macs": int(macs), "median_ms": median[name] * 1e3,
                         "ratio_to_reference": ratio, "per_mac_ratio_to_reference": per_mac,
                         "times_ms": [t * 1e3 for t in times[name]]}
    timed = len(times[REFERENCE])
    summary = (f"AutoNL-S takes {median['autonl_s'] / ref_time:.2f}x and AutoNL-L "
               f"{median['autonl_l'] / ref_time:.2f}x the batch-1 latency of MobileNetV2 at "
               f"{size} px (TensorFlow graph, no XLA); EfficientNet-B0 "
               f"{median['efficientnet_b0'] / ref_time:.2f}x.")
    table = record.Table(
        title=f"Batch-1 latency, {size} px, TensorFlow graph (tf.function, no XLA), "
              f"{threads} intra-op threads",
        columns=["model", "MMACs", "ms (median)", "x MobileNetV2", "ms/MAC vs MobileNetV2"],
        rows=rows, formats=["", ".1f", ".2f", ".2f", ".2f"],
        notes=f"Median of {timed} timed runs per model in {FLAGS.rounds} interleaved rounds "
              f"after {FLAGS.warmup} untimed warm-up run(s); random weights. AutoNL MACs are "
              "analytic "
              "(autonl_tf.cost), the keras.applications baselines' come from TensorFlow's "
              "profiler.")
    path = record.write_result(
        "latency", {"settings": {"image_size": size, "runs": FLAGS.runs, "warmup": FLAGS.warmup,
                                 "rounds": FLAGS.rounds, "intra_op_threads": threads,
                                 "reference": REFERENCE},
                    "models": figures},
        tables=[table], summary=summary, path=FLAGS.output_json)
    print(f"wrote {path}")

if __name__ == "__main__":
    app.run(main)
