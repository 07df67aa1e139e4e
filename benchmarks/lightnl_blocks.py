"""Batch-1 TFLite latency of each LightNL of AutoNL-S/L alone (LiteRT, XNNPACK, one thread).

    python benchmarks/lightnl_blocks.py                     # AutoNL-L, float32 and int8, ~2 min
    python benchmarks/lightnl_blocks.py --model=autonl_s --modes=int8

The profile behind the LightNL share of `benchmarks/tflite_latency.py` (which only sees the
whole network with and without its LightNL blocks). For every LightNL of the network, at the
map size and channels it has at --image_size, two models are converted the same way as the
network (`autonl_tf.export.convert_to_tflite`): image -> 1x1 conv -> LightNL -> 1x1 conv ->
global pool, and the same without the LightNL. The LightNL's cost is the difference of their
fastest runs (timed round-robin over all models, so that load from other processes hits them
alike). Weights are random, the LightNL's BN gamma is set to 0.5 (a fresh block's gamma of 0
makes its branch a constant); int8 is calibrated on a few synthetic images.

The int8 mode is measured twice, side by side (`autonl_tf.export.modes.LIGHTNL_PRODUCTS`):
``int8`` with LightNL's products of two activations in int8 inside XNNPACK (the export's
default), ``int8_islands`` with them in float32 between DEQUANTIZE and QUANTIZE (its fallback);
--lightnl_products picks which. Each int8 LightNL with int8 products is checked as the export
checks it (`check_int8_products`: int8, right-hand zero point 0, delegated, equal to the
reference kernel).

Printed per block: map size, channels, ratio r, stride s, the multiplication order the layer
picks and the MACs of its products (`autonl_tf.cost.lightnl_orders`), and its latency in each
mode; then the sum over the blocks, the op list of the first block's LightNL per int8 variant,
and the machine (CPU model, ISA flags such as avx512_vnni / avxvnni / asimddp that decide
whether int8 is faster than float32, LiteRT version). The figures and the machine go to
benchmarks/results/lightnl_blocks.json (`benchmarks/record.py`; --output_json for another
path).
"""

from __future__ import annotations

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

from autonl_tf import cost  # noqa: E402
from autonl_tf.arch import expand_repeats  # noqa: E402
from autonl_tf.export import check_int8_products, convert_to_tflite, xnnpack_partitions  # noqa: E402
from autonl_tf.layers.lightnl import LightNL  # noqa: E402
from autonl_tf.models import resolve_model_spec  # noqa: E402
from benchmarks import record  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags() -> None:
    # Defined when run as a script only: importing the module (tests) leaves absl's flags alone.
    flags.DEFINE_string("model", "autonl_l", "autonl_s or autonl_l.")
    flags.DEFINE_list("modes", ["float32", "int8"], "TFLite modes.")
    flags.DEFINE_list("lightnl_products", ["int8", "float32"],
                      "For the int8 mode: how LightNL's products are computed, each measured "
                      "as its own column (int8: 'int8', float32 islands: 'int8_islands').")
    flags.DEFINE_string("output_json", None, "Where to write the results (default "
                        "benchmarks/results/lightnl_blocks.json).")
    flags.DEFINE_integer("image_size", 224, "Network input resolution.")
    flags.DEFINE_integer("num_runs", 400, "Timed invocations per model.")
    flags.DEFINE_integer("rounds", 10, "Round-robin rounds.")


