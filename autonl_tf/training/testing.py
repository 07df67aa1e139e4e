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
    from autonl_tf.training.config import load_config

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


def main_command(binary: str, *args: str) -> list[str]:
    """``[sys.executable, <repo>/<binary>, *args]``."""
    return [sys.executable, str(REPO_ROOT / binary), *args]
