"""Demo: a small AutoNL-style network with LightNL on the embedded dataset, ~2.5 min on 2 CPU cores.

The embedded dataset (autonl_tf.data.embedded, generated locally, 10 classes) labels each image by
the shape of two tokens and whether their colours match: the colour match is a long-range
relation, which is what LightNL blocks are for. Same recipe as the paper (TF1 RMSProp, warm-up +
exponential decay, label smoothing, weight decay, EMA), scaled to a 3000-image set.

    python train_main.py --config=demo --model_dir=/tmp/autonl_demo
    python eval_main.py --model_dir=/tmp/autonl_demo

Measured on 2 CPU cores: training ~2-2.5 minutes, EMA top-1 0.98-0.99 on the 600 eval images
(chance 0.10); a run that learns only the shapes plateaus at 0.5.

The demo pipeline (``python -m autonl_tf.pipeline``) retrains its searched network with this
recipe too, at the search's width x0.25: the searched networks of the 'demo' search space
(7 blocks, output stride 16 at 32 px) reach 95-97% top-1 in these 1875 steps (docs/training.md).

    python train_main.py --config=demo --arch=runs/demo/search/arch.txt \
        --config.model.width_multiplier=0.25 --model_dir=/tmp/autonl_searched
"""

from autonl_tf.recipe.defaults import get_base_config

# Stem 32 -> 16 (e1) -> 24 (/2, LightNL) -> 40 (/2, SE, LightNL stride 2) -> 80 (/2, SE, LightNL).
DEMO_ARCH = " ".join([
    "r1_k3_s11_e1_i32_o16_sw",
    "r1_k3_s22_e3_i16_o24_sw_nonlocal0.25",
    "r1_k5_s22_e3_i24_o40_se0.25_sw_nonlocal0.25-2",
    "r1_k3_s22_e3_i40_o80_se0.25_sw_nonlocal0.25",
])


def get_config():
    config = get_base_config(arch=DEMO_ARCH, dataset="embedded")
    config.model.width_multiplier = 0.75
    config.model.dropout_rate = 0.1
    config.data.image_size = 32
    train = config.train
    train.batch_size = 64
    train.train_epochs = 40.0  # 1875 steps of 64 images
    train.lr_per_256 = 0.064  # 0.016 at batch 64
    train.warmup_epochs = 3.0
    train.lr_decay_epochs = 2.4
    train.lr_decay_rate = 0.9  # the recipe's 0.97 is tuned for 350 epochs
    train.ema_decay = 0.99
    train.steps_per_loop = 20
    train.log_every_steps = 100
    train.checkpoint_every_steps = 200
    config.eval.batch_size = 200
    return config
