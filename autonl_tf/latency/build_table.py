"""Builds a latency table for a search space on this machine or on an Android phone.

    # this machine, LiteRT (XNNPACK), 1 thread: the demo search space in int8
    python -m autonl_tf.latency.build_table --config=search:demo --mode=int8 \
        --output=tables/demo_int8.json
    # a phone: convert, push over adb, run benchmark_model on each model, assemble
    python -m autonl_tf.latency.build_table --config=search --mode=int8 --adb \
        --export_dir=/tmp/models --output=pixel7_int8.json
    # or by hand: export, run the documented adb commands, then assemble from their outputs
    python -m autonl_tf.latency.build_table --config=search --mode=int8 --export_dir=/tmp/models
    python -m autonl_tf.latency.build_table --export_dir=/tmp/models --benchmark_logs=/tmp/logs \
        --device="Pixel 7" --output=pixel7_int8.json

The space, image size, width multiplier and class count are those of the search config
(``--config``, with ``--config.<key>=<value>`` overrides, exactly as search_main.py reads them):
the table is valid for a search with that config (`autonl_tf.search.latency_cost`). See
docs/latency.md for what is measured and how.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile

from absl import app, flags, logging

from autonl_tf.export.modes import TFLITE_MODES
from autonl_tf.runner import config as config_lib

_CONFIG = config_lib.define_config_flag("config", default="search")
flags.DEFINE_enum("mode", "float32", list(TFLITE_MODES), "TFLite mode of every model.")
flags.DEFINE_integer("threads", 1, "Interpreter / benchmark_model threads.", lower_bound=1)
flags.DEFINE_string("output", None, "The table (JSON) to write.")
flags.DEFINE_integer("rounds", 20, "Interleaved timing rounds (LiteRT here) or benchmark_model "
                     "rounds (phone).", lower_bound=1)
flags.DEFINE_integer("runs_per_round", 50, "Timed runs of each model per round (LiteRT here).",
                     lower_bound=1)
flags.DEFINE_integer("warmup_runs", 20, "Untimed runs of each model first (LiteRT here).",
                     lower_bound=0)
flags.DEFINE_integer("reference_children", 6, "Whole child networks timed to fit the "
                     "per-network constant (the smallest, the largest, then random ones).",
                     lower_bound=1)
flags.DEFINE_float("max_reference_error", 0.1, "Fail if a reference child's prediction is off "
                   "by more than this (relative); 0 = do not check.", lower_bound=0.0)
flags.DEFINE_string("export_dir", None, "Write the .tflite models and manifest.json here (for "
                    "benchmark_model); with --benchmark_logs: where they were written.")
flags.DEFINE_string("benchmark_logs", None, "benchmark_model outputs (<model>.round<r>.txt) "
                    "to assemble the table from (with --export_dir and --device).")
flags.DEFINE_bool("adb", False, "Run benchmark_model on the phone adb reaches, then assemble.")
flags.DEFINE_string("adb_serial", None, "adb -s SERIAL (several phones connected).")
flags.DEFINE_string("benchmark_model", "/data/local/tmp/benchmark_model",
                    "The benchmark_model binary on the phone.")
flags.DEFINE_enum("statistic", "min", ["min", "median", "avg"], "benchmark_model statistic "
                  "of each round (the fastest round is kept).")
flags.DEFINE_string("device", None, "Device name written in the table (default: this "
                    "machine's CPU, or the phone's properties with --adb).")

FLAGS = flags.FLAGS


def _setting(config):
    """(space, image size, classes, width) of the search config."""
    from autonl_tf.search.space import space_from_config

    space = space_from_config(config.search_space)
    return (space, int(config.data.image_size), int(config.data.num_classes),
            float(config.model.width_multiplier))


def _plan(config):
    from autonl_tf.latency.build import plan_models
    from autonl_tf.models.spec import check_image_size

    space, size, classes, width = _setting(config)
    try:
        check_image_size(size)
    except ValueError as e:
        raise app.UsageError(f"data.image_size: {e}") from None
    return plan_models(space, size, classes, width,
                       reference_children=FLAGS.reference_children,
                       space_config=config.search_space)


def _write(table: dict) -> None:
    from autonl_tf import files
    from autonl_tf.latency.build import check_fit, describe_table

    files.write_json_atomic(FLAGS.output, table)
    print(describe_table(table))
    print(f"wrote {FLAGS.output}")
    bad = check_fit(table, FLAGS.max_reference_error) if FLAGS.max_reference_error else []
    if bad:
        from autonl_tf.errors import RunFailure

        raise RunFailure(f"the table does not predict {len(bad)} reference child(ren) within "
                         f"{FLAGS.max_reference_error:.0%} ({bad[0]}): rerun on a quieter "
                         "machine, with more --rounds")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # the converter's INFO line per model
    command = shlex.join(["python", "-m", "autonl_tf.latency.build_table", *sys.argv[1:]])
    assembling = FLAGS.benchmark_logs is not None and not FLAGS.adb
    exporting_only = FLAGS.export_dir is not None and not FLAGS.adb and not assembling
    if FLAGS.output is None and not exporting_only:
        raise app.UsageError("--output=<table.json> is required")
    if assembling:
        if FLAGS.export_dir is None or FLAGS.device is None:
            raise app.UsageError("--benchmark_logs needs --export_dir (the exported models) and "
                         "--device (the phone's name)")
        from autonl_tf.latency import benchmark_model

        _write(benchmark_model.table_from_logs(
            FLAGS.export_dir, FLAGS.benchmark_logs, device=FLAGS.device, threads=FLAGS.threads,
            statistic=FLAGS.statistic, command=command))
        return

    from autonl_tf.latency import build

    config = _CONFIG.value
    plan = _plan(config)
    print(f"{len(plan.parts)} parts, {len(set(plan.baselines.values()))} baselines, "
          f"{len(plan.children)} reference children at {plan.setting['image_size']} px, width "
          f"x{plan.setting['width_multiplier']:g}, {plan.setting['num_classes']} classes, "
          f"{FLAGS.mode}", flush=True)
    models = build.convert_models(plan, FLAGS.mode, log=lambda s: print(s, flush=True))
    if FLAGS.export_dir is None and not FLAGS.adb:
        from autonl_tf.latency.device import this_device
        from autonl_tf.latency.timing import litert_version, time_tflite_models

        timings = time_tflite_models(models, FLAGS.threads, FLAGS.rounds,
                                     FLAGS.runs_per_round, FLAGS.warmup_runs)
        version = litert_version()
        _write(build.assemble_table(
            plan, {name: (t.fastest_ms, t.spread_ms) for name, t in timings.items()},
            mode=FLAGS.mode, threads=FLAGS.threads, device=FLAGS.device or this_device(),
            runtime=f"LiteRT {version} Python interpreter (ai_edge_litert), XNNPACK",
            litert_version=version,
            statistic=f"fastest of {FLAGS.rounds} interleaved rounds x "
                      f"{FLAGS.runs_per_round} runs (autonl_tf.latency.timing)",
            command=command))
        return

    from autonl_tf.latency import benchmark_model

    export_dir = FLAGS.export_dir or tempfile.mkdtemp(prefix="autonl_latency_")
    benchmark_model.export_models(plan, models, export_dir, mode=FLAGS.mode)
    if not FLAGS.adb:
        print(f"exported {len(models)} models to {export_dir}; run them on the phone "
              "(docs/latency.md), then:\n  "
              + shlex.join(["python", "-m", "autonl_tf.latency.build_table",
                            f"--export_dir={export_dir}", "--benchmark_logs=<logs dir>",
                            f"--threads={FLAGS.threads}", "--device=<phone name>",
                            "--output=<table.json>"]))
        return
    logs = FLAGS.benchmark_logs or os.path.join(export_dir, "logs")
    device = FLAGS.device or benchmark_model.device_name(FLAGS.adb_serial)
    benchmark_model.run_over_adb(export_dir, logs, threads=FLAGS.threads, rounds=FLAGS.rounds,
                                 serial=FLAGS.adb_serial, tool=FLAGS.benchmark_model)
    _write(benchmark_model.table_from_logs(export_dir, logs, device=device,
                                           threads=FLAGS.threads, statistic=FLAGS.statistic,
                                           command=command))


def run() -> None:
    from autonl_tf.runner import cli

    cli.run(main)


if __name__ == "__main__":
    run()
