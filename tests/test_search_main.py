"""search_main.py end to end: outputs, resumption (1 then 2 replicas), the learning check,
bad target, bad space."""

# bazel: size=large timeout=long tags=subprocess,slow

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from autonl_tf.models import resolve_model_spec
from autonl_tf.runner.config import config_module
from autonl_tf.search import SearchCost, space_from_config
from tests.support import programs
from tests.support.training import (
    REPO_ROOT,
    main_command,
    small_embedded_overrides,
    subprocess_env,
    to_flags,
)

pytestmark = pytest.mark.slow

# A config file of its own: the demo search with two searchable stages (a small graph).
CONFIG_FILE = textwrap.dedent('''
    from autonl_tf.runner.config import config_module

    search = config_module("search")


    def get_config():
        config = search.get_config("demo")
        stages = config.search_space.stages
        config.search_space.stages = [stages[0], stages[1], stages[2]]
        {extra}
        return config
''')


def _write_config(directory, extra: str = "") -> str:
    path = os.path.join(directory, "search_test.py")
    with open(path, "w") as f:
        f.write(CONFIG_FILE.format(extra=extra))
    return path


def _micro_range() -> tuple[int, int]:
    config = config_module("search").get_config("demo")
    stages = config.search_space.stages
    config.search_space.stages = [stages[0], stages[1], stages[2]]
    space = space_from_config(config.search_space)
    return SearchCost(space, 32, 10, 0.25).feasible_range()


