"""Batch-1 TFLite latency of AutoNL-S/L next to MobileNetV2 and EfficientNet-B0 (LiteRT, CPU).

    python benchmarks/tflite_latency.py                       # about 1 min on 2 cores
    python benchmarks/tflite_latency.py --threads=1 --modes=float32,int8,dynamic_int8

Every network is converted the same way in the same run (`autonl_tf.export.convert_to_tflite`:
builtin ops only, batch 1, float32 input/output), in float32 and full-integer int8, and timed
with the LiteRT interpreter (`ai_edge_litert`, default op resolver, so XNNPACK where it applies)
at 1 and 2 threads. The --num_runs timed invocations of each model are taken round-robin over
all models (--rounds rounds, each after 2 untimed runs) so that load from other processes
affects them alike. Two statistics are printed: the fastest run, the least disturbed by such load (the one to
quote on a shared machine), and the median. Weights are random (latency does not depend on
their values); the int8 models are calibrated on a few synthetic images, enough for latency,
not for accuracy.

The int8 mode is measured in both ways of computing LightNL's products of two activations,
side by side (`autonl_tf.export.modes.LIGHTNL_PRODUCTS`): column ``int8`` with the products in
int8 inside XNNPACK (the export's default), ``int8_islands`` with them in float32 between
DEQUANTIZE and QUANTIZE (its fallback); networks without LightNL have one int8 model, shown in
both columns. --lightnl_products picks the variants.

Reported: latency, its ratio to MobileNetV2 in the same mode and thread count, the .tflite size,
the number of XNNPACK delegate partitions of each model (`autonl_tf.export.xnnpack_partitions`:
1 when the delegate runs the whole graph), int8 / float32 per network (whether int8 pays on this
CPU), and the share of AutoNL-L latency spent in its LightNL blocks, measured as
1 - latency(AutoNL-L without its LightNL blocks) / latency(AutoNL-L), where the LightNL-free
network is the same architecture with every ``nonlocal`` token removed
(`benchmarks/lightnl_blocks.py` times the blocks one by one); then the machine (CPU model, the
ISA flags that decide whether int8 is faster than float32, such as avx512_vnni / avxvnni on x86
and asimddp on ARM, LiteRT version). The results go to benchmarks/results/tflite_latency.json
(`benchmarks/record.py`: the figures plus command, date, machine; --output_json for another
path): {"measurements": [...], "lightnl_share": {column: {threads: share}},
"int8_over_float32": {column: {model: {threads: ratio}}}, "machine": ...}.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from autonl_tf.export import convert_to_tflite, tflite_op_codes, xnnpack_partitions  # noqa: E402
from autonl_tf.models import ModelSpec, build_model, resolve_model_spec  # noqa: E402
from benchmarks import record  # noqa: E402

REFERENCE = "mobilenet_v2"
MODEL_NAMES = ("autonl_s", "autonl_l", "autonl_l_no_lightnl", "mobilenet_v2", "efficientnet_b0")

_MODELS = flags.DEFINE_list("models", list(MODEL_NAMES), f"Subset of {', '.join(MODEL_NAMES)}.")
_MODES = flags.DEFINE_list("modes", ["float32", "int8"],
                           "TFLite modes (see autonl_tf.export.TFLITE_MODES).")
_THREADS = flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input resolution.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.")
# 200 runs in 10 rounds: on the shared 2-core machine the fastest of 50 runs in 5 rounds put the
# LightNL share of AutoNL-L int8 anywhere between 11.8% and 20.3% in runs of the same code; the
# timed runs cost a few seconds next to the minute of conversions.
_NUM_RUNS = flags.DEFINE_integer("num_runs", 200, "Timed invocations per measurement.")
_ROUNDS = flags.DEFINE_integer("rounds", 10, "Round-robin rounds the timed runs are split into.")
_NUM_WARMUP = flags.DEFINE_integer("num_warmup_runs", 5, "Untimed invocations first.")
_NUM_CALIBRATION = flags.DEFINE_integer(
    "num_calibration_images", 4, "Synthetic images to calibrate int8 (conversion cost grows "
    "with it; latency does not).")
_PRODUCTS = flags.DEFINE_list(
    "lightnl_products", ["int8", "float32"], "For the int8 mode: how LightNL's products are "
    "computed, each its own column (int8: 'int8', float32 islands: 'int8_islands').")
_OUTPUT_JSON = flags.DEFINE_string(
    "output_json", None, "Where to write the results (default "
    "benchmarks/results/tflite_latency.json).")

# int8 column -> how its LightNL products are computed (`LIGHTNL_PRODUCTS`).
INT8_VARIANTS = {"int8": "int8", "int8_islands": "float32"}


def columns_of(modes: list[str], products: list[str]) -> list[tuple[str, str, str | None]]:
    """(column, TFLite mode, LightNL products) of every measured column."""
    columns = []
    for mode in modes:
        if mode != "int8":
            columns.append((mode, mode, None))
        else:
            columns += [(name, mode, computed_in) for name, computed_in in INT8_VARIANTS.items()
                        if computed_in in products]
    return columns


@dataclasses.dataclass
class Measurement:
    model: str
    mode: str  # the column: a TFLite mode, or an int8 variant (`INT8_VARIANTS`)
    threads: int
    latency_ms: float  # median
    min_latency_ms: float
    size_mb: float
    delegate_partitions: int  # XNNPACK partitions (1: the delegate runs the whole graph)
    undelegated_ops: list[str]
    lightnl_products: str | None = None  # int8 columns: how LightNL's products are computed


def without_lightnl(spec: ModelSpec) -> ModelSpec:
    """The same network with every LightNL block removed (the codec's nonlocal token)."""
    blocks = tuple(dataclasses.replace(b, nonlocal_ratio=None, nonlocal_stride=1)
                   for b in spec.blocks)
    return dataclasses.replace(spec, name=f"{spec.name}_no_lightnl", blocks=blocks)


def build(name: str, image_size: int, num_classes: int) -> tuple[keras.Model, str]:
    """(model with random weights and logits output, one-line description)."""
    if name.startswith("autonl"):
        spec = resolve_model_spec(name.removesuffix("_no_lightnl"))
        if name.endswith("_no_lightnl"):
            spec = without_lightnl(spec)
        cost = spec.cost(image_size, num_classes)
        return (build_model(spec, num_classes, image_size),
                f"{cost.macs / 1e6:.0f}M MACs, {cost.params / 1e6:.2f}M params (autonl_tf.cost)")
    shape = (image_size, image_size, 3)
    common = dict(weights=None, input_shape=shape, classes=num_classes,
                  classifier_activation=None)
    if name == "mobilenet_v2":
        model = keras.applications.MobileNetV2(**common)
    elif name == "efficientnet_b0":
        model = keras.applications.EfficientNetB0(**common)
    else:
        raise app.UsageError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return model, f"{model.count_params() / 1e6:.2f}M weights (keras.applications)"


class _Timer:
    """One interpreter with a fixed random input; `run` appends invocation times (ms)."""

    def __init__(self, model_bytes: bytes, threads: int, warmup: int):
        self.interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
        self.interpreter.allocate_tensors()
        (detail,) = self.interpreter.get_input_details()
        rng = np.random.default_rng(0)
        if np.issubdtype(detail["dtype"], np.integer):
            image = rng.integers(-128, 127, detail["shape"]).astype(detail["dtype"])
        else:
            image = rng.normal(size=detail["shape"]).astype(detail["dtype"])
        self.interpreter.set_tensor(detail["index"], image)
        for _ in range(warmup):
            self.interpreter.invoke()
        self.timings_ms: list[float] = []

    def run(self, count: int, warmup: int = 2) -> None:
        for _ in range(warmup):  # caches and thread pools after the other models ran
            self.interpreter.invoke()
        for _ in range(count):
            start = time.perf_counter()
            self.interpreter.invoke()
            self.timings_ms.append((time.perf_counter() - start) * 1e3)


def measure_interleaved(timers: dict, total_runs: int, rounds: int = 5) -> None:
    """Round-robin over all models so that load from other processes hits them alike (a timer
    listed under several keys runs once per round)."""
    per_round = max(1, total_runs // rounds)
    unique = list({id(timer): timer for timer in timers.values()}.values())
    for _ in range(rounds):
        for timer in unique:
            timer.run(per_round)


def _latency_table(results: list[Measurement], modes, threads, statistic: str) -> None:
    by_key = {(r.model, r.mode, r.threads): r for r in results}
    models = list(dict.fromkeys(r.model for r in results))
    columns = [f"{mode} {t}T" for mode in modes for t in threads]
    size_width = max(12, *(len(mode) + 5 for mode in modes))
    parts_width = max(14, *(len(mode) + 8 for mode in modes))
    print(f"{'model':<22}" + "".join(f"{c:>17}" for c in columns)
          + "".join(f"{mode + ' MB':>{size_width}}" for mode in modes)
          + "".join(f"{mode + ' parts':>{parts_width}}" for mode in modes))
    for model in models:
        cells = []
        for mode in modes:
            for t in threads:
                r, ref = by_key.get((model, mode, t)), by_key.get((REFERENCE, mode, t))
                if r is None:
                    cells.append("-")
                    continue
                value = getattr(r, statistic)
                ratio = f" ({value / getattr(ref, statistic):.2f}x)" if ref else ""
                cells.append(f"{value:.2f}{ratio}")
        sizes = [by_key.get((model, mode, threads[0])) for mode in modes]
        print(f"{model:<22}" + "".join(f"{c:>17}" for c in cells)
              + "".join(f"{x.size_mb:>{size_width}.2f}" if x else f"{'-':>{size_width}}"
                        for x in sizes)
              + "".join(f"{x.delegate_partitions:>{parts_width}}" if x else f"{'-':>{parts_width}}"
                        for x in sizes))


def _print_report(results: list[Measurement], notes: dict[str, str], modes, threads) -> None:
    by_key = {(r.model, r.mode, r.threads): r for r in results}
    models = list(dict.fromkeys(r.model for r in results))
    print("\nBatch-1 latency, LiteRT interpreter, fastest run in ms (ratio to MobileNetV2); "
          "'parts': XNNPACK delegate partitions:")
    _latency_table(results, modes, threads, "min_latency_ms")
    print("\nSame, median run in ms (more sensitive to load from other processes):")
    _latency_table(results, modes, threads, "latency_ms")
    print()
    for model in models:
        print(f"  {model}: {notes[model]}")
    undelegated = [r for r in results if r.undelegated_ops and r.threads == threads[0]]
    for r in undelegated:
        print(f"  {r.model} {r.mode}: not delegated: {', '.join(r.undelegated_ops)}")
    ratios = int8_over_float32(results)
    if ratios:
        print("\nint8 / float32, fastest runs (below 1: int8 faster on this CPU):")
        for column, per_model in ratios.items():
            cells = ", ".join(f"{model} " + "/".join(f"{ratio:.2f}" for ratio in per_t.values())
                              for model, per_t in per_model.items())
            print(f"  {column:<13} {cells}  ({'/'.join(str(t) for t in threads)} threads)")
    shares = lightnl_shares(results)
    if shares:
        print("\nShare of AutoNL-L latency in LightNL = 1 - t(AutoNL-L without LightNL) / "
              "t(AutoNL-L):")
        for mode, per_thread in shares.items():
            for t, share in per_thread.items():
                full = by_key[("autonl_l", mode, t)]
                ablated = by_key[("autonl_l_no_lightnl", mode, t)]
                print(f"  {mode:<13} {t} thread(s): {share['fastest']:6.1%} by fastest run "
                      f"({full.min_latency_ms:.2f} vs {ablated.min_latency_ms:.2f} ms), "
                      f"{share['median']:6.1%} by median ({full.latency_ms:.2f} vs "
                      f"{ablated.latency_ms:.2f} ms)")


def int8_over_float32(results: list[Measurement]) -> dict[str, dict[str, dict[int, float]]]:
    """{int8 column: {model: {threads: int8 / float32 fastest latency}}} (< 1: int8 faster)."""
    by_key = {(r.model, r.mode, r.threads): r for r in results}
    ratios: dict[str, dict[str, dict[int, float]]] = {}
    for (model, mode, t), r in by_key.items():
        reference = by_key.get((model, "float32", t))
        if mode in INT8_VARIANTS and reference:
            ratios.setdefault(mode, {}).setdefault(model, {})[t] = (
                r.min_latency_ms / reference.min_latency_ms)
    return ratios


def lightnl_shares(results: list[Measurement]) -> dict[str, dict[int, dict[str, float]]]:
    """{mode: {threads: {'fastest': share, 'median': share}}} of AutoNL-L latency in LightNL."""
    by_key = {(r.model, r.mode, r.threads): r for r in results}
    shares: dict[str, dict[int, dict[str, float]]] = {}
    for (model, mode, t), full in by_key.items():
        ablated = by_key.get(("autonl_l_no_lightnl", mode, t))
        if model == "autonl_l" and ablated:
            shares.setdefault(mode, {})[t] = {
                "fastest": 1 - ablated.min_latency_ms / full.min_latency_ms,
                "median": 1 - ablated.latency_ms / full.latency_ms}
    return shares


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    size, num_classes = _IMAGE_SIZE.value, _NUM_CLASSES.value
    threads = [int(t) for t in _THREADS.value]
    columns = columns_of(_MODES.value, _PRODUCTS.value)
    calibration = np.random.default_rng(1).normal(
        size=(_NUM_CALIBRATION.value, size, size, 3)).astype(np.float32)
    notes: dict[str, str] = {}
    sizes: dict[tuple[str, str], float] = {}
    partitions = {}
    products_of: dict[tuple[str, str], str | None] = {}
    timers: dict[tuple[str, str, int], _Timer] = {}
    started = time.time()
    for name in _MODELS.value:
        keras.utils.set_random_seed(0)
        model, notes[name] = build(name, size, num_classes)
        converted: dict[str, bytes] = {}
        for column, mode, products in columns:
            converted_at = time.time()
            if products == "float32" and "int8" in converted and not _has_products(
                    converted["int8"]):
                # No LightNL: the islands variant is the same model; time it once.
                sizes[name, column] = sizes[name, "int8"]
                partitions[name, column] = partitions[name, "int8"]
                products_of[name, column] = None
                for t in threads:
                    timers[name, column, t] = timers[name, "int8", t]
                continue
            model_bytes = convert_to_tflite(model, size, mode, calibration,
                                            lightnl_products=products or "int8")
            converted[column] = model_bytes
            sizes[name, column] = len(model_bytes) / 1e6
            partitions[name, column] = xnnpack_partitions(model_bytes)
            products_of[name, column] = products if _has_products(model_bytes) else None
            print(f"{name} {column}: converted in {time.time() - converted_at:.1f}s, "
                  f"{sizes[name, column]:.2f} MB, {partitions[name, column].partitions} XNNPACK "
                  "partition(s)", flush=True)
            for t in threads:
                timers[name, column, t] = _Timer(model_bytes, t, _NUM_WARMUP.value)
        del model
        keras.backend.clear_session()
    measure_interleaved(timers, _NUM_RUNS.value, _ROUNDS.value)
    results = [Measurement(name, column, t, statistics.median(timer.timings_ms),
                           min(timer.timings_ms), sizes[name, column],
                           partitions[name, column].partitions,
                           list(partitions[name, column].undelegated),
                           products_of[name, column])
               for (name, column, t), timer in timers.items()]
    column_names = [column for column, _, _ in columns]
    _print_report(results, notes, column_names, threads)
    load = os.getloadavg()[0]
    machine = record.machine()
    print(f"\n({size}x{size}, {num_classes} classes, random weights, {_NUM_RUNS.value} timed "
          f"runs, load average {load:.1f}; total {time.time() - started:.0f}s)")
    print(f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, ISA "
          f"{' '.join(machine['isa_flags'])}; LiteRT {machine['versions']['ai-edge-litert']}")
    path = record.write_result("tflite_latency", {
        "image_size": size, "num_classes": num_classes, "num_runs": _NUM_RUNS.value,
        "columns": {column: {"mode": mode, "lightnl_products": products}
                    for column, mode, products in columns},
        "measurements": [dataclasses.asdict(r) for r in results],
        "lightnl_share": lightnl_shares(results),
        "int8_over_float32": int8_over_float32(results),
        "load_average": load, "cpus": os.cpu_count()}, path=_OUTPUT_JSON.value)
    print(f"results: {path}")


def _has_products(model_bytes: bytes) -> bool:
    return any(code.name == "BATCH_MATMUL" for code in tflite_op_codes(model_bytes))


if __name__ == "__main__":
    app.run(main)
