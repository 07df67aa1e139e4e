"""Small shared pieces for the training tests: a tiny config, a small embedded set, subprocesses.

Tiny = a 2-block network at width 0.25 on 32-px images, batch 8: a training step takes a few ms
on a laptop CPU, so the tests exercise the real recipe and input pipeline quickly.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

import ml_collections

__all__ = [
    "REPO_ROOT",
    "TINY_ARCH",
    "main_command",
    "small_embedded_overrides",
    "subprocess_env",
    "to_flags",
    "tiny_config",
    "tiny_overrides",
]

# Not resolve(): under Bazel the runfiles tree (symlinks) is the root that holds the binaries.
REPO_ROOT = pathlib.Path(os.path.abspath(__file__)).parents[2]
TINY_ARCH = "r1_k3_s11_e1_i32_o16_sw r1_k3_s22_e3_i16_o24_sw_nonlocal0.25"

# A 256 + 64 image embedded set (4 shards), built in seconds.
_SMALL_EMBEDDED = {"num_train": 256, "num_eval": 64, "num_train_shards": 2,
                   "num_eval_shards": 1}


def small_embedded_overrides(data_dir: str) -> dict[str, Any]:
    """Config overrides selecting the small embedded set cached under ``data_dir``."""
    overrides: dict[str, Any] = {"data.data_dir": str(data_dir)}
    overrides.update({f"data.embedded.{k}": v for k, v in _SMALL_EMBEDDED.items()})
    return overrides


def tiny_overrides(data_dir: str, train_steps: int = 8, **extra: Any) -> dict[str, Any]:
    """Overrides of the 'demo' config for a tiny, fast run on the small embedded set."""
    overrides = {
        "model.arch": TINY_ARCH,
        "model.width_multiplier": 0.25,
        "data.image_size": 32,
        "data.deterministic": True,
        "train.batch_size": 8,
        "train.train_steps": train_steps,
        "train.steps_per_loop": 2,
        "train.log_every_steps": 2,
        "train.checkpoint_every_steps": 4,
        "train.warmup_epochs": 0.0,
        "eval.batch_size": 16,
        **small_embedded_overrides(data_dir),
    }
    overrides.update({key.replace("__", "."): value for key, value in extra.items()})
    return overrides


def tiny_config(data_dir: str, train_steps: int = 8,
                **extra: Any) -> ml_collections.ConfigDict:
    """The 'demo' config shrunk by `tiny_overrides` (extra keys as ``train__seed=1``)."""
    from autonl_tf.runner.config import load_config

    return load_config("demo", tiny_overrides(data_dir, train_steps, **extra))


def to_flags(overrides: Mapping[str, Any]) -> list[str]:
    """``{'train.batch_size': 8}`` -> ``['--config.train.batch_size=8']``."""
    def text(value):
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)
    return [f"--config.{key}={text(value)}" for key, value in overrides.items()]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running the repo's binaries: PYTHONPATH=repo root, quiet TensorFlow."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def main_command(program: str, *args: str) -> list[str]:
    """``[sys.executable, -m, autonl_tf.<program>, *args]`` (``program``: 'train_main', ...;
    a trailing '.py' is dropped): the package's module, as the pipeline starts it."""
    return [sys.executable, "-m", f"autonl_tf.{program.removesuffix('.py')}", *args]


def kill_drill(args: list[str], model_dir: str, num_kills: int, *, seed: int = 0,
               max_delay_s: float = 2.0, log_dir: str | None = None,
               timeout_s: float = 300.0) -> list[dict]:
    """kill -9 ``train_main.py <args>`` ``num_kills`` times at random moments, rerunning each time.

    Every run is killed a random 0..max_delay_s seconds after it trains (its first step log or
    checkpoint line, so that every run makes progress), which with frequent checkpoints often lands inside a
    checkpoint save. Checks, for every rerun, that it resumed from the last complete checkpoint
    the killed run left (the one named by <model_dir>/checkpoint) and removed the ``_temp``
    directories of interrupted saves. Returns one record per kill: {'kill', 'checkpoint_step',
    'temp_dirs', 'resumed_step'} (resumed_step: where the next run started).

    Raises:
      AssertionError: a rerun did not resume from the last complete checkpoint, or a
        ``_temp`` directory survived a rerun.
    """
    import random
    import re
    import signal
    import tempfile
    import time

    import tensorflow as tf

    from tests.support import programs

    rng = random.Random(seed)
    log_dir = log_dir or tempfile.mkdtemp(prefix="kill_drill_")
    # Training is running (not just resumed and compiling): a log or checkpoint of this run.
    started = re.compile(r"step \d+/\d+ \(|Saved checkpoint")
    resumed = re.compile(r"Resumed from checkpoint \S*ckpt-(\d+) at step (\d+)")
    records: list[dict] = []
    for kill in range(num_kills + 1):
        log_path = os.path.join(log_dir, f"run{kill}.log")
        previous = records[-1] if records else None
        with open(log_path, "w") as log:
            proc = programs.Popen(main_command("train_main.py", *args), cwd=REPO_ROOT,
                                  env=subprocess_env(), stdout=log, stderr=log)
            try:
                deadline = time.time() + timeout_s
                while kill < num_kills:
                    if proc.poll() is not None:
                        raise AssertionError(f"run {kill} ended before it was killed: "
                                             f"{open(log_path).read()[-2000:]}")
                    if started.search(open(log_path).read()):
                        time.sleep(rng.uniform(0.0, max_delay_s))
                        proc.send_signal(signal.SIGKILL)
                        break
                    if time.time() > deadline:
                        raise AssertionError(f"run {kill} did not start training in time")
                    time.sleep(0.02)
                proc.wait(timeout=timeout_s)
            finally:
                proc.kill()
                proc.wait()
        text = open(log_path).read()
        if previous is not None:
            match = resumed.search(text)
            expected = previous["checkpoint_step"]
            got = int(match[1]) if match else None
            if got != expected:
                raise AssertionError(f"run {kill} resumed from step {got}, but the last complete "
                                     f"checkpoint was {expected}: {text[-2000:]}")
            previous["resumed_step"] = got
            for temp_dir in previous["temp_dirs"]:
                # Removed before the resume (logged), whether or not this run is killed later.
                if f"{temp_dir}, left by a checkpoint save that was interrupted" not in text:
                    raise AssertionError(f"run {kill} did not remove {temp_dir}: {text[-2000:]}")
        if kill == num_kills:
            if proc.returncode != 0:
                raise AssertionError(f"the final run failed: {text[-2000:]}")
            leftovers = tf.io.gfile.glob(os.path.join(model_dir, "*_temp"))
            if leftovers:
                raise AssertionError(f"temporary checkpoint directories left: {leftovers}")
            break
        latest = tf.train.latest_checkpoint(model_dir)
        records.append({
            "kill": kill,
            "checkpoint_step": int(re.search(r"ckpt-(\d+)$", latest)[1]) if latest else None,
            "temp_dirs": sorted(os.path.basename(p) for p in
                                tf.io.gfile.glob(os.path.join(model_dir, "*_temp"))),
            "resumed_step": None,
        })
    return records
