"""MobileNetV2 1.0 trained with the AutoNL recipe, as the baseline of comparisons.

Same optimizer, schedule, regularisation and augmentation as the AutoNL configs, so that a
comparison isolates the architecture. (MobileNetV2's own paper used a different recipe and
reports 72.0% top-1.) MobileNetV2 uses no stochastic depth and ReLU6.
"""

from autonl_tf.recipe.defaults import get_base_config


def get_config():
    config = get_base_config(arch="mobilenet_v2")
    config.model.drop_connect_rate = 0.0
    return config
