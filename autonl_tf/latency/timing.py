"""Batch-1 latency of TFLite models with the LiteRT interpreter, interleaved against noise.

A latency table's entries are differences of a few microseconds between models that run in tens
of microseconds, so every model is timed the same way in the same process: one
`ai_edge_litert` interpreter per model (XNNPACK, the default delegate, at ``threads`` threads),
``warmup`` untimed runs, then ``rounds`` rounds; in each round the models are visited in a fresh
random order, each gets 2 untimed runs (its caches after the other models ran) and
``runs_per_round`` timed runs. Load from other processes then hits every model alike, and the
statistic is the fastest run: the least disturbed one (a median on a shared CPU once measured
6.21 ms and then 0.05 ms for the same model). The spread reported beside it is the median of
the rounds' fastest runs minus the overall fastest: how much a round's load moved it.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Mapping

import numpy as np

__all__ = ["Timing", "litert_version", "time_tflite_models"]


@dataclasses.dataclass(frozen=True)
class Timing:
    """One model's timings, in milliseconds.

    fastest_ms: the fastest timed run over all rounds (the table's statistic).
    spread_ms: median over rounds of each round's fastest run, minus ``fastest_ms``.
    round_fastest_ms: each round's fastest run.
    median_ms: the median of every timed run.
    """

    fastest_ms: float
    spread_ms: float
    round_fastest_ms: tuple[float, ...]
    median_ms: float


def litert_version() -> str:
    """The installed LiteRT (``ai-edge-litert``) version."""
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Model:
    def __init__(self, content: bytes | str, threads: int, warmup: int):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = ({"model_content": content} if isinstance(content, bytes)
                  else {"model_path": content})
        self.interpreter = Interpreter(num_threads=threads, **kwargs)
        self.interpreter.allocate_tensors()
        rng = np.random.default_rng(0)
        for detail in self.interpreter.get_input_details():
            if np.issubdtype(detail["dtype"], np.integer):
                value = rng.integers(-128, 127, detail["shape"]).astype(detail["dtype"])
            else:  # pixel values, as the exported models take them
                value = rng.uniform(0, 255, detail["shape"]).astype(detail["dtype"])
            self.interpreter.set_tensor(detail["index"], value)
        for _ in range(warmup):
            self.interpreter.invoke()
        self.runs: list[float] = []
        self.round_fastest: list[float] = []

    def run(self, count: int) -> None:
        invoke = self.interpreter.invoke
        invoke()
        invoke()
        fastest = float("inf")
        for _ in range(count):
            start = time.perf_counter()
            invoke()
            elapsed = time.perf_counter() - start
            self.runs.append(elapsed)
            fastest = min(fastest, elapsed)
        self.round_fastest.append(fastest)


def time_tflite_models(models: Mapping[str, bytes | str], threads: int = 1, rounds: int = 20,
                       runs_per_round: int = 50, warmup: int = 20, seed: int = 0
                       ) -> dict[str, Timing]:
    """{name: Timing} of TFLite models (flatbuffer bytes or file paths), see the module doc.

    Args:
      models: name -> .tflite bytes or path.
      threads: interpreter threads (XNNPACK's thread pool).
      rounds, runs_per_round: the timed runs are ``rounds * runs_per_round`` per model.
      warmup: untimed runs of each model once loaded.
      seed: of the per-round visiting order.
    """
    if rounds < 1 or runs_per_round < 1:
        raise ValueError("rounds and runs_per_round must be >= 1")
    loaded = {name: _Model(content, threads, warmup) for name, content in models.items()}
    order = list(loaded)
    shuffler = random.Random(seed)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            loaded[name].run(runs_per_round)
    timings = {}
    for name, model in loaded.items():
        fastest = min(model.round_fastest) * 1e3
        timings[name] = Timing(
            fastest_ms=fastest,
            spread_ms=statistics.median(model.round_fastest) * 1e3 - fastest,
            round_fastest_ms=tuple(x * 1e3 for x in model.round_fastest),
            median_ms=statistics.median(model.runs) * 1e3)
    return timings
