"""autonl_tf: AutoNL (Neural Architecture Search for Lightweight Non-Local Networks, CVPR 2020)
on TensorFlow 2 / Keras 3."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) buries the output of our
# command-line tools; keep warnings and errors. Users can still override the variable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
