"""Shared defaults of the experiment configs: the paper's retraining recipe.

Every value of the recipe is a key here; named configs (configs/<name>.py) start from
`get_base_config` and change what differs. Keys:

model
  arch               model name (autonl_tf/models/arch/<name>.txt), architecture file or block strings
  width_multiplier   channel multiplier (MobileNet rounding to multiples of 8)
  dropout_rate       dropout before the classifier (0.2)
  drop_connect_rate  stochastic depth of the last block, linear in depth (0 = off)
  bn_momentum, bn_epsilon   BatchNorm (TF convention, 0.99 / 1e-3)
data                 the input pipeline, `autonl_tf.data.default_data_config()`; image_size and
                     num_classes live here
train
  batch_size         global batch over all replicas (4096 on a TPU v3-32 in the paper)
  train_steps        None = train_epochs * num_train_examples / batch_size
  train_epochs       350
  lr_per_256         base learning rate per 256 images (0.016); lr = lr_per_256 * batch / 256
  warmup_epochs      linear warm-up from 0 (5)
  lr_decay_rate, lr_decay_epochs, lr_staircase   x0.97 every 2.4 epochs, staircase
  min_learning_rate  floor of the decayed rate (0)
  optimizer          'rmsprop_tf1' (RMSProp with TF1 semantics, see recipe/optimizer.py)
  rmsprop_rho, rmsprop_momentum, rmsprop_epsilon   0.9 / 0.9 / 1e-3
  rmsprop_initial_mean_square   1.0 (TF1 initialises the mean square to ones)
  weight_decay       L2 on conv/dense kernels, as weight_decay * sum(w^2) / 2 (1e-5)
  label_smoothing    0.1
  use_ema, ema_decay, ema_dynamic_decay   EMA of the weights (0.9999; decay min(d, (1+t)/(10+t)))
  use_bfloat16       None = auto (True on TPU), True/False to force mixed_bfloat16
  jit_compile        'auto' (XLA on TPU/GPU, not on CPU) | 'true' | 'false'
  steps_per_loop     training steps per host call (TPU iterations_per_loop)
  checkpoint_every_steps, max_checkpoints_to_keep, log_every_steps
  checkpoint_input_pipeline   save the tf.data iterator position in checkpoints (single host)
  seed               weight-initialisation seed (None = random)
  debug_nan_at_step  test hook: the loss becomes NaN from this 1-based step on (0 = off)
eval
  batch_size         global eval batch
  every_steps        train_and_eval: evaluate every N steps (0 = at every checkpoint)
  steps              eval batches (0 = the whole eval set, exactly)
  use_ema            evaluate (and export) the EMA weights
  timeout_s          continuous eval: stop when no new checkpoint appears for this long
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def get_base_config(arch: str = "autonl_s", dataset: str = "imagenet") -> ml_collections.ConfigDict:
    """The paper's recipe for ``arch`` on ``dataset`` ('imagenet', 'embedded', 'tfds:<name>')."""
    # Imported here so that loading a config file stays cheap until a config is actually built.
    from autonl_tf.data import default_data_config

    config = ml_collections.ConfigDict()
    config.model = ml_collections.ConfigDict(dict(
        arch=arch,
        width_multiplier=1.0,
        dropout_rate=0.2,
        drop_connect_rate=0.0,
        bn_momentum=0.99,
        bn_epsilon=1e-3,
    ))
    config.data = default_data_config(dataset)
    config.train = ml_collections.ConfigDict(dict(
        batch_size=4096,
        train_steps=config_dict.placeholder(int),
        train_epochs=350.0,
        lr_per_256=0.016,
        warmup_epochs=5.0,
        lr_decay_rate=0.97,
        lr_decay_epochs=2.4,
        lr_staircase=True,
        min_learning_rate=0.0,
        optimizer="rmsprop_tf1",
        rmsprop_rho=0.9,
        rmsprop_momentum=0.9,
        rmsprop_epsilon=1e-3,
        rmsprop_initial_mean_square=1.0,
        weight_decay=1e-5,
        label_smoothing=0.1,
        use_ema=True,
        ema_decay=0.9999,
        ema_dynamic_decay=True,
        use_bfloat16=config_dict.placeholder(bool),
        jit_compile="auto",
        steps_per_loop=100,
        checkpoint_every_steps=1000,
        max_checkpoints_to_keep=5,
        log_every_steps=100,
        checkpoint_input_pipeline=True,
        seed=config_dict.placeholder(int),
        debug_nan_at_step=0,
    ))
    config.train.seed = 0
    config.eval = ml_collections.ConfigDict(dict(
        batch_size=1024,
        every_steps=0,
        steps=0,
        use_ema=True,
        timeout_s=3600.0,
    ))
    return config
