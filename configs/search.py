"""The AutoNL search (brief section 3): a supernet trained under a MACs target.

    python search_main.py --config=search --target_flops=350e6 --tpu=<name> \
        --data_dir=gs://.../imagenet --model_dir=gs://.../search --use_bfloat16
    python search_main.py --config=search:demo --model_dir=/tmp/search_demo   # 2 CPU cores, ~3 min

The search writes ``arch.txt`` into --model_dir, for ``train_main.py --arch=<model_dir>/arch.txt``.
Variants (``--config=search:<variant>``): 'imagenet' (default), 'demo' (the embedded dataset at
32 px, width 0.25, the 'tiny' space: a few minutes on 2 CPU cores).

Sections ``model``, ``data``, ``train`` and ``eval`` are those of ``configs/common.py`` (the weight
optimizer is the recipe's TF1 RMSProp with warm-up and exponential decay; ``model.arch`` is not a
setting: the search records the largest child there). ``search_space``: see
``configs/search_space.py``. ``search``:

  target_flops           MACs target (multiply-adds, the profiler's count); --target_flops
  cost_loss              'target' (|log(cost/target)|, default), 'target_squared', 'hinge'
                         (only above the target) or 'log' (Single-Path NAS: lambda * log(cost))
  cost_weight            lambda
  warmup_fraction        fraction of the steps without the cost term (weights learn first)
  target_tolerance       dead zone of the target terms, relative (0 = none)
  discrete_gradient      differentiate the cost term per indicator by the exact effect of its flip
                         (see autonl_tf.search.objective); False = plain chain rule
  temperature            width of the sigmoid whose gradient the hard indicators use
  score_gradient         also train the depthwise weights through the indicator scores (weight
                         norms), as Single-Path NAS; off by default (see
                         autonl_tf.search.layers.SuperMBConvBlock)
  threshold_optimizer    'adam' | 'sgd' | 'rmsprop' (thresholds only)
  threshold_learning_rate, threshold_beta_1   its learning rate (cosine-decayed to 0 over the
                         search) and Adam's beta_1
  space_variant          informational: the configs/search_space.py variant used
"""

import ml_collections

from configs import common, search_space

VARIANTS = ("imagenet", "demo")


def get_config(variant: str = "imagenet") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"search config variant {variant!r}: expected one of {VARIANTS}")
    demo = variant == "demo"
    config = common.get_base_config(arch="", dataset="embedded" if demo else "imagenet")
    space_variant = "tiny" if demo else "autonl"
    config.search_space = search_space.get_config(space_variant)
    train = config.train
    train.use_ema = False  # the supernet is not deployed: no weight averaging
    train.label_smoothing = 0.0
    if demo:
        config.model.width_multiplier = 0.25
        config.model.dropout_rate = 0.0
        config.data.image_size = 32
        train.batch_size = 32
        train.train_steps = 480  # 5 epochs of the 3000 generated images
        train.lr_per_256 = 0.064
        train.warmup_epochs = 0.1
        train.lr_decay_epochs = 1.0
        train.lr_decay_rate = 0.9
        train.steps_per_loop = 10
        train.log_every_steps = 40
        train.checkpoint_every_steps = 160
        config.eval.batch_size = 200
    else:
        # Single-Path NAS scale: a few epochs of ImageNet at batch 1024.
        train.batch_size = 1024
        train.train_epochs = 8.0
        train.warmup_epochs = 1.0
        train.steps_per_loop = 100
        train.checkpoint_every_steps = 1000
    config.search = ml_collections.ConfigDict(dict(
        # A target inside the feasible range of the space at the configured size and width:
        # the demo's is ~60% of its largest child.
        target_flops=560e3 if demo else 350e6,
        cost_loss="target",
        cost_weight=5.0,
        warmup_fraction=0.05,
        target_tolerance=0.0,
        discrete_gradient=True,
        temperature=1.0,
        score_gradient=False,
        threshold_optimizer="adam",
        threshold_learning_rate=0.05 if demo else 0.01,
        threshold_beta_1=0.9,
        space_variant=space_variant,
    ))
    return config
