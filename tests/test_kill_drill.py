"""kill -9 at random moments (often inside a checkpoint save): every rerun resumes from the
last complete checkpoint and removes the temporary directories of interrupted saves.

The 10-kill version is benchmarks/kill_drill.py; this is the same drill with one kill.
"""
# bazel: size=large timeout=long tags=subprocess,slow

import os

import pytest

from tests.support import training as testing

pytestmark = pytest.mark.slow


def test_a_random_kill_then_the_run_completes(embedded_data_dir, tmp_path):
    data_dir, model_dir = embedded_data_dir, str(tmp_path / "model")
    args = ["--config=demo", f"--model_dir={model_dir}", *testing.to_flags(
        testing.tiny_overrides(data_dir, 24, train__checkpoint_every_steps=2,
                               train__log_every_steps=2, train__max_checkpoints_to_keep=3))]
    records = testing.kill_drill(args, model_dir, 1, seed=3, max_delay_s=1.0,
                                 log_dir=str(tmp_path))
    assert len(records) == 1
    assert all(r["resumed_step"] == r["checkpoint_step"] for r in records)
    assert not [p for p in os.listdir(model_dir) if p.endswith("_temp")]
    assert open(os.path.join(model_dir, "checkpoint")).read().startswith(
        'model_checkpoint_path: "ckpt-24"')
