r"""Trains an AutoNL classifier (or any architecture) with the paper's recipe, on TPU/GPU/CPU.

``python -m autonl_tf.train_main`` runs it too; the repository's top-level ``train_main.py`` is
this program's entry point.

    python train_main.py --config=demo --model_dir=/tmp/autonl_demo
    python train_main.py --config=autonl_s --tpu=my-tpu --data_dir=gs://bucket/imagenet \
        --model_dir=gs://bucket/autonl_s --use_bfloat16
    python train_main.py --config=demo --arch=path/to/arch.txt --config.train.train_epochs=5 ...

Rerunning the same command resumes from the last checkpoint in --model_dir. Config keys can be
overridden with --config.<section>.<key>=<value> (see autonl_tf/recipe/defaults.py); the Cloud TPU style
flags below override the corresponding config keys when given.
"""

from absl import app, flags

from autonl_tf.runner import cli
from autonl_tf.runner import config as config_lib

_CONFIG = config_lib.define_config_flag("config", default="autonl_s")
flags.DEFINE_string("model_dir", None, "Checkpoints, config.json, TensorBoard logs.")
flags.DEFINE_enum("mode", "train", ["train", "train_and_eval"],
                  "train, or train and evaluate at every checkpoint (eval_results.json).")
# The flags that override config keys (`autonl_tf.runner.cli.CONFIG_FLAGS`).
_CONFIG_FLAGS = ("data_dir", "arch", "train_steps", "train_epochs", "train_batch_size",
                 "eval_batch_size", "iterations_per_loop", "use_bfloat16")
cli.define_config_flags(_CONFIG_FLAGS)
flags.DEFINE_string("export_dir", None, "Export the final (EMA) model there after training.")
cli.define_strategy_flags()
flags.mark_flag_as_required("model_dir")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from autonl_tf.export import export_after_run
    from autonl_tf.recipe.task import train_experiment
    from autonl_tf.runner import evaluation

    config = _CONFIG.value
    cli.apply_config_flags(config, _CONFIG_FLAGS)
    strategy = cli.strategy_from_flags()
    result = train_experiment(config, model_dir=FLAGS.model_dir,
                              strategy=strategy, mode=FLAGS.mode)
    if result["step"] == result["initial_step"]:
        print(f"nothing to train: {FLAGS.model_dir} is already at step {result['step']} "
              f"(train steps {result['config'].train.total_steps}); checkpoint "
              f"{result['checkpoint']}")
    else:
        logs = " ".join(f"{k}={v:.4f}" for k, v in result["train_logs"].items())
        print(f"trained to step {result['step']} (started at step {result['initial_step']}): "
              f"{logs}; checkpoint {result['checkpoint']}")
    if result["eval"]:
        e = result["eval"]
        print(f"eval at step {e['step']} ({'EMA' if e['ema'] else 'raw'} weights): "
              f"{evaluation.describe(e)}")
    if result["skipped_records"]:
        print(f"data.skip_corrupt: skipped {sum(result['skipped_records'].values())} damaged "
              "record(s): " + ", ".join(f"{shard} {count}" for shard, count
                                        in sorted(result["skipped_records"].items())))
    export_after_run(FLAGS.model_dir, FLAGS.export_dir,
                     use_ema=bool(result["config"].eval.use_ema), strategy=strategy)


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
