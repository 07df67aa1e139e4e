"""Time to the first training step: the driver's loop against the step written twice in it.

The training driver runs ``n`` steps in one ``tf.function`` (a ``tf.range`` loop). Written the
usual way, a first call of the step before the loop gives the loop's result its structure, and
the graph optimised and instantiated on the first call holds the whole step twice. The driver's
loop holds it once (`autonl_tf.runner.driver._make_train_loop`). This script builds the same
supernet twice per round (same seed), runs the first 2-step chunk through each loop, times it
(tracing + graph optimisation + the two steps), alternating which goes first, and prints the
median ratio.

    python benchmarks/first_step.py                    # tiny space, 32 px, width 0.25 (~2 min)
    python benchmarks/first_step.py --space=autonl --image_size=64 --width_multiplier=0.5

The results go to benchmarks/results/first_step.json (``--output_json``), rendered into
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
flags.DEFINE_enum("space", "tiny", ["autonl", "single_path", "tiny"],
                  "autonl_tf/search/spaces.py variant.")
flags.DEFINE_integer("image_size", 32, "Input resolution (multiple of 32).")
flags.DEFINE_float("width_multiplier", 0.25, "Channel multiplier.")
flags.DEFINE_integer("batch_size", 8, "Images per step.")
flags.DEFINE_integer("rounds", 3, "Rounds; each builds and times one supernet per loop.")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/first_step.json).")


def _supernet(space, seed: int = 0):
    import keras

    from autonl_tf.search import SearchCost, SearchObjective, Supernet

    keras.utils.set_random_seed(seed)
    low, high = SearchCost(space, FLAGS.image_size, 10, FLAGS.width_multiplier).feasible_range()
    supernet = Supernet(space, num_classes=10, image_size=FLAGS.image_size,
                        width_multiplier=FLAGS.width_multiplier,
                        objective=SearchObjective(target_macs=(low + high) / 2, warmup_steps=0))
    supernet.compile(keras.optimizers.SGD(0.01), keras.optimizers.Adam(0.01))
    return supernet


def _step_written_twice(model, strategy):
    """The reference: a first call before the loop, then the loop (the driver until 2026-12-02)."""
    import tensorflow as tf

    from autonl_tf.runner import driver

    reduce = driver._replica_reducer(strategy)

    @tf.function(reduce_retracing=True)
    def one_step(batch):
        return tf.nest.map_structure(reduce, strategy.run(model.train_step, args=(batch,)))

    @tf.function
    def train_loop(iterator, num_steps):
        logs = one_step(next(iterator))
        for _ in tf.range(num_steps - 1):
            logs = one_step(next(iterator))
        return logs

    return train_loop


def _first_chunk_seconds(space, loop_fn) -> float:
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    model = _supernet(space)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3))
    labels = rng.integers(0, 10, FLAGS.batch_size)
    dataset = tf.data.Dataset.from_tensors((images.astype(np.float32), labels)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    loop = loop_fn(model, strategy)
    start = time.perf_counter()
    logs = loop(iterator, tf.constant(2, tf.int32))
    float(logs["loss"])
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from autonl_tf.runner import driver
    from autonl_tf.search import space_from_config
    from autonl_tf.search import spaces as search_spaces

    space = space_from_config(search_spaces.get_config(FLAGS.space))
    loops = {"driver (step once)": driver._make_train_loop,
             "step written twice": _step_written_twice}
    times = {name: [] for name in loops}
    for round_index in range(FLAGS.rounds):
        order = list(loops) if round_index % 2 == 0 else list(loops)[::-1]
        for name in order:
            times[name].append(_first_chunk_seconds(space, loops[name]))
            print(f"round {round_index}: {name}: {times[name][-1]:.1f} s", flush=True)
    once, twice = (statistics.median(times[name]) for name in loops)
    print(f"\n{FLAGS.space} space, {FLAGS.image_size} px, width {FLAGS.width_multiplier}, batch "
          f"{FLAGS.batch_size}: first 2-step chunk (trace + graph optimisation + run), median "
          f"of {FLAGS.rounds}: driver {once:.1f} s, step written twice {twice:.1f} s, ratio "
          f"{once / twice:.2f}x (load average {os.getloadavg()[0]:.1f})")
    medians = dict(zip(loops, (once, twice), strict=True))
    table = record.Table(
        title=f"First 2-step chunk of a search: {FLAGS.space} space, {FLAGS.image_size} px, "
              f"width {FLAGS.width_multiplier:g}, batch {FLAGS.batch_size}",
        columns=["training loop", "seconds (median)", "x step written twice", "every round (s)"],
        rows=[[name, medians[name], medians[name] / twice,
               ", ".join(f"{t:.1f}" for t in times[name])] for name in loops],
        formats=["", ".1f", ".2f", ""],
        notes=f"Tracing + graph optimisation + the two steps of a freshly built supernet (same "
              f"seed), median of {FLAGS.rounds} rounds alternating which loop goes first.")
    summary = (f"The driver's loop reaches the end of the first 2-step chunk in {once / twice:.2f}x "
               "the time of the loop that writes the step twice.")
    path = record.write_result(
        "first_step", {"settings": {name: getattr(FLAGS, name) for name in (
            "space", "image_size", "width_multiplier", "batch_size", "rounds")},
            "seconds": times, "ratio": once / twice},
        tables=[table], summary=summary, path=FLAGS.output_json)
    print(f"wrote {path}")

if __name__ == "__main__":
    app.run(main)
