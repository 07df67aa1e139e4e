r"""Evaluates a model dir written by train_main.py: exact top-1/top-5 over the whole eval split.

``python -m autonl_tf.eval_main`` runs it too; the repository's top-level ``eval_main.py`` is
this program's entry point.

    python eval_main.py --model_dir=/tmp/autonl_demo                 # latest checkpoint, EMA
    python eval_main.py --model_dir=gs://bucket/autonl_s --tpu=my-tpu --continuous \
        --eval_timeout=3600                                          # every new checkpoint
    python eval_main.py --model_dir=... --use_ema=false              # raw weights

Results are appended to <model_dir>/eval_results.json (one record per checkpoint: step, top1,
top5, loss, num_images, ema) and written as TensorBoard scalars under <model_dir>/eval.
"""

from absl import app, flags

from autonl_tf.runner import cli

flags.DEFINE_string("model_dir", None, "Directory written by train_main.py.")
flags.DEFINE_string("data_dir", None, "Overrides the data_dir stored in the run's config.json.")
flags.DEFINE_integer("eval_batch_size", None, "Global eval batch (default: the run's config).",
                     lower_bound=1)
flags.DEFINE_bool("continuous", False, "Evaluate every new checkpoint until the final training "
                  "step, or until --eval_timeout seconds pass without a new one.")
flags.DEFINE_float("eval_timeout", None, "Continuous mode: seconds to wait for a new checkpoint "
                   "(default: the run's config.eval.timeout_s).")
flags.DEFINE_bool("use_ema", True, "Evaluate the EMA of the weights (false: raw weights).")
flags.DEFINE_string("checkpoint_path", None, "Evaluate this checkpoint (default: the latest).")
flags.DEFINE_string("arch", None, "Optional: the architecture the model dir must hold.")
flags.DEFINE_integer("eval_steps", None, "Evaluate only this many batches (default: all).",
                     lower_bound=1)
flags.DEFINE_string("export_dir", None, "Export the latest checkpoint there afterwards, with "
                    "the weights evaluated (EMA, or raw with --use_ema=false); the export "
                    "card's 'weights' entry records which.")
cli.define_strategy_flags()
flags.mark_flag_as_required("model_dir")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from autonl_tf.export import export_after_run
    from autonl_tf.models import resolve_model_spec
    from autonl_tf.recipe.task import ClassifierTask
    from autonl_tf.runner import experiment

    strategy = cli.strategy_from_flags()
    expected = resolve_model_spec(FLAGS.arch) if FLAGS.arch is not None else None
    records = experiment.evaluate_experiment(
        FLAGS.model_dir, task=ClassifierTask(expected=expected), strategy=strategy,
        data_overrides={"data_dir": FLAGS.data_dir} if FLAGS.data_dir else None,
        eval_batch_size=FLAGS.eval_batch_size, use_ema=FLAGS.use_ema,
        continuous=FLAGS.continuous, timeout_s=FLAGS.eval_timeout,
        checkpoint_path=FLAGS.checkpoint_path,
        eval_steps=FLAGS.eval_steps)
    for r in records:
        loss = "n/a" if r["loss"] is None else f"{r['loss']:.4f}"
        nonfinite = (f", {r['num_nonfinite']} with NaN/Inf logits counted as misses"
                     if r.get("num_nonfinite") else "")
        print(f"step {r['step']}: top1 {r['top1']:.4f} top5 {r['top5']:.4f} loss {loss} "
              f"({r['num_images']} images, {'EMA' if r['ema'] else 'raw'} weights{nonfinite})")
    if not records:
        print("no new checkpoint evaluated")
    export_after_run(FLAGS.model_dir, FLAGS.export_dir, use_ema=FLAGS.use_ema, strategy=strategy)


def run() -> None:
    cli.run(main)


if __name__ == "__main__":
    run()
