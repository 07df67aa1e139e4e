"""Searches an AutoNL architecture under a MACs target (docs/search.md), on TPU/GPU/CPU.

``python -m autonl_tf.search_main`` runs it too; the repository's top-level ``search_main.py`` is
this program's entry point.

    python search_main.py --config=search:demo --model_dir=/tmp/search_demo
    python search_main.py --config=search --target_flops=350e6 --tpu=my-tpu \
        --data_dir=gs://bucket/imagenet --model_dir=gs://bucket/search --use_bfloat16
    python train_main.py --config=autonl_s --arch=/tmp/search_demo/arch.txt ...

Rerunning the same command resumes from the last checkpoint in --model_dir. At every checkpoint
and at the end, --model_dir receives arch.txt (the searched network, for train_main.py --arch),
search_summary.json, search_history.json and search.png; TensorBoard curves are in train/.
Config keys can be overridden with --config.<section>.<key>=<value> (see configs/search.py).
"""

from absl import app, flags

from autonl_tf.runner import cli
from autonl_tf.runner import config as config_lib

_CONFIG = config_lib.define_config_flag("config", default="search")
flags.DEFINE_string("model_dir", None, "Checkpoints, arch.txt, search_summary.json, search.png, "
                    "TensorBoard logs.")
# The flags that override config keys (`autonl_tf.runner.cli.CONFIG_FLAGS`).
_CONFIG_FLAGS = ("target_flops", "target_latency_ms", "latency_table", "data_dir", "train_steps",
                 "train_epochs", "train_batch_size", "iterations_per_loop", "use_bfloat16")
cli.define_config_flags(_CONFIG_FLAGS)
cli.define_strategy_flags()
flags.mark_flag_as_required("model_dir")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from autonl_tf.search import experiment

    config = _CONFIG.value
    cli.apply_config_flags(config, _CONFIG_FLAGS)
    strategy = cli.strategy_from_flags()
    result = experiment.search_experiment(config, model_dir=FLAGS.model_dir, strategy=strategy)
    summary = result["summary"]
    from autonl_tf.runner.strategy import is_chief

    if summary.get("latency") and is_chief(strategy):
        from autonl_tf.latency.measure import measure_search_child

        summary = measure_search_child(FLAGS.model_dir, result["config"])
    target = summary["target_macs"]
    versus = (f" (target {target / 1e6:.4g}M, {100 * summary['relative_error']:+.2f}%)"
              if target else "")
    print(f"searched to step {result['step']} (started at step {result['initial_step']}): "
          f"{summary['macs'] / 1e6:.4g}M MACs{versus}, {summary['params'] / 1e6:.4g}M params; "
          f"architecture {result['arch_file']}")
    heldout, after_warmup = (summary.get("supernet_heldout_top1"),
                             summary.get("supernet_heldout_top1_after_warmup"))
    if heldout is not None:
        print(f"supernet held-out top-1 (current child, {summary['heldout_images']} eval images): "
              + (f"{100 * after_warmup:.1f}% at the end of the warm-up (step "
                 f"{summary['warmup_steps']}), " if after_warmup is not None else "")
              + f"{100 * heldout:.1f}% at step {summary['heldout'][-1]['step']} "
              f"(chance {100 / summary['num_classes']:.1f}%)")
    latency = summary.get("latency")
    if latency:
        measured = (f"{latency['measured_ms']:.4g} ms measured "
                    f"({100 * latency['measured_relative_error']:+.1f}%)"
                    if latency["measured_ms"] is not None else latency["measured"])
        print(f"latency ({latency['mode']}, {latency['threads']} thread(s), {latency['device']}):"
              f" {latency['predicted_ms']:.4g} ms predicted by the table "
              f"({100 * latency['relative_error']:+.1f}% of the target "
              f"{latency['target_ms']:.4g} ms), {measured}")
    print("".join(line + "\n" for line in summary["arch"]), end="")


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
