"""The commands check their flags and config files before loading TensorFlow.

A bad flag, an unknown config key or a bad ``--tflite`` mode is answered in a fraction of a
second (exit 2, one line), ``--help`` too, and the profiler never loads TensorFlow. Checked on
the real commands (the top-level entry points and the package's modules), as subprocesses,
with Python's ``-X importtime`` report of what they imported.
"""
# bazel: suite=repo

from __future__ import annotations

import subprocess
import sys

import pytest

from autonl_tf import _startup
from tests.support.training import REPO_ROOT, subprocess_env


def _run_and_imports(args: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    completed = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO_ROOT,
                               env=subprocess_env(), capture_output=True, text=True, timeout=120)
    imported = {line.rsplit("|", 1)[1].strip() for line in completed.stderr.splitlines()
                if line.startswith("import time:")}
    return completed, imported


@pytest.mark.parametrize("args, code, message", [
    (["train_main.py", "--config=demo", "--model_dir=m", "--config.train.batch_sise=3"], 2,
     "unknown --config key 'train.batch_sise' (did you mean 'train.batch_size'?)"),
    (["search_main.py", "--config=search:demo", "--model_dir=m", "--config.model.arch=x"], 2,
     "unknown --config key 'model.arch'"),
    (["-m", "autonl_tf.search_main", "--config=search:demo", "--model_dir=m",
      "--target_flops=abc"], 2, "flag --target_flops=abc"),
    (["eval_main.py", "--model_dir=m", "--no_such_flag"], 2, "Unknown command line flag"),
    (["-m", "autonl_tf.train_main", "--config=demo", "--model_dir=m", "--train_steps=0"], 2,
     "--train_steps"),
    (["train_main.py", "--config=no_such_config", "--model_dir=m"], 2,
     "unknown config 'no_such_config'"),
    (["-m", "autonl_tf.export", "--model_dir=m", "--export_dir=e", "--tflite=float64"], 2,
     "--tflite: unknown TFLite mode 'float64'"),
    (["-m", "autonl_tf.profile", "--model=resnet50"], 2, "unknown model"),
    (["-m", "autonl_tf.profile", "--model=autonl_s", "--json"], 0, ""),
    (["train_main.py", "--help"], 0, ""),
    (["-m", "autonl_tf.export", "--help"], 0, ""),
])
def test_answered_without_loading_tensorflow(tmp_path, args, code, message):
    args = [a.replace("=m", f"={tmp_path / 'm'}").replace("=e", f"={tmp_path / 'e'}")
            for a in args]
    completed, imported = _run_and_imports(args)
    assert completed.returncode == code, completed.stderr[-2000:]
    assert message in completed.stderr
    assert "tensorflow" not in imported and "keras" not in imported
    assert "autonl_tf" in imported  # the report did cover the command's own imports
    assert not (tmp_path / "m").exists() and not (tmp_path / "e").exists()


@pytest.mark.slow  # a fresh interpreter that imports TensorFlow: ~7 CPU-s
def test_a_run_that_passes_the_checks_loads_tensorflow_quietly(tmp_path):
    """The other side: once the flags are fine TensorFlow is loaded (here to find that the
    model dir holds nothing to export), without its CUDA-probe start-up lines."""
    completed, imported = _run_and_imports(
        ["-m", "autonl_tf.export", f"--model_dir={tmp_path}", f"--export_dir={tmp_path / 'e'}"])
    assert completed.returncode == 2
    assert "tensorflow" in imported and "nothing to export" in completed.stderr
    if not _startup._has_nvidia_driver():  # there the CUDA-probe lines matter and are kept
        assert "cuInit" not in completed.stderr and "oneDNN" not in completed.stderr
