"""Single-path promise: a supernet training step costs about one step of the largest child.

Times the supernet's ``train_step`` (cross-entropy + cost term, weights and thresholds updated)
and a plain training step of the largest child of the same space (cross-entropy, weights
updated), same batch, same process, alternating rounds, and prints the ratio.

    python benchmarks/search_cost.py                              # autonl space, 64 px, width 0.5
    python benchmarks/search_cost.py --space=tiny --image_size=32 --width_multiplier=0.25
    python benchmarks/search_cost.py --jit_compile                # XLA (TPU/GPU stand-in)

The results go to benchmarks/results/search_cost.json (``--output_json``), rendered into
docs/benchmarks.md by scripts/render_benchmarks.py.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import record  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("space", "autonl", ["autonl", "single_path", "tiny"],
                  "autonl_tf/search/spaces.py variant.")
flags.DEFINE_integer("image_size", 64, "Input resolution (multiple of 32).")
flags.DEFINE_float("width_multiplier", 0.5, "Channel multiplier.")
flags.DEFINE_integer("num_classes", 10, "Classifier outputs.")
flags.DEFINE_integer("batch_size", 32, "Images per step.")
flags.DEFINE_integer("steps", 10, "Timed steps per round.")
flags.DEFINE_integer("rounds", 3, "Alternating timing rounds (median reported).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile both training steps.")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/search_cost.json).")


def _time_steps(model, images, labels, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(images, labels, return_dict=True)
    float(logs["loss"])  # wait for the last step
    return (time.perf_counter() - start) / steps


def main(argv):
    del argv
    import keras
    import numpy as np

    from autonl_tf.models import build_model
    from autonl_tf.search import SearchCost, SearchObjective, Supernet, space_from_config
    from autonl_tf.search import spaces as search_space_config

    space = space_from_config(search_space_config.get_config(FLAGS.space))
    size, width, classes = FLAGS.image_size, FLAGS.width_multiplier, FLAGS.num_classes
    keras.utils.set_random_seed(0)
    low, high = SearchCost(space, size, classes, width).feasible_range()
    supernet = Supernet(space, num_classes=classes, image_size=size, width_multiplier=width,
                        objective=SearchObjective(target_macs=(low + high) / 2, cost_weight=5.0))
    supernet.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.optimizers.Adam(0.01),
                     jit_compile=FLAGS.jit_compile)
    child = build_model(space.child_spec(space.largest()), num_classes=classes, image_size=size,
                        width_multiplier=width)
    child.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=FLAGS.jit_compile)

    rng = np.random.default_rng(0)
    images = rng.normal(size=(FLAGS.batch_size, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, classes, FLAGS.batch_size)
    start = time.perf_counter()
    _time_steps(supernet, images, labels, 2)  # tracing / compilation, not timed
    supernet_compile = time.perf_counter() - start
    start = time.perf_counter()
    _time_steps(child, images, labels, 2)
    child_compile = time.perf_counter() - start

    supernet_times, child_times = [], []
    for _ in range(FLAGS.rounds):
        supernet_times.append(_time_steps(supernet, images, labels, FLAGS.steps))
        child_times.append(_time_steps(child, images, labels, FLAGS.steps))
    supernet_step = statistics.median(supernet_times)
    child_step = statistics.median(child_times)
    print(f"space {FLAGS.space} ({space.num_decisions} decisions, {len(space.blocks)} blocks), "
          f"{size} px, width {width:g}, batch {FLAGS.batch_size}, XLA "
          f"{'on' if FLAGS.jit_compile else 'off'}")
    print(f"largest child: {high / 1e6:.3f}M MACs; first steps (tracing) supernet "
          f"{supernet_compile:.1f}s, child {child_compile:.1f}s (ratio "
          f"{supernet_compile / child_compile:.2f})")
    print(f"supernet train step     {1e3 * supernet_step:8.1f} ms")
    print(f"largest child train step {1e3 * child_step:8.1f} ms")
    print(f"search_cost_ratio {supernet_step / child_step:.2f}  (supernet step / largest-child "
          "step; the search costs about this many training runs of the same length)")
    setting = (f"space {FLAGS.space} ({space.num_decisions} decisions, {len(space.blocks)} "
               f"blocks), {size} px, width {width:g}, batch {FLAGS.batch_size}, XLA "
               f"{'on' if FLAGS.jit_compile else 'off'}")
    table = record.Table(
        title=f"Supernet training step vs the largest child's: {setting}",
        columns=["training step", "ms/step (median)", "x largest child", "first 2 steps (s)"],
        rows=[["supernet (cross-entropy + cost term, weights and thresholds)",
               1e3 * supernet_step, supernet_step / child_step, supernet_compile],
              [f"largest child ({high / 1e6:.3f}M MACs; cross-entropy, weights)",
               1e3 * child_step, 1.0, child_compile]],
        formats=["", ".1f", ".2f", ".1f"],
        notes=f"Median over {FLAGS.rounds} alternating rounds of {FLAGS.steps} steps each, same "
              "batch, same process; the first 2 steps (tracing, compilation) are timed apart.")
    summary = (f"A supernet step costs {supernet_step / child_step:.2f}x a step of the largest "
               "child: the search costs about that many training runs of the same length.")
    path = record.write_result(
        "search_cost", {"settings": {name: getattr(FLAGS, name) for name in (
            "space", "image_size", "width_multiplier", "num_classes", "batch_size", "steps",
            "rounds", "jit_compile")},
            "largest_child_macs": int(high), "supernet_step_s": supernet_times,
            "child_step_s": child_times, "supernet_first_steps_s": supernet_compile,
            "child_first_steps_s": child_compile, "search_cost_ratio": supernet_step / child_step},
        tables=[table], summary=summary, path=FLAGS.output_json)
    print(f"wrote {path}")

if __name__ == "__main__":
    app.run(main)
