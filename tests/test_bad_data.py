"""Damaged data, built for real, as training, evaluation and export meet it.

Each case writes a real shard (builder-made JPEG records, then one record damaged): a corrupt
JPEG, labels 0 and num_classes + 1 (labels are 1-based), a shard cut mid-record, and a record
that is not a tf.train.Example. Expected: one `DataError` line naming the shard file, the
record and the field (exit 2 from the commands), or with data.skip_corrupt a completed run
that reports the skipped records per shard.
"""
# bazel: suite=data

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from autonl_tf import data
from autonl_tf.data import build_tfrecords, diagnose
from autonl_tf.recipe import task
from autonl_tf.runner import experiment
from tests.support import programs
from tests.support import training as testing
from tests.support.training import REPO_ROOT, main_command, subprocess_env, to_flags

NUM_CLASSES = 3
DAMAGED_SHARD = "train-00001-of-00002"


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> str:
    """A folder of 3 classes x 10 JPEG/PNG images -> builder-made train and validation shards."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("images")
    for c, name in enumerate(["circle", "square", "star"]):
        os.makedirs(folder / name)
        for i in range(10):
            array = rng.integers(0, 80, (36, 40, 3), dtype=np.uint8)
            array[..., c] += 150  # the class is the dominant colour
            Image.fromarray(array).save(folder / name / f"{i}.{'png' if i % 3 else 'jpg'}")
    out = str(tmp_path_factory.mktemp("shards"))
    build_tfrecords.build(str(folder), out, "train", 2, num_workers=1)
    build_tfrecords.build(str(folder), out, "validation", 1, num_workers=1)
    return out


def _records(path: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def _write(path: str, serialized: list[bytes]) -> None:
    with tf.io.TFRecordWriter(path) as f:
        for record in serialized:
            f.write(record)


def _with_field(serialized: bytes, **changes) -> bytes:
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    if "label" in changes:
        feature["image/class/label"].int64_list.value[:] = [changes["label"]]
    if "encoded" in changes:
        feature["image/encoded"].bytes_list.value[:] = [changes["encoded"]]
    return example.SerializeToString()


def damaged_copy(src: str, dst: str, how: str, shard: str = DAMAGED_SHARD) -> tuple[str, int]:
    """Copy of the shards with `shard` damaged `how`; returns (data_dir, damaged record)."""
    shutil.copytree(src, dst)
    path = os.path.join(dst, shard)
    serialized = _records(path)
    index = 2
    if how == "corrupt_jpeg":
        jpeg = io.BytesIO()
        Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 99).save(jpeg, format="JPEG")
        serialized[index] = _with_field(serialized[index], encoded=jpeg.getvalue()[:200])
    elif how == "label_0":
        serialized[index] = _with_field(serialized[index], label=0)
    elif how == "label_too_big":
        serialized[index] = _with_field(serialized[index], label=NUM_CLASSES + 1)
    elif how == "not_an_example":
        serialized[index] = b"\xff\x00 this is not a protocol buffer \x07" * 3
    if how == "truncated":
        blob = open(path, "rb").read()
        sizes = [len(r) + 16 for r in serialized]
        cut = sum(sizes[:3]) + sizes[3] // 2  # in the middle of record 3
        with open(path, "wb") as f:
            f.write(blob[:cut])
        return dst, 3
    _write(path, serialized)
    return dst, index


CASES = {
    "corrupt_jpeg": "image/encoded",
    "label_0": "image/class/label",
    "label_too_big": "image/class/label",
    "truncated": "TFRecord framing",
    "not_an_example": "tf.train.Example",
}


def _config(data_dir: str, train_steps: int = 4, **extra):
    overrides = testing.tiny_overrides(data_dir, train_steps, **extra)
    overrides = {k: v for k, v in overrides.items() if not k.startswith("data.embedded.")}
    from autonl_tf.runner.config import load_config

    return load_config("demo", overrides)


def _prepared(data_dir: str, **extra):
    return data.prepare(_config(data_dir, **extra).data)


@pytest.mark.parametrize("how", sorted(CASES))
def test_damaged_record_is_one_line_naming_shard_record_and_field(own_data, tmp_path, how):
    data_dir, index = damaged_copy(own_data, str(tmp_path / "d"), how)
    with pytest.raises(data.DataError) as error, diagnose.explain_input_errors():
        for _ in data.build_train_dataset(_prepared(data_dir), 8).take(8):  # > 1 epoch
            pass
    message = str(error.value)
    assert "\n" not in message
    assert f"shard {os.path.join(data_dir, DAMAGED_SHARD)}, record {index}:" in message
    assert CASES[how] in message and "skip_corrupt=true" in message


def test_skip_corrupt_skips_and_counts_per_shard(own_data, tmp_path):
    data_dir, _ = damaged_copy(own_data, str(tmp_path / "d"), "corrupt_jpeg")
    cfg = _prepared(data_dir, data__skip_corrupt=True)
    seen = sum(int(labels.shape[0]) for _, labels in data.build_train_dataset(cfg, 8).take(8))
    assert seen == 64
    assert diagnose.count_damaged_records(cfg, "train") == {DAMAGED_SHARD: 1}


@pytest.mark.slow
def test_training_with_skip_corrupt_reports_skipped_records(own_data, tmp_path):
    data_dir, _ = damaged_copy(own_data, str(tmp_path / "d"), "label_too_big")
    model_dir = str(tmp_path / "m")
    result = task.train_experiment(
        _config(data_dir, data__skip_corrupt=True), model_dir=model_dir,
        strategy=tf.distribute.get_strategy())
    assert result["step"] == 4
    assert result["skipped_records"] == {os.path.join(data_dir, DAMAGED_SHARD): 1}
    events = tf.io.gfile.glob(os.path.join(model_dir, "train", "events.*"))
    tags = {v.tag for e in events for ev in tf.compat.v1.train.summary_iterator(e)
            for v in ev.summary.value}
    assert "data/skipped_records" in tags


def test_demo_config_reads_own_shards_and_writes_nothing_there(own_data):
    before = sorted(os.listdir(own_data))
    resolved = _prepared(own_data)
    assert (resolved.dataset, resolved.num_classes, resolved.data_dir) == ("imagenet", 3, own_data)
    assert resolved.random_flip is False  # the embedded set's flip-safe choice does not carry
    seen = set()
    for _, labels in data.build_train_dataset(resolved, 8).take(8):
        seen.update(labels.numpy().tolist())
    assert seen == {0, 1, 2}  # D's 3 classes, not the embedded set's 10
    assert sorted(os.listdir(own_data)) == before


@pytest.mark.slow
def test_one_model_dir_resumes_across_data_changes_and_failures(own_data, tmp_path):
    """Train on own shards; a run with missing data fails before writing anything; a run
    killed mid-save left a temp dir; the next run, with skip_corrupt, removes it and resumes;
    evaluation writes strict JSON."""
    model_dir = tmp_path / "m"
    first = task.train_experiment(_config(own_data, 2), model_dir=str(model_dir),
                                        strategy=tf.distribute.get_strategy())
    assert first["step"] == 2
    config_text = (model_dir / "config.json").read_text()
    missing = str(tmp_path / "no_such_dir")
    with pytest.raises(data.DataError):
        task.train_experiment(
            _config(own_data, 4, data__dataset="imagenet", data__data_dir=missing,
                    data__num_classes=NUM_CLASSES),
            model_dir=str(model_dir), strategy=tf.distribute.get_strategy())
    assert (model_dir / "config.json").read_text() == config_text

    litter = model_dir / "ckpt-3_temp"
    litter.mkdir()
    (litter / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half a save")
    second = task.train_experiment(_config(own_data, 4, data__skip_corrupt=True),
                                         model_dir=str(model_dir),
                                         strategy=tf.distribute.get_strategy())
    assert (second["initial_step"], second["step"]) == (2, 4) and not litter.exists()
    assert second["skipped_records"] == {}

    experiment.evaluate_experiment(str(model_dir), task=task.ClassifierTask(),
                                   strategy=tf.distribute.get_strategy())

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    text = (model_dir / "eval_results.json").read_text()
    (record,) = json.loads(text, parse_constant=reject)
    assert record["num_nonfinite"] == 0 and record["num_images"] == 30


def _one_error_line(completed: subprocess.CompletedProcess, code: int = 2) -> str:
    assert completed.returncode == code, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, completed.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_commands_exit_2_with_one_line_on_damaged_data(own_data, tmp_path):
    data_dir, index = damaged_copy(own_data, str(tmp_path / "d"), "corrupt_jpeg")
    model_dir = tmp_path / "m"
    args = ["--config=demo", f"--model_dir={model_dir}",
            *to_flags({k: v for k, v in testing.tiny_overrides(data_dir, 6).items()
                       if not k.startswith("data.embedded.")})]
    completed = programs.run(main_command("train_main.py", *args), cwd=REPO_ROOT,
                             env=subprocess_env(), capture_output=True, text=True, timeout=300)
    line = _one_error_line(completed)
    assert f"{DAMAGED_SHARD}, record {index}: image/encoded" in line

    # A good run, then evaluation and export over a damaged validation shard.
    shutil.rmtree(model_dir, ignore_errors=True)
    args = [a.replace(data_dir, own_data) for a in args]
    completed = programs.run(main_command("train_main.py", *args), cwd=REPO_ROOT,
                             env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rerun = programs.run(main_command("train_main.py", *args), cwd=REPO_ROOT,
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.startswith(f"nothing to train: {model_dir} is already at step 6 "
                                   "(train steps 6); checkpoint"), rerun.stdout
    bad_eval, index = damaged_copy(own_data, str(tmp_path / "e"), "label_0",
                                   shard="validation-00000-of-00001")
    completed = programs.run(
        main_command("eval_main.py", f"--model_dir={model_dir}", f"--data_dir={bad_eval}"),
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    line = _one_error_line(completed)
    assert f"validation-00000-of-00001, record {index}: image/class/label" in line
    assert not os.path.exists(os.path.join(model_dir, "eval_results.json"))

    from absl import flags

    from autonl_tf.export import cli

    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["export", f"--model_dir={model_dir}", f"--export_dir={tmp_path / 'x'}",
                 f"--data_dir={bad_eval}", "--tflite=int8", "--num_verify_images=4",
                 "--num_calibration_images=8"])
    assert cli.main(["export"], flag_values) == 2
    assert not (tmp_path / "x").exists()
