"""Target seeking: short searches aimed at fractions of the largest child's MACs land on them.

Runs the demo search (embedded dataset, 32 px, width 0.25, 'tiny' space) once per target
fraction through `autonl_tf.search.experiment.search_experiment` -- the program behind
search_main.py -- and prints target, achieved MACs of the decoded arch.txt and the error.
Each search's model dir (arch.txt, search_summary.json, search.png) is kept under --output_dir.

    python benchmarks/search_targets.py                       # 60% and 85%, 240 steps each
    python benchmarks/search_targets.py --fractions=0.5,0.7,0.9 --seeds=0,1 --steps=480

The results go to benchmarks/results/search_targets.json (``--output_json``), rendered into
docs/benchmarks.md by scripts/render_benchmarks.py; the rows also go to
<output_dir>/search_targets.json beside the searches' model dirs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import record  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("fractions", ["0.6", "0.85"], "Targets as fractions of the largest child.")
flags.DEFINE_list("seeds", ["0"], "Weight-initialisation seeds (one search per seed/target).")
flags.DEFINE_integer("steps", 240, "Search steps (batch 32).")
flags.DEFINE_string("output_dir", None, "Where the searches' model dirs go (default: a temp "
                    "dir).")
flags.DEFINE_float("tolerance", 0.05, "Relative error counted as on target.")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/search_targets.json).")


def main(argv):
    del argv
    import tensorflow as tf

    from autonl_tf.runner.config import config_module

    search_config = config_module("search")
    from autonl_tf.runner.config import apply_overrides
    from autonl_tf.search import SearchCost, space_from_config
    from autonl_tf.search.experiment import search_experiment

    output_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix="search_targets_")
    base = search_config.get_config("demo")
    space = space_from_config(base.search_space)
    low, high = SearchCost(space, base.data.image_size, base.data.num_classes,
                           base.model.width_multiplier).feasible_range()
    print(f"feasible range {low:,} - {high:,} MACs (tiny space, {base.data.image_size} px, "
          f"width {base.model.width_multiplier:g}); {FLAGS.steps} steps per search")
    rows = []
    for fraction in (float(f) for f in FLAGS.fractions):
        for seed in (int(s) for s in FLAGS.seeds):
            config = search_config.get_config("demo")
            target = fraction * high
            apply_overrides(config, {"search.target_flops": target,
                                     "train.train_steps": FLAGS.steps, "train.seed": seed,
                                     "train.checkpoint_every_steps": FLAGS.steps,
                                     "train.log_every_steps": FLAGS.steps})
            model_dir = os.path.join(output_dir, f"target{fraction:g}_seed{seed}")
            start = time.time()
            result = search_experiment(config, model_dir=model_dir,
                                       strategy=tf.distribute.get_strategy())
            seconds = time.time() - start
            summary = result["summary"]
            error = summary["relative_error"]
            rows.append({"fraction": fraction, "seed": seed, "target_macs": target,
                         "macs": summary["macs"], "relative_error": error,
                         "seconds": seconds, "model_dir": model_dir})
            print(f"target {fraction:.0%} of largest = {target:,.0f} MACs -> {summary['macs']:,}"
                  f" MACs ({100 * error:+.2f}%), {seconds:.0f}s, {model_dir}/search.png")
    hits = sum(abs(r["relative_error"]) <= FLAGS.tolerance for r in rows)
    print(f"within {FLAGS.tolerance:.0%} of target: {hits}/{len(rows)}")
    with open(os.path.join(output_dir, "search_targets.json"), "w") as f:
        json.dump(rows, f, indent=2)
    table = record.Table(
        title=f"Demo searches aimed at fractions of the largest child ({high:,} MACs): tiny "
              f"space, {base.data.image_size} px, width {base.model.width_multiplier:g}, "
              f"{FLAGS.steps} steps",
        columns=["target (x largest)", "seed", "target MACs", "found MACs", "error",
                 "on target", "seconds"],
        rows=[[r["fraction"], r["seed"], r["target_macs"], r["macs"], r["relative_error"],
               abs(r["relative_error"]) <= FLAGS.tolerance, r["seconds"]] for r in rows],
        formats=[".0%", "", ",.0f", ",d", "+.2%", "", ".0f"],
        notes=f"MACs of the decoded arch.txt of each search (search_main.py's program, "
              f"embedded dataset); on target: within {FLAGS.tolerance:.0%}.")
    summary = (f"{hits} of {len(rows)} searches ended within {FLAGS.tolerance:.0%} of their "
               "MACs target.")
    settings = {"fractions": [float(f) for f in FLAGS.fractions],
                "seeds": [int(s) for s in FLAGS.seeds], "steps": FLAGS.steps,
                "tolerance": FLAGS.tolerance}
    # The model dirs are temporary by default: the file keeps everything else of each row.
    path = record.write_result(
        "search_targets", {"settings": settings, "feasible_range": [int(low), int(high)],
                           "searches": [{k: v for k, v in r.items() if k != "model_dir"}
                                        for r in rows]},
        tables=[table], summary=summary, path=FLAGS.output_json)
    print(f"wrote {path}")
    return 0 if hits == len(rows) else 1

if __name__ == "__main__":
    app.run(main)
