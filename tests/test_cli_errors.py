"""Every command answers bad input with one line and exit code 2 (README "Exit codes").

Subprocesses, as a user runs the commands. The Cloud TPU cases that need a TPU API replace
TPUClusterResolver by a stand-in that fails the way the real one does (there is no Cloud TPU
here); `--tpu=local` runs for real: this machine has no TPU.
"""
# bazel: tags=subprocess,slow

from __future__ import annotations

import subprocess

import pytest
import tensorflow as tf

from autonl_tf import _startup
from autonl_tf.runner import strategy as strategy_lib
from tests.support import programs
from tests.support.training import REPO_ROOT, main_command, subprocess_env

pytestmark = pytest.mark.slow


def _run(*command: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return programs.run(list(command), cwd=REPO_ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=timeout)


def _error_line(completed: subprocess.CompletedProcess, code: int = 2) -> str:
    assert completed.returncode == code, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    lines = [line for line in completed.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, completed.stderr[-3000:]
    if not _startup._has_nvidia_driver():  # TensorFlow's CUDA-probe noise is dropped there
        assert "failed call to cuInit" not in completed.stderr
    return lines[0]


@pytest.mark.parametrize("override,key", [("--config.search.no_such_key=1", "search.no_such_key"),
                                          ("--config.nosection.x=1", "nosection.x")])
def test_search_main_unknown_config_key_names_the_dotted_key(tmp_path, override, key):
    completed = _run(*main_command("search_main.py", "--config=search:demo",
                                   f"--model_dir={tmp_path / 'm'}", override))
    assert f"unknown --config key '{key}'" in _error_line(completed)
    assert not (tmp_path / "m").exists()


def test_export_help_lists_its_flags_and_bad_input_is_exit_2(tmp_path):
    python = main_command("eval_main.py")[0]
    completed = _run(python, "-m", "autonl_tf.export", "--help")
    assert completed.returncode == 0
    for flag in ("--model_dir", "--export_dir", "--tflite", "--num_verify_images", "--[no]use_ema"):
        assert flag in completed.stdout
    completed = _run(python, "-m", "autonl_tf.export",
                     f"--model_dir={tmp_path}", f"--export_dir={tmp_path / 'x'}",
                     "--tflite=float64")
    assert "--tflite: unknown TFLite mode 'float64'" in _error_line(completed)


def test_train_main_tpu_local_without_a_tpu_is_one_line(tmp_path):
    completed = _run(*main_command("train_main.py", "--config=demo", f"--model_dir={tmp_path}",
                                   "--tpu=local"))
    line = _error_line(completed)
    assert "--tpu=local: no TPU on this machine" in line and "drop --tpu" in line
    assert not any(tmp_path.iterdir())  # nothing written to the model dir


def test_build_tfrecords_bad_input_is_exit_2(tmp_path):
    completed = _run(main_command("eval_main.py")[0], "-m", "autonl_tf.data.build_tfrecords",
                     f"--input_dir={tmp_path / 'missing'}", f"--output_dir={tmp_path / 'out'}")
    assert f"--input_dir '{tmp_path / 'missing'}' is not a directory" in _error_line(completed)


@pytest.mark.parametrize("args,expected", [
    (("--target_latency_ms=0.05",), "search.target_latency_ms needs a latency table"),
    (("--target_latency_ms=0.05", "--latency_table=/no/such/table.json"),
     "latency table /no/such/table.json: cannot read it"),
    # The committed table of the demo space is for 32 px: refused at another size.
    (("--target_latency_ms=0.05", "--latency_table={table}", "--config.data.image_size=64"),
     "was built for image_size=32 (this search: 64)"),
    (("--target_latency_ms=0.001", "--latency_table={table}"),
     "target_latency_ms=0.001 is below the fastest child network"),
])
def test_search_main_latency_target_bad_input_is_one_line(tmp_path, args, expected):
    from autonl_tf.latency.committed import demo_table

    args = [a.format(table=demo_table("float32")) for a in args]
    completed = _run(*main_command("search_main.py", "--config=search:demo",
                                   f"--model_dir={tmp_path / 'm'}", *args))
    assert expected in _error_line(completed)
    assert not (tmp_path / "m").exists()


def test_build_table_bad_input_is_exit_2(tmp_path):
    python = main_command("eval_main.py")[0]
    completed = _run(python, "-m", "autonl_tf.latency.build_table", "--config=search:demo")
    assert "--output=<table.json> is required" in _error_line(completed)
    completed = _run(python, "-m", "autonl_tf.latency.build_table",
                     f"--export_dir={tmp_path}", f"--benchmark_logs={tmp_path}",
                     "--device=phone", f"--output={tmp_path / 't.json'}")
    assert "manifest.json not found" in _error_line(completed)


class _FailingResolver:
    """Stands in for TPUClusterResolver, which needs the Cloud TPU API (absent here)."""

    error: Exception

    def __init__(self, tpu=None, zone=None, project=None):
        raise self.error


@pytest.mark.parametrize("error,expected", [
    (RuntimeError("Missing runtime dependency on the Google API client. Run `pip install "
                  "cloud-tpu-client` to fix."), "pip install -e '.[tpu]'"),
    (ValueError("Could not lookup TPU metadata from name 'my-tpu'. Please doublecheck the "
                "tpu argument in the TPUClusterResolver constructor."),
     "gcloud compute tpus list --zone=us-central1-b --project=my-project"),
])
def test_named_tpu_errors_name_the_flags_and_what_to_check(monkeypatch, error, expected):
    monkeypatch.setattr(_FailingResolver, "error", error, raising=False)
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", _FailingResolver)
    with pytest.raises(strategy_lib.StrategyError) as raised:
        strategy_lib.create_strategy(tpu="my-tpu", tpu_zone="us-central1-b",
                                     gcp_project="my-project")
    message = str(raised.value)
    assert message.startswith("--tpu=my-tpu --tpu_zone=us-central1-b --gcp_project=my-project: ")
    assert expected in message and "\n" not in message
