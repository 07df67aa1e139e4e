"""The retraining recipe as an experiment task: what the training and evaluation programs run.

`ClassifierTask` plugs the classifier recipe (`autonl_tf.recipe.recipe`) into the one experiment
runner (`autonl_tf.runner.experiment.run_experiment`, the same checkpoints, resumption, NaN
guard and TensorBoard as the search) and into the evaluation of a model dir
(`autonl_tf.runner.experiment.evaluate_experiment`). `train_experiment` runs it.
"""

from __future__ import annotations

import ml_collections
import tensorflow as tf

from autonl_tf.models import ModelSpec, resolve_model_spec
from autonl_tf.recipe import recipe
from autonl_tf.runner import checkpoints, evaluation, experiment

__all__ = ["ClassifierTask", "train_experiment"]


class ClassifierTask(experiment.ExperimentTask):
    """The retraining recipe: a classifier from ``model.arch``.

    Args:
      mode: 'train', or 'train_and_eval' to also evaluate on the eval split (every
        ``eval.every_steps`` and at the end) into eval_results.json.
      expected: evaluating a model dir: the network it must hold (``--arch`` of the evaluation
        program), else `CheckpointMismatchError`; None accepts the one it holds.

    ``resolve`` decodes ``model.arch`` once; the decoded `ModelSpec` (``self.spec``) is what
    ``build`` builds.
    """

    def __init__(self, mode: str = "train", expected: ModelSpec | None = None):
        if mode not in ("train", "train_and_eval"):
            raise ValueError(f"mode must be 'train' or 'train_and_eval', got {mode!r}")
        self.evaluates = mode == "train_and_eval"
        self.expected = expected
        self.spec: ModelSpec | None = None

    def resolve(self, config):
        self.spec = resolve_model_spec(config.model.arch)
        return recipe.resolve_experiment(config, spec=self.spec)

    def describe(self, resolved):
        return f"Training {resolved.model.name}, lr {resolved.train.learning_rate:.4g}"

    def build(self, resolved, dtype_policy, jit_compile):
        model = recipe.build_classifier(resolved, dtype_policy, spec=self.spec)
        return recipe.compile_classifier(model, resolved, jit_compile=jit_compile)

    def plugins(self, model, resolved, context):
        callbacks = ([evaluation.EvalResultsWriter(context.model_dir, context.chief)]
                     if self.evaluates else [])
        return experiment.TaskPlugins(callbacks=callbacks,
                                      eval_use_ema=bool(resolved.eval.use_ema))

    def check_saved(self, saved, model_dir):
        checkpoints.require_classifier(saved, model_dir)
        if self.expected is not None:
            requested = ml_collections.ConfigDict(saved.to_dict())
            requested.model.arch = self.expected.arch_string
            requested.model.name = self.expected.name
            checkpoints.check_same_model(saved, requested, model_dir)

    def restorer(self, saved):
        # ``expected`` passed `check_saved`: it is the network the model dir holds, decoded.
        return recipe.ClassifierRestorer(saved, spec=self.expected)


def train_experiment(config: ml_collections.ConfigDict, *, model_dir: str,
                     strategy: tf.distribute.Strategy, mode: str = "train") -> dict:
    """Trains (and with ``mode='train_and_eval'`` evaluates) the config's model in model_dir.

    Reruns of the same command resume from the latest checkpoint. Returns the driver's result
    dict plus 'config' (the resolved config) and 'model' (the trained Keras model, raw weights).
    """
    return experiment.run_experiment(ClassifierTask(mode), config, model_dir=model_dir,
                                     strategy=strategy)
