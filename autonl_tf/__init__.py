"""autonl_tf: AutoNL (Neural Architecture Search for Lightweight Non-Local Networks, CVPR 2020)
on TensorFlow 2 / Keras 3."""

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) buries the output of our
# command-line tools; keep warnings and errors. Users can still override the variable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if sys.argv[:1] == ["-m"]:
    # `python -m autonl_tf.<command>` (Python sets argv[0] to '-m' while it imports the
    # package): drop the CUDA-probe noise of TensorFlow's start-up before anything loads it.
    from autonl_tf._startup import quiet_tensorflow_startup

    quiet_tensorflow_startup()

__version__ = "0.1.0"
