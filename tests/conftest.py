"""Shared pytest setup: quiet TensorFlow, two logical CPU devices, the repo root on sys.path, and
the fixtures that several test files share, built once per test run (once per file under Bazel,
which runs each file as its own pytest session).

Shared fixtures are read-only: a test that changes a shared model dir works on a copy
(``shutil.copytree``). Test tiers: ``-m "not slow"`` is the fast tier; end-to-end tests that
run the command-line programs as subprocesses, and in-process tests that search, train or
XLA-compile a network for several seconds, are marked ``slow``; a file of only such tests with
``pytestmark = pytest.mark.slow`` and the Bazel tag ``slow`` (tests/test_build_sync.py).
End-to-end tests start the programs with ``autonl_tf.training.programs.run``/``Popen``
(subprocess's arguments; forked from a server that imported TensorFlow once, or a fresh
interpreter with AUTONL_FRESH_PROCESSES=1).
"""

import os
import pathlib
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One thread per TensorFlow kernel, in this process and the programs the tests start (they copy
# this environment): the networks here are tiny, and the slow tier runs 3 workers on 2 cores, so
# a kernel split over threads only adds thread hand-offs and spinning. Measured on 2 cores:
# the two 150-step searches of test_search_supernet 39.0 s -> 33.8 s alone (user CPU -13%); the
# slow tier used 424 instead of 489 CPU-s. Product runs keep TensorFlow's default.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

REPO_ROOT = pathlib.Path(__file__).absolute().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from autonl_tf._startup import quiet_tensorflow_startup  # noqa: E402

quiet_tensorflow_startup()  # without the CUDA-probe lines of TensorFlow's start-up
import tensorflow as tf  # noqa: E402

# Two logical CPUs so that MirroredStrategy tests can run two replicas on this machine. This must
# happen before TensorFlow initialises its devices, hence here and not in a fixture.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # devices already initialised by an earlier import
    pass


@pytest.fixture(scope="session")
def embedded_data_dir(tmp_path_factory) -> str:
    """Root dir (``data.data_dir``) holding the small embedded set of
    `autonl_tf.training.testing.tiny_config`, built here so that tests and their subprocesses
    only read it."""
    from autonl_tf.training import recipe, testing

    root = str(tmp_path_factory.mktemp("embedded"))
    recipe.resolve_experiment(testing.tiny_config(root))  # prepares (builds) the data
    return root


@pytest.fixture(scope="session")
def tiny_trained(embedded_data_dir, tmp_path_factory) -> tuple[pathlib.Path, dict]:
    """(model_dir, result): the tiny config trained in-process for 8 steps in train_and_eval
    mode (checkpoints and EMA evaluations at steps 4 and 8) and `train_experiment`'s result."""
    from autonl_tf.training import experiment, testing

    model_dir = tmp_path_factory.mktemp("tiny_trained")
    result = experiment.train_experiment(testing.tiny_config(embedded_data_dir, train_steps=8),
                                         model_dir=str(model_dir),
                                         strategy=tf.distribute.get_strategy(),
                                         mode="train_and_eval")
    return model_dir, result


@pytest.fixture(scope="session")
def demo_model():
    """`autonl_tf.export.testing.train_demo_model` at 32 px (60 steps): the trained network the
    export tests convert; do not change its weights."""
    from autonl_tf.export import testing

    return testing.train_demo_model(32)
