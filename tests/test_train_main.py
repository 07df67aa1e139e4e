"""train_main.py end to end, as a user runs it (subprocesses): kill -9 and resume, SIGTERM,
NaN stop, two-worker MultiWorkerMirroredStrategy on 127.0.0.1, one-line errors for bad input.
"""
# bazel: size=large timeout=long tags=subprocess,slow

import json
import re
import signal
import socket
import subprocess
import time

import pytest
import tensorflow as tf

from tests.support import programs
from tests.support import training as testing
from tests.support.training import REPO_ROOT, main_command, subprocess_env, to_flags

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(embedded_data_dir):
    """The small embedded set (conftest.py), built before so that subprocesses only read it."""
    return embedded_data_dir


def _train_args(data_dir, model_dir, train_steps, **extra):
    return ["--config=demo", f"--model_dir={model_dir}",
            *to_flags(testing.tiny_overrides(data_dir, train_steps, **extra))]


def _run(args, timeout=240, **env):
    return programs.run(main_command("train_main.py", *args), cwd=REPO_ROOT,
                        env=subprocess_env(**env), capture_output=True, text=True,
                        timeout=timeout)


def _assert_one_line_error(proc, pattern):
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if re.search(pattern, line)]
    assert errors, proc.stderr[-3000:]


def test_sigterm_checkpoints_and_exits(data_dir, tmp_path):
    """Preemption notice: checkpoint after the current chunk, exit 3, rerun resumes there."""
    model_dir = tmp_path / "preempted"
    args = _train_args(data_dir, model_dir, 2000, train__checkpoint_every_steps=100,
                       train__log_every_steps=100)
    proc = programs.Popen(main_command("train_main.py", *args), cwd=REPO_ROOT,
                          env=subprocess_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not (model_dir / "checkpoint").exists():
            assert proc.poll() is None and time.time() < deadline, "no first checkpoint"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 3, err[-3000:]
    saved = re.search(r"interrupted by SIGTERM at step (\d+); checkpoint \S+ckpt-(\d+) saved",
                      err)
    assert saved and saved[1] == saved[2], err[-3000:]
    assert tf.train.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{saved[1]}")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(data_dir, tmp_path):
    model_dir = tmp_path / "nan"
    proc = _run(_train_args(data_dir, model_dir, 12, train__debug_nan_at_step=6))
    assert proc.returncode == 1
    _assert_one_line_error(proc, r"error: loss is nan at step 6 .*Last good checkpoint: "
                                 r"\S+ckpt-4")
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-4")
    assert not list(model_dir.glob("ckpt-6*")) and not list(model_dir.glob("ckpt-8*"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_multi_worker_mirrored(data_dir, tmp_path):
    """Chief (worker 0) writes the model dir; worker 1 checkpoints to a scratch dir."""
    model_dir = tmp_path / "mwms"
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    args = _train_args(data_dir, model_dir, 4, train__checkpoint_every_steps=0)
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(programs.Popen(
            main_command("train_main.py", *args), cwd=REPO_ROOT,
            env=subprocess_env(TF_CONFIG=json.dumps(tf_config)), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240))
    finally:
        for proc in procs:
            proc.kill()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "trained to step 4" in out
    assert "MultiWorkerMirroredStrategy: 2 workers, 2 replicas" in outputs[0][1]
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-4.index"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["train"]["total_steps"] == 4


@pytest.mark.parametrize("flags, pattern", [
    (["--config.train.batch_sise=8"], r"batch_sise"),
    (["--config.train.batch_size=eight"], r"train.batch_size"),
    (["--config=no_such_config"], r"unknown config 'no_such_config'"),
])
def test_bad_config_is_a_flag_error(data_dir, tmp_path, flags, pattern):
    proc = _run(_train_args(data_dir, tmp_path, 2) + flags, timeout=120)
    _assert_one_line_error(proc, pattern)


def test_missing_data_is_a_one_line_error(data_dir, tmp_path):
    proc = _run(_train_args(data_dir, tmp_path, 2, data__dataset="imagenet")
                + ["--data_dir=/no/such/dir"], timeout=120)
    assert proc.returncode == 2
    _assert_one_line_error(proc, r"^train_main.py: error: data.data_dir '/no/such/dir' does "
                                 r"not exist")


def test_batch_not_divisible_by_replicas(data_dir, tmp_path):
    proc = _run(_train_args(data_dir, tmp_path, 2)
                + ["--num_cpu_replicas=2", "--train_batch_size=7"], timeout=120)
    assert proc.returncode == 2
    _assert_one_line_error(proc, r"error: global train batch size 7 is not divisible by the "
                                 r"2 replicas")


def test_other_architecture_in_a_used_model_dir(data_dir, tmp_path):
    first = _run(_train_args(data_dir, tmp_path, 2))
    assert first.returncode == 0, first.stderr[-3000:]
    proc = _run(_train_args(data_dir, tmp_path, 2) + ["--arch=mobilenet_v2"], timeout=120)
    assert proc.returncode == 2
    _assert_one_line_error(proc, r"error: .* holds a different model \(model.arch differ\)")
    proc = _run(_train_args(data_dir, tmp_path, 2, data__image_size=64), timeout=120)
    _assert_one_line_error(proc, r"holds a different model \(data.image_size differ\)")
