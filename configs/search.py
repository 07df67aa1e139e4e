"""The AutoNL search (docs/search.md): a supernet trained under a MACs target.

    python search_main.py --config=search --target_flops=350e6 --tpu=<name> \
        --data_dir=gs://.../imagenet --model_dir=gs://.../search --use_bfloat16
    python search_main.py --config=search:demo --model_dir=/tmp/search_demo   # 2 CPU cores

The search writes ``arch.txt`` into --model_dir, for ``train_main.py --arch=<model_dir>/arch.txt``.
Variants (``--config=search:<variant>``): 'imagenet' (default: the 'autonl' space, which contains
AutoNL-S and AutoNL-L; 8 epochs at batch 1024, the first 5 a weights-only warm-up, as Single-Path
NAS), 'demo' (the embedded dataset at 32 px, the 'demo' space: about two minutes on 2 CPU cores;
the supernet's held-out top-1 is printed at the end of the warm-up and of the search: 44-85% and
78-95% in the runs of docs/search.md, against 10% for chance).

Sections ``model``, ``data``, ``train`` and ``eval`` are those of ``autonl_tf/recipe/defaults.py`` less the
keys the search does not use (``model.arch``, ``model.drop_connect_rate``, the EMA keys,
``train.debug_nan_at_step``, ``eval.use_ema``, ``eval.timeout_s``): setting one of those is an
error. ``eval`` sets the held-out evaluation of the supernet (its current child, on the eval
split, never trained on): ``batch_size``, ``steps`` (batches per evaluation, 0 = the whole split)
and ``every_steps`` (0 = at every checkpoint; the end of the warm-up is always evaluated).
``search_space``: see ``autonl_tf/search/spaces.py``. ``search``:

  target_flops           MACs target (multiply-adds, the profiler's count); --target_flops
  target_latency_ms      a latency target in ms instead (0 = none): the cost is the latency
                         table's prediction (docs/latency.md); --target_latency_ms
  latency_table          the table (python -m autonl_tf.latency.build_table); --latency_table
  latency_mode           the TFLite mode the table must be for ('' = the table's own)
  cost_loss              'lagrangian' (default: the target as a constraint, m*c + c^2/2 of
                         c = log(cost/target) with the multiplier m raised by dual ascent, then
                         a settling phase on |c|; docs/search.md), 'target' (|log(cost/target)|),
                         'target_squared', 'hinge' (only above the target) or 'log'
                         (Single-Path NAS: lambda * log(cost))
  cost_weight            lambda (of the quadratic part for 'lagrangian')
  multiplier_rate        'lagrangian': the multiplier's change per decision step and unit of c
  settle_fraction        'lagrangian': the last fraction of the decision phase, which lands on
                         the target with |c| (lambda settle_weight) and a restarted threshold
                         learning rate
  settle_weight          lambda of the settling phase
  min_heldout_top1_vs_chance   the held-out top-1 at the end of the warm-up must reach this
                         multiple of chance, else the search stops there (exit 4, no arch.txt)
  stop_if_not_learning   False: go on anyway (e.g. a shuffled-label control)
  warmup_fraction        fraction of the steps that train the weights only: no cost term,
                         thresholds frozen, indicators dropped at random (Single-Path NAS: 62.5%)
  indicator_keep_probability   during the warm-up, each indicator is kept with this probability
                         at every step, so every sub-choice is trained (Single-Path NAS: 0.6)
  bn_recalibration_steps training batches (forward only) that re-estimate the BatchNorm
                         statistics of the current child before each held-out evaluation
  target_tolerance       dead zone of the target terms, relative (0 = none)
  discrete_gradient      differentiate the cost term per indicator by the exact effect of its flip
                         (see autonl_tf.search.objective); False = plain chain rule
  temperature            width of the sigmoid whose gradient the hard indicators use
  score_gradient         also train the weights through the indicator scores (weight norms), as
                         Single-Path NAS; off by default (see autonl_tf.search.layers)
  threshold_optimizer    'adam' | 'sgd' | 'rmsprop' (thresholds only)
  threshold_learning_rate, threshold_beta_1   its learning rate (0 during the warm-up, then
                         cosine-decayed to 0 over the decision phase, restarted for the
                         settling phase) and Adam's beta_1
"""

import ml_collections

from autonl_tf.recipe.defaults import get_base_config
from autonl_tf.search import spaces

VARIANTS = ("imagenet", "demo")


# Keys of autonl_tf/recipe/defaults.py that the search does not read (the supernet has no EMA, no stochastic
# depth and no architecture of its own): they are removed, so that setting one is an error.
UNUSED_KEYS = ("model.arch", "model.drop_connect_rate", "train.use_ema", "train.ema_decay",
               "train.ema_dynamic_decay", "train.debug_nan_at_step", "eval.use_ema",
               "eval.timeout_s")


def get_config(variant: str = "imagenet") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"search config variant {variant!r}: expected one of {VARIANTS}")
    demo = variant == "demo"
    config = get_base_config(arch="", dataset="embedded" if demo else "imagenet")
    for dotted in UNUSED_KEYS:
        section, key = dotted.split(".")
        del config[section][key]
    config.search_space = spaces.get_config("demo" if demo else "autonl")
    train = config.train
    train.label_smoothing = 0.0
    if demo:
        config.model.width_multiplier = 0.25
        config.model.dropout_rate = 0.0
        config.data.image_size = 32
        train.batch_size = 32
        train.train_steps = 2000  # 21 epochs of the 3000 generated images
        train.warmup_epochs = 0.5
        train.lr_decay_epochs = 2.0
        train.lr_decay_rate = 0.9
        train.steps_per_loop = 25
        train.log_every_steps = 100
        train.checkpoint_every_steps = 500
        config.eval.batch_size = 200
        config.eval.every_steps = 250
    else:
        # Single-Path NAS scale: 8 epochs of ImageNet at batch 1024 (10008 steps).
        train.batch_size = 1024
        train.train_epochs = 8.0
        train.warmup_epochs = 1.0
        train.steps_per_loop = 100
        train.checkpoint_every_steps = 1000
        # Held-out accuracy of the supernet on 10 batches (10,240 validation images).
        config.eval.steps = 10
        config.eval.every_steps = 0
    config.search = ml_collections.ConfigDict(dict(
        # A target inside the feasible range of the space at the configured size and width:
        # the demo's is ~60% of its largest child.
        target_flops=450e3 if demo else 350e6,
        target_latency_ms=0.0,
        latency_table="",
        latency_mode="",
        cost_loss="lagrangian",
        cost_weight=2.0,
        multiplier_rate=0.02,
        settle_fraction=0.25,
        settle_weight=5.0,
        min_heldout_top1_vs_chance=1.5,
        stop_if_not_learning=True,
        # Single-Path NAS: 6255 of 10008 steps (5 of 8 epochs) train the weights only.
        warmup_fraction=0.625,
        indicator_keep_probability=0.8 if demo else 0.6,
        bn_recalibration_steps=30 if demo else 50,
        target_tolerance=0.0,
        discrete_gradient=True,
        temperature=1.0,
        score_gradient=False,
        threshold_optimizer="adam",
        threshold_learning_rate=0.05 if demo else 0.01,
        threshold_beta_1=0.9,
    ))
    return config