def _run(*args: str) -> subprocess.CompletedProcess:
    return programs.run(main_command("search_main.py", *args), cwd=REPO_ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def data_dir(embedded_data_dir):
    return embedded_data_dir


def test_search_writes_outputs_and_resumes_on_two_replicas(tmp_path, data_dir):
    low, high = _micro_range()
    target = low + 0.6 * (high - low)
    model_dir = str(tmp_path / "search")
    common = [f"--config={_write_config(str(tmp_path))}", f"--model_dir={model_dir}",
              f"--target_flops={target}", "--train_batch_size=8", "--iterations_per_loop=2",
              *to_flags({**small_embedded_overrides(data_dir),
                         "train.checkpoint_every_steps": 2, "train.log_every_steps": 2,
                         "eval.every_steps": 2, "eval.batch_size": 50, "eval.steps": 2,
                         # 2 warm-up steps learn nothing: this test is about the outputs.
                         "search.stop_if_not_learning": False})]
    first = _run(*common, "--train_steps=4")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "started at step 0" in first.stdout
    for name in ("arch.txt", "search_summary.json", "search_history.json", "search.png",
                 "config.json", "ckpt-4.index"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    assert any(f.startswith("events") for f in os.listdir(os.path.join(model_dir, "train")))
    with open(os.path.join(model_dir, "search.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # arch.txt is what train_main.py --arch reads; its profiled MACs are the summary's.
    spec = resolve_model_spec(os.path.join(model_dir, "arch.txt"))
    with open(os.path.join(model_dir, "search_summary.json")) as f:
        summary = json.load(f)
    assert spec.cost(32, 10, 0.25).macs == summary["macs"] == summary["expected_macs"]
    assert summary["step"] == 4 and summary["target_macs"] == pytest.approx(target)
    assert summary["feasible_range"] == [low, high]
    searchable = [b for b in summary["blocks"] if b["searchable"]]
    assert searchable and all(b["thresholds"] and b["scores"] for b in searchable)
    # How well the supernet learns: held-out top-1 of the current child, at the end of the
    # warm-up and at the end; printed by the command too.
    for key in ("supernet_heldout_top1", "supernet_heldout_top1_after_warmup",
                "supernet_train_top1"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["heldout"][-1]["step"] == 4 and summary["heldout_images"] > 0
    assert summary["supernet_heldout_top1_after_warmup"] == next(
        row["top1"] for row in summary["heldout"] if row["step"] >= summary["warmup_steps"])
    assert "supernet held-out top-1" in first.stdout
    # TensorBoard: each threshold's gradient in two parts, zero in the warm-up (step 2), and
    # the cross-entropy's part non-zero once the thresholds train (step 4).
    parts = _threshold_gradient_scalars(os.path.join(model_dir, "train"))
    blocks = {f"block_{b['index']:02d}" for b in summary["blocks"] if b["searchable"]}
    assert parts and {tag.split("/")[2] for tag, _ in parts} == blocks
    for part in ("cross_entropy", "cost"):
        at = {step: values for (p, step), values in _by_part_and_step(parts).items() if p == part}
        assert set(at) == {2, 4}, (part, sorted(at))
        assert not np.any(at[2]) and np.any(at[4]), (part, at)

    # Same command, more steps, now on 2 CPU replicas: resumes at step 4 and extends the curve.
    second = _run(*common, "--train_steps=6", "--num_cpu_replicas=2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "searched to step 6 (started at step 4)" in second.stdout
    with open(os.path.join(model_dir, "search_history.json")) as f:
        steps = [row["step"] for row in json.load(f)["rows"]]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 6 and 4 in steps


def _threshold_gradient_scalars(log_dir: str) -> dict[tuple[str, int], float]:
    """{(tag, step): value} of the 'threshold_gradient/...' scalars in a TensorBoard dir."""
    from tensorflow.core.util import event_pb2

    values = {}
    for name in os.listdir(log_dir):
        for record in tf.data.TFRecordDataset(os.path.join(log_dir, name)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag.startswith("threshold_gradient/"):
                    scalar = tf.make_ndarray(value.tensor) if value.HasField("tensor") \
                        else value.simple_value
                    values[(value.tag, event.step)] = float(scalar)
    return values


def _by_part_and_step(scalars: dict) -> dict[tuple[str, int], np.ndarray]:
    grouped: dict = {}
    for (tag, step), value in sorted(scalars.items()):
        grouped.setdefault((tag.split("/")[1], step), []).append(value)
    return {key: np.array(values) for key, values in grouped.items()}


def test_a_supernet_at_chance_stops_at_the_end_of_its_warmup(tmp_path, data_dir):
    """A learning rate of ~0 leaves the supernet at chance: the search stops at the end of the
    warm-up with exit 4 and one line saying what it measured and what to try, writes no
    arch.txt, stops again when rerun, and goes on only when told to."""
    model_dir = str(tmp_path / "search")
    common = [f"--config={_write_config(str(tmp_path))}", f"--model_dir={model_dir}",
              "--train_batch_size=8", "--iterations_per_loop=2", "--train_steps=6",
              *to_flags({**small_embedded_overrides(data_dir), "train.lr_per_256": 1e-12,
                         "train.checkpoint_every_steps": 2, "train.log_every_steps": 2,
                         "eval.every_steps": 2, "eval.batch_size": 50, "eval.steps": 4,
                         "search.warmup_fraction": 0.3,
                         # A bar no untrained network reaches (3x chance of 10 classes).
                         "search.min_heldout_top1_vs_chance": 3.0})]
    for attempt in ("first", "rerun"):
        result = _run(*common)
        assert result.returncode == 4, (attempt, result.stderr[-3000:])
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert ("held-out top-1 at the end of the warm-up (step 2)" in errors[0]
                and "below 3x chance (30.0%)" in errors[0]
                and "--config.search.stop_if_not_learning=false" in errors[0]), errors[0]
        assert not os.path.exists(os.path.join(model_dir, "arch.txt")), attempt
        with open(os.path.join(model_dir, "search_summary.json")) as f:
            assert json.load(f)["step"] == 2  # the diagnosis is kept
    going_on = _run(*common, "--config.search.stop_if_not_learning=false")
    assert going_on.returncode == 0, going_on.stderr[-3000:]
    assert "searched to step 6 (started at step 2)" in going_on.stdout
    assert os.path.exists(os.path.join(model_dir, "arch.txt"))


def test_unreachable_target_prints_the_feasible_range(tmp_path):
    low, high = _micro_range()
    result = _run(f"--config={_write_config(str(tmp_path))}", f"--model_dir={tmp_path / 'x'}",
                  f"--target_flops={high * 2}")
    assert result.returncode == 2
    assert "above the largest child" in result.stderr
    assert f"{low:,} to {high:,} MACs" in result.stderr


def test_malformed_search_space_names_the_key(tmp_path):
    config = _write_config(str(tmp_path), extra="config.search_space.stages[1]['stride'] = 3")
    result = _run(f"--config={config}", f"--model_dir={tmp_path / 'x'}")
    assert result.returncode == 2
    assert "stages[1].stride=3" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["search.no_such_key", "nosection.x", "model.drop_connect_rate",
                                 "model.arch", "train.use_ema", "eval.use_ema",
                                 "search.space_variant"])
def test_keys_the_search_does_not_use_are_rejected(tmp_path, key):
    """Unknown keys and keys of the training config that the search ignores: exit 2, one line
    naming the key, nothing written."""
    model_dir = tmp_path / "x"
    result = _run("--config=search:demo", f"--model_dir={model_dir}", f"--config.{key}=1")
    assert result.returncode == 2, result.stderr[-2000:]
    assert key in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines()
                if line.strip() and "cuInit" not in line and "cuda" not in line.lower()
                and not line.startswith(("I0000", "W0000", "E0000", "WARNING: All log"))]) == 1
    assert not model_dir.exists()
