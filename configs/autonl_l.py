"""AutoNL-L retrained with the paper's recipe on ImageNet."""

from configs import common


def get_config():
    return common.get_base_config(arch="autonl_l")
