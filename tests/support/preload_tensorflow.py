"""Imported by the fork server of `tests.support.programs` before it forks: TensorFlow (its
CUDA probe quiet, as the command-line tools start it) and Keras, and nothing run."""

from autonl_tf._startup import quiet_tensorflow_startup

quiet_tensorflow_startup()

import keras  # noqa: E402, F401
