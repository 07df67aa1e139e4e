"""The measured latency of a searched network, against the latency table's prediction.

A search under a latency target (search_main.py --target_latency_ms) predicts its child's
latency from the table; `measure_search_child` times the child itself, the way the table was
timed (same TFLite mode, threads and statistic, LiteRT on this machine), and writes the figure
into search_summary.json (`autonl_tf.search.report.record_measured_latency`). A table measured
elsewhere (a phone) cannot be checked here: the summary then says where to time it.
"""

from __future__ import annotations

from collections.abc import Mapping

from autonl_tf.latency.device import this_device
from autonl_tf.latency.timing import Timing, time_tflite_models
from autonl_tf.search.latency_cost import LatencyTable

__all__ = ["measurable_here", "measure_arch_latency", "measure_search_child"]

LOCAL_RUNTIME = "Python interpreter"  # in the runtime string of tables timed by this package


def measurable_here(table: LatencyTable) -> str | None:
    """Why a network cannot be timed here as the table was (None: it can)."""
    runtime = str(table.data.get("runtime", ""))
    if LOCAL_RUNTIME not in runtime or table.device != this_device():
        return (f"not measured: the table was measured with {runtime or 'another runtime'} on "
                f"{table.device} (this machine: {this_device()}); time the exported .tflite "
                "there (docs/latency.md)")
    return None


def measure_arch_latency(arch_file: str, *, image_size: int, num_classes: int,
                         width_multiplier: float, mode: str, threads: int = 1,
                         rounds: int = 20, runs_per_round: int = 50) -> Timing:
    """Builds the architecture (random weights), converts it in ``mode`` and times it."""
    import keras

    from autonl_tf.latency.parts import convert, randomize_batch_norms
    from autonl_tf.models import build_model
    from autonl_tf.models.registry import load_arch_file

    keras.utils.set_random_seed(0)
    model = randomize_batch_norms(build_model(load_arch_file(arch_file), num_classes,
                                              image_size, width_multiplier, dropout_rate=0.0))
    model_bytes = convert(model, image_size, mode)
    return time_tflite_models({"child": model_bytes}, threads, rounds, runs_per_round)["child"]


def measure_search_child(model_dir: str, resolved: Mapping) -> dict:
    """Times a finished latency-target search's arch.txt; returns the updated summary."""
    import os

    from autonl_tf import files
    from autonl_tf.search.report import record_measured_latency

    search = resolved["search"]
    table = LatencyTable.load(str(search["latency_table"]))
    reason = measurable_here(table)
    if reason is not None:
        return record_measured_latency(model_dir, None, reason)
    rounds, runs = 20, 50
    timing = measure_arch_latency(
        os.path.join(model_dir, files.ARCH_FILE), image_size=int(resolved["data"]["image_size"]),
        num_classes=int(resolved["data"]["num_classes"]),
        width_multiplier=float(resolved["model"]["width_multiplier"]), mode=table.mode,
        threads=table.threads, rounds=rounds, runs_per_round=runs)
    return record_measured_latency(
        model_dir, timing.fastest_ms,
        f"LiteRT {table.mode}, {table.threads} thread(s), on this machine: fastest of {rounds} "
        f"rounds x {runs} runs (spread {timing.spread_ms:.4f} ms), random weights")