def lightnl_blocks(name: str, image_size: int) -> list[tuple[int, int, float, int]]:
    """(map size, channels, ratio, stride) of every LightNL of a published network."""
    spec = resolve_model_spec(name)
    size = -(-image_size // 2)  # the stem
    blocks = []
    for block in expand_repeats(spec.blocks):
        size = -(-size // block.strides[0])
        if block.nonlocal_ratio:
            blocks.append((size, block.output_filters, block.nonlocal_ratio, block.nonlocal_stride))
    return blocks


def block_model(size: int, channels: int, ratio: float, stride: int, with_lightnl: bool
                ) -> keras.Model:
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(channels, 1)(inputs)
    if with_lightnl:
        layer = LightNL(ratio, stride)
        x = layer(x)
        layer.bn.gamma.assign(np.full([channels], 0.5, np.float32))
    x = keras.layers.Conv2D(channels, 1)(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


# int8 variant name -> how its LightNL products are computed (`LIGHTNL_PRODUCTS`).
INT8_VARIANTS = {"int8": "int8", "int8_islands": "float32"}


def variants(modes: list[str], products: list[str]) -> list[tuple[str, str, str | None]]:
    """(column name, TFLite mode, LightNL products) of every measured column."""
    columns = []
    for mode in modes:
        if mode != "int8":
            columns.append((mode, mode, None))
            continue
        for name, computed_in in INT8_VARIANTS.items():
            if computed_in in products:
                columns.append((name, mode, computed_in))
    return columns


def _op_names(model_bytes: bytes) -> list[str]:
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return [op["op_name"] for op in interpreter._get_ops_details()]


def fastest_runs(models: dict, runs: int, rounds: int) -> dict:
    """{key: (fastest, median) latency in microseconds}, one thread, round-robin."""
    interpreters = {}
    for key, model_bytes in models.items():
        interpreter = Interpreter(model_content=model_bytes, num_threads=1)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.random.default_rng(0).uniform(
            0, 255, detail["shape"]).astype(np.float32))
        for _ in range(10):
            interpreter.invoke()
        interpreters[key] = (interpreter, [])
    for _ in range(rounds):
        for interpreter, timings in interpreters.values():
            for _ in range(2):
                interpreter.invoke()
            for _ in range(max(1, runs // rounds)):
                start = time.perf_counter()
                interpreter.invoke()
                timings.append((time.perf_counter() - start) * 1e6)
    return {key: (min(t), statistics.median(t)) for key, (_, t) in interpreters.items()}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    started = time.time()
    blocks = lightnl_blocks(FLAGS.model, FLAGS.image_size)
    columns = variants(FLAGS.modes, FLAGS.lightnl_products)
    names = [name for name, _, _ in columns]
    models, ops, checks = {}, {}, {}
    for index, (size, channels, ratio, stride) in enumerate(blocks):
        calibration = np.random.default_rng(1).normal(size=(8, size, size, 3)).astype(np.float32)
        for with_lightnl in (True, False):
            keras.utils.set_random_seed(index)
            model = block_model(size, channels, ratio, stride, with_lightnl)
            for name, mode, products in columns:
                model_bytes = convert_to_tflite(model, size, mode, calibration,
                                                lightnl_products=products or "int8")
                partitions = xnnpack_partitions(model_bytes)
                if partitions.partitions != 1 or partitions.undelegated:
                    print(f"block {index} {name}: {partitions}", flush=True)
                models[index, with_lightnl, name] = model_bytes
                if with_lightnl and products == "int8":
                    checks[index] = check_int8_products(model_bytes, calibration, max_images=2)
                    if not checks[index].ok:
                        print(f"block {index} int8 products: {checks[index].summary()}",
                              flush=True)
                if with_lightnl and index == 0:
                    ops[name] = _op_names(model_bytes)
            keras.backend.clear_session()
    timings = fastest_runs(models, FLAGS.num_runs, FLAGS.rounds)

    print(f"\nLightNL blocks of {FLAGS.model} at {FLAGS.image_size} px: latency of the block "
          "alone = fastest run with it - without it, microseconds (median-based in brackets); "
          "int8: products in int8, int8_islands: products in float32")
    print(f"{'#':>2} {'map':>5} {'C':>4} {'r':>6} {'s':>2} {'order':>14} {'product MACs':>13}"
          + "".join(f"{name:>16}" for name in names))
    totals = dict.fromkeys(names, 0.0)
    median_totals = dict.fromkeys(names, 0.0)
    rows = []
    for index, (size, channels, ratio, stride) in enumerate(blocks):
        affinity_first, context_first = cost.lightnl_orders(size, size, channels, ratio, stride)
        order = "(q k^T) v" if affinity_first < context_first else "q (k^T v)"
        cells, row = [], {"block": index, "map": size, "channels": channels, "ratio": ratio,
                          "stride": stride, "order": order,
                          "product_macs": min(affinity_first, context_first), "latency_us": {}}
        for name in names:
            with_, without = timings[index, True, name], timings[index, False, name]
            totals[name] += with_[0] - without[0]
            median_totals[name] += with_[1] - without[1]
            row["latency_us"][name] = {"fastest": with_[0] - without[0],
                                       "median": with_[1] - without[1]}
            cells.append(f"{with_[0] - without[0]:7.1f} ({with_[1] - without[1]:5.1f})")
        rows.append(row)
        print(f"{index:>2} {size:>3}^2 {channels:>4} {ratio:>6g} {stride:>2} {order:>14} "
              f"{min(affinity_first, context_first):>13,}" + "".join(f"{c:>16}" for c in cells))
    print("sum" + " " * 47 + "".join(f"{totals[name]:>16.1f}" for name in names))
    for reference in ("float32", "int8_islands"):
        if "int8" in totals and reference in totals and totals[reference] > 0:
            print(f"int8 products / {reference}: {totals['int8'] / totals[reference]:.2f}x "
                  "(sum of the blocks, fastest runs)")
    for name, names_of_ops in ops.items():
        print(f"\nops of the {name} LightNL, first block: {' '.join(names_of_ops)}")
    if checks:
        print(f"int8 products checked in {sum(c.ok for c in checks.values())} of "
              f"{len(checks)} blocks: {checks[0].summary()} (first block)")
    machine = record.machine()
    print(f"\nmachine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, ISA "
          f"{' '.join(machine['isa_flags'])}; LiteRT {machine['versions']['ai-edge-litert']}")
    print(f"({FLAGS.num_runs} timed runs per model in {FLAGS.rounds} rounds, load average "
          f"{os.getloadavg()[0]:.1f}, total {time.time() - started:.0f}s)")
    path = record.write_result("lightnl_blocks", {
        "model": FLAGS.model, "image_size": FLAGS.image_size, "num_runs": FLAGS.num_runs,
        "columns": {name: {"mode": mode, "lightnl_products": products}
                    for name, mode, products in columns},
        "blocks": rows,
        "sum_us": {name: {"fastest": totals[name], "median": median_totals[name]}
                   for name in names},
        "int8_product_checks": {str(i): c.as_dict() for i, c in checks.items()},
    }, path=FLAGS.output_json)
    print(f"results: {path}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
