"""kill -9 drill: a training run killed at 10 random moments (many inside checkpoint saves).

Trains the tiny test network on the small embedded set with a checkpoint every 2 steps (so a
good share of the wall time is spent saving), kills it with SIGKILL at a random moment after
it starts training, reruns the same command, and repeats; the last run finishes. Every rerun
must resume from the last complete checkpoint and remove the `ckpt-<n>_temp` directories of
interrupted saves; nothing may be left at the end. Prints one line per kill.

    python benchmarks/kill_drill.py                  # 10 kills: 68 s on 2 CPU cores

The runs are started by tests.support.programs (forked from a server that imported
TensorFlow once); AUTONL_FRESH_PROCESSES=1 starts each in a fresh interpreter (100 s). Measured
2026-12-02, seed 0: 0 of the 10 kills landed inside a save with the server, 2 with fresh
interpreters; seeds 1 and 2 with the server: 2 each.
    python benchmarks/kill_drill.py --num_kills=3 --seed=1

The results go to benchmarks/results/kill_drill.json (``--output_json``), rendered into
docs/benchmarks.md by scripts/render_benchmarks.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import record  # noqa: E402
from tests.support import training as testing  # noqa: E402

flags.DEFINE_integer("num_kills", 10, "SIGKILLs before the final run.")
flags.DEFINE_integer("seed", 0, "Seed of the kill moments.")
flags.DEFINE_integer("train_steps", 600, "Steps of the whole (interrupted) run.")
flags.DEFINE_float("max_delay_s", 2.5, "Kill up to this many seconds after training starts.")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/kill_drill.json).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from autonl_tf.recipe import recipe

    root = tempfile.mkdtemp(prefix="kill_drill_")
    data_dir, model_dir = os.path.join(root, "data"), os.path.join(root, "model")
    recipe.resolve_experiment(testing.tiny_config(data_dir))  # builds the small set once
    args = ["--config=demo", f"--model_dir={model_dir}", *testing.to_flags(
        testing.tiny_overrides(data_dir, FLAGS.train_steps, train__checkpoint_every_steps=2,
                               train__log_every_steps=2, train__max_checkpoints_to_keep=3))]
    start = time.perf_counter()
    records = testing.kill_drill(args, model_dir, FLAGS.num_kills, seed=FLAGS.seed,
                                 max_delay_s=FLAGS.max_delay_s, log_dir=root)
    for r in records:
        print(f"kill {r['kill'] + 1:2d}: last complete checkpoint step {r['checkpoint_step']}, "
              f"interrupted saves left {r['temp_dirs'] or 'none'}; rerun resumed at step "
              f"{r['resumed_step']}")
    during_saves = sum(bool(r["temp_dirs"]) for r in records)
    print(f"{len(records)} kills ({during_saves} inside a checkpoint save): every rerun resumed "
          f"from the last complete checkpoint, the final run reached step {FLAGS.train_steps}, "
          f"no _temp directory left (logs in {root})")
    seconds = time.perf_counter() - start
    table = record.Table(
        title=f"{len(records)} SIGKILLs of a training run (tiny network, checkpoint every 2 "
              f"steps, {FLAGS.train_steps} steps), seed {FLAGS.seed}",
        columns=["kill", "last complete checkpoint step", "interrupted saves left",
                 "rerun resumed at step"],
        rows=[[r["kill"] + 1, r["checkpoint_step"], ", ".join(r["temp_dirs"]) or "none",
               r["resumed_step"]] for r in records],
        notes=f"Each kill lands up to {FLAGS.max_delay_s:g} s after training starts; every rerun "
              "must resume from the last complete checkpoint and remove the _temp directories "
              "of interrupted saves (tests.support.training.kill_drill).")
    summary = (f"{len(records)} kills ({during_saves} inside a checkpoint save): every rerun "
               f"resumed from the last complete checkpoint and the final run reached step "
               f"{FLAGS.train_steps}, in {seconds:.0f} s.")
    path = record.write_result(
        "kill_drill", {"settings": {"num_kills": FLAGS.num_kills, "seed": FLAGS.seed,
                                    "train_steps": FLAGS.train_steps,
                                    "max_delay_s": FLAGS.max_delay_s},
                       "seconds": seconds, "kills": records},
        tables=[table], summary=summary, path=FLAGS.output_json)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
