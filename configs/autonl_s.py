r"""AutoNL-S retrained with the paper's recipe on ImageNet.

    python train_main.py --config=autonl_s --tpu=<name> --data_dir=gs://.../imagenet \
        --model_dir=gs://.../autonl_s --use_bfloat16
"""

from autonl_tf.recipe.defaults import get_base_config


def get_config():
    return get_base_config(arch="autonl_s")
