"""autonl_tf: AutoNL (Neural Architecture Search for Lightweight Non-Local Networks, CVPR 2020)
on TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
