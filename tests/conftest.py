"""Shared pytest setup: quiet TensorFlow, two logical CPU devices, the repo root on sys.path."""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).absolute().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import tensorflow as tf  # noqa: E402

# Two logical CPUs so that MirroredStrategy tests can run two replicas on this machine. This must
# happen before TensorFlow initialises its devices, hence here and not in a fixture.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # devices already initialised by an earlier import
    pass
