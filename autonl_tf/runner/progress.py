"""Console progress (throughput, ETA) and TensorBoard scalars for the training driver."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

__all__ = ["ThroughputMeter", "format_duration", "format_logs", "scalar_summary", "write_scalars"]


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``'1:02:05'``; ``'?'`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"


def format_logs(logs: Mapping[str, float]) -> str:
    """``{'loss': 2.3, 'top1': 0.25}`` -> ``'loss 2.3000 | top1 0.2500'``."""
    return " | ".join(f"{name} {_format_value(value)}" for name, value in logs.items())


class ThroughputMeter:
    """Steps/s and images/s over a window, and the ETA of the remaining steps.

    The clock starts at the first `update` after `start`, so that the first chunk (which includes
    tracing and XLA compilation) does not distort the rate.
    """

    def __init__(self, total_steps: int, global_batch_size: int | None = None):
        self.total_steps = total_steps
        self.global_batch_size = global_batch_size
        self._window_start: tuple[int, float] | None = None
        self._run_start: tuple[int, float] | None = None
        self.steps_per_second: float | None = None

    def start(self, step: int) -> None:
        """Marks the step where timing begins (after the first, compiling chunk)."""
        now = time.perf_counter()
        self._window_start = (step, now)
        if self._run_start is None:
            self._run_start = (step, now)

    def update(self, step: int) -> None:
        """Closes the current window at ``step``; the rate is that window's."""
        now = time.perf_counter()
        if self._window_start is None:
            self.start(step)
            return
        start_step, start_time = self._window_start
        if step > start_step and now > start_time:
            self.steps_per_second = (step - start_step) / (now - start_time)
        self._window_start = (step, now)

    @property
    def images_per_second(self) -> float | None:
        if self.steps_per_second is None or not self.global_batch_size:
            return None
        return self.steps_per_second * self.global_batch_size

    def average_images_per_second(self, step: int) -> float | None:
        """Images/s from the first timed step to ``step`` (compilation excluded)."""
        if self._run_start is None or not self.global_batch_size:
            return None
        start_step, start_time = self._run_start
        elapsed = time.perf_counter() - start_time
        if step <= start_step or elapsed <= 0:
            return None
        return (step - start_step) * self.global_batch_size / elapsed

    def eta_seconds(self, step: int) -> float | None:
        if not self.steps_per_second:
            return None
        return max(0, self.total_steps - step) / self.steps_per_second


# TensorBoard's scalar-plugin metadata, built here so that writing scalars does not import the
# `tensorboard` package (pinned in pyproject.toml for viewing the curves, but TensorFlow 2.21 does
# not require it); the event files are the same as tf.summary.scalar writes.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def scalar_summary(name: str, value, step: int | None = None) -> None:
    """`tf.summary.scalar` without importing tensorboard; use under ``writer.as_default()``."""
    tf.summary.write(name, tf.cast(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def write_scalars(writer, step: int, scalars: Mapping[str, float]) -> None:
    """Writes ``scalars`` at ``step`` with a tf.summary writer (no-op writers are fine)."""
    with writer.as_default(step=step):
        for name, value in scalars.items():
            scalar_summary(name, float(value))
    writer.flush()
