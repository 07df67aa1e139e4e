"""eval_main.py as a user runs it (subprocesses): latest checkpoint with EMA or raw weights,
continuous evaluation next to a running trainer, export, and one-line errors."""
# bazel: size=large timeout=long tags=subprocess,slow

import json
import re
import shutil
import subprocess
import time

import pytest

from autonl_tf import files
from autonl_tf.runner import evaluation
from tests.support import programs
from tests.support import training as testing
from tests.support.training import REPO_ROOT, main_command, subprocess_env, to_flags

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(embedded_data_dir):
    return embedded_data_dir


@pytest.fixture(scope="module")
def trained(tiny_trained):
    """The shared tiny model dir (conftest.py: 8 steps, checkpoints at 4 and 8); read-only."""
    return tiny_trained[0]


def _eval(*args, timeout=180):
    return programs.run(main_command("eval_main.py", *args), cwd=REPO_ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def _copy(trained, tmp_path):
    copy = tmp_path / "model_dir"
    shutil.copytree(trained, copy)
    (copy / files.EVAL_RESULTS_FILE).unlink(missing_ok=True)
    return copy


def test_latest_checkpoint_ema_then_raw(trained, tmp_path):
    model_dir = _copy(trained, tmp_path)
    proc = _eval(f"--model_dir={model_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"step 8: top1 [0-9.]+ top5 [0-9.]+ loss \S+ \(64 images, EMA weights\)",
                     proc.stdout), proc.stdout
    proc = _eval(f"--model_dir={model_dir}", "--use_ema=false", "--num_cpu_replicas=2",
                 "--eval_batch_size=16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(64 images, raw weights)" in proc.stdout
    records = json.loads((model_dir / files.EVAL_RESULTS_FILE).read_text())
    assert [(r["step"], r["ema"], r["num_images"]) for r in records] == [(8, True, 64),
                                                                        (8, False, 64)]
    assert set(records[0]) >= {"step", "top1", "top5", "loss", "num_images", "ema"}


def test_continuous_evaluation_follows_a_running_trainer(data_dir, tmp_path):
    """The evaluator starts first, waits for the trainer, evaluates checkpoints as they appear
    and stops by itself after the final training step."""
    model_dir = tmp_path / "live"
    evaluator = programs.Popen(
        main_command("eval_main.py", f"--model_dir={model_dir}", "--continuous",
                     "--eval_timeout=120"),
        cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        time.sleep(1)
        train = programs.run(
            main_command("train_main.py", "--config=demo", f"--model_dir={model_dir}",
                         *to_flags(testing.tiny_overrides(data_dir, 60,
                                                          train__checkpoint_every_steps=20))),
            cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=240)
        assert train.returncode == 0, train.stderr[-3000:]
        out, err = evaluator.communicate(timeout=240)
    finally:
        evaluator.kill()
    assert evaluator.returncode == 0, err[-3000:]
    steps = [r["step"] for r in evaluation.read_eval_results(str(model_dir))]
    assert steps and steps[-1] == 60 and steps == sorted(set(steps)), (steps, err[-2000:])
    assert "reached the final training step 60" in err


def test_export_after_evaluation(trained, tmp_path):
    model_dir = _copy(trained, tmp_path)
    export_dir = tmp_path / "export"
    proc = _eval(f"--model_dir={model_dir}", f"--export_dir={export_dir}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (export_dir / "saved_model.pb").exists()


def test_errors_are_one_line(trained, tmp_path):
    proc = _eval(f"--model_dir={tmp_path / 'missing'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"^eval_main.py: error: .*config.json not found", proc.stderr, re.M)
    proc = _eval(f"--model_dir={trained}", "--arch=mobilenet_v2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"error: .* holds a different model \(model.arch differ\)", proc.stderr)
    proc = _eval(f"--model_dir={trained}", f"--checkpoint_path={trained}/ckpt-999")
    assert proc.returncode == 2 and "ckpt-999' not found" in proc.stderr
