"""AutoNL-L retrained with the paper's recipe on ImageNet."""

from autonl_tf.recipe.defaults import get_base_config


def get_config():
    return get_base_config(arch="autonl_l")
