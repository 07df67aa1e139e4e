"""Shared pytest setup: quiet TensorFlow, two logical CPU devices, the repo root on sys.path, and
the fixtures that several test files share, built once per test run (once per file under Bazel,
which runs each file as its own pytest session; once for all pytest-xdist workers, `_built_once`).

Shared fixtures are read-only: a test that changes a shared model dir works on a copy
(``shutil.copytree``). Test tiers: ``-m "not slow"`` is the fast tier; end-to-end tests that
run the command-line programs as subprocesses, and in-process tests that search, train or
XLA-compile a network for several seconds, are marked ``slow``; a file of only such tests with
``pytestmark = pytest.mark.slow`` and the Bazel tag ``slow`` (tests/test_build_sync.py).
End-to-end tests start the programs with ``tests.support.programs.run``/``Popen``
(subprocess's arguments; forked from a server that imported TensorFlow once, or a fresh
interpreter with AUTONL_FRESH_PROCESSES=1).
"""

import fcntl
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Callable

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


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own pytest_configure
def pytest_configure(config):
    """Loads TensorFlow in the processes that run tests. The pytest-xdist controller (the
    process that only hands test files to the workers: it has the plugin "dsession") never runs
    a test, and importing TensorFlow there cost ~5 CPU-s that the workers' start-up waited for."""
    if config.pluginmanager.has_plugin("dsession"):
        return
    from autonl_tf._startup import quiet_tensorflow_startup

    quiet_tensorflow_startup()  # without the CUDA-probe lines of TensorFlow's start-up
    import tensorflow as tf

    # Two logical CPUs so that MirroredStrategy tests can run two replicas on this machine. This
    # must happen before TensorFlow initialises its devices, hence here, before the test files
    # are imported, and not in a fixture.
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:  # devices already initialised by an earlier import
        pass


# The test files of the fast tier that take the most CPU, heaviest first (CPU-s measured on 2
# cores: export_tflite 34 with the demo model's training, data_pipeline 18, export_saved_model
# 13, models 11, training_evaluation 11 with the tiny training run, export_metadata 7,
# export_cli 9 (after the first user of the tiny run, so that it seldom waits for it), profile
# 7; the other files 5 or less). pytest-xdist's loadfile distribution
# hands files to whichever worker is free, in collection order: longest first, the workers end
# together instead of one finishing an export file alone (on 2 cores 86 vs 66 CPU-s of work).
# Only the balance depends on this list, never a result.
HEAVY_FILES_FIRST = ("test_export_tflite.py", "test_data_pipeline.py", "test_export_saved_model.py",
                     "test_models.py", "test_training_evaluation.py", "test_export_metadata.py",
                     "test_export_cli.py", "test_profile.py", "test_search_supernet.py",
                     "test_numerics.py", "test_bad_data.py")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the files of `HEAVY_FILES_FIRST` first, in its order (stable sort:
    the tests of a file keep their order, the other files theirs)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    rank = {name: i for i, name in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _built_once(tmp_path_factory, name: str, build: Callable[[pathlib.Path], None]
                ) -> pathlib.Path:
    """A directory that ``build`` fills once per test run, for session fixtures whose product
    lives on disk.

    pytest-xdist runs test files in worker processes, each with its own session fixtures: a
    fixture that trains a network would train it once per worker. Here the first worker to ask
    builds the directory under a file lock in the run's temporary root (which the workers share)
    and the others wait for it and read it; a failed build leaves nothing, so a later worker
    tries again. Without xdist (``-n 0``, Bazel) it is an ordinary temporary directory.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        path = tmp_path_factory.mktemp(name)
        build(path)
        return path
    root = tmp_path_factory.getbasetemp().parent  # <run>/popen-gwN -> <run>
    path, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            try:
                build(path)
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            done.touch()
    return path


@pytest.fixture(scope="session")
def embedded_data_dir(tmp_path_factory) -> str:
    """Root dir (``data.data_dir``) holding the small embedded set of
    `tests.support.training.tiny_config`, built here (once per run) so that tests and their
    subprocesses only read it."""
    from autonl_tf.recipe import recipe
    from tests.support import training as testing

    def build(root: pathlib.Path) -> None:
        recipe.resolve_experiment(testing.tiny_config(str(root)))  # prepares (builds) the data

    return str(_built_once(tmp_path_factory, "embedded", build))


@pytest.fixture(scope="session")
def tiny_trained(embedded_data_dir, tmp_path_factory) -> tuple[pathlib.Path, dict]:
    """(model_dir, result): the tiny config trained for 8 steps in train_and_eval mode
    (checkpoints and EMA evaluations at steps 4 and 8), once per run. ``result``: 'eval' (the
    driver's last evaluation), and the trained model's state in memory when training ended:
    'trainable' (its trainable variables) and 'averages' (their EMA), as numpy arrays."""
    import numpy as np
    import tensorflow as tf

    from autonl_tf.recipe.task import train_experiment
    from autonl_tf.runner import checkpoints
    from tests.support import training as testing

    def build(path: pathlib.Path) -> None:
        result = train_experiment(
            testing.tiny_config(embedded_data_dir, train_steps=8), model_dir=str(path / "model"),
            strategy=tf.distribute.get_strategy(), mode="train_and_eval")
        model = result["model"]
        averages = checkpoints._moving_averages(model.optimizer, model.trainable_variables)
        np.savez(path / "state.npz", *[v.numpy() for v in model.trainable_variables],
                 *[a.numpy() for a in averages])
        (path / "eval.json").write_text(json.dumps(result["eval"]))

    path = _built_once(tmp_path_factory, "tiny_trained", build)
    with np.load(path / "state.npz") as state:
        arrays = [state[f"arr_{i}"] for i in range(len(state.files))]
    half = len(arrays) // 2
    return path / "model", {"eval": json.loads((path / "eval.json").read_text()),
                            "trainable": arrays[:half], "averages": arrays[half:]}


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory):
    """`tests.support.demo_model.train_demo_model` at 32 px (60 steps), trained once per run
    (~13 CPU-s, nearly all of it tracing the training step) and loaded from its weights: the
    trained network the export tests convert; do not change its weights."""
    import numpy as np

    from tests.support import demo_model as testing

    def build(path: pathlib.Path) -> None:
        np.savez(path / "weights.npz", *testing.train_demo_model(32).get_weights())

    path = _built_once(tmp_path_factory, "demo_model", build)
    model = testing.build_demo_model(32)
    with np.load(path / "weights.npz") as weights:
        model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    return model


@pytest.fixture(scope="session")
def small_classifier():
    """A one-block network (32 px in, 10 classes out), untrained: for the export tests whose
    subject is how the export writes its files, not the network (an export of it costs ~1 CPU-s,
    of `demo_model` ~3)."""
    from autonl_tf.models import build_model, resolve_model_spec

    return build_model(resolve_model_spec("r1_k3_s11_e1_i32_o16_sw"), num_classes=10,
                       image_size=32)
