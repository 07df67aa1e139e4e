"""How well a latency table predicts whole networks: random children of a space, predicted vs timed.

    python benchmarks/latency_predictor.py                       # demo space, 60 children
    python benchmarks/latency_predictor.py --children=100 --modes=int8 --rounds=30
    python benchmarks/latency_predictor.py --table=autonl_tf/latency/tables/demo_int8.json \
        --modes=int8                                             # an existing table

Per TFLite mode: a latency table of the search space is built in this run
(`autonl_tf.latency.build`: every part model, its baseline and the reference children that fit
the per-network constant) and --children random children of the space (`SearchSpace.random`,
seeds 0, 1, ...; the table's reference children use other seeds) are converted with the same
converter; all of them are timed in the same interleaved LiteRT session
(`autonl_tf.latency.timing`), so that load from other processes hits table and children alike.
With --table, that table is evaluated instead and the children are timed on their own.

Reported per mode: the share of children whose predicted latency (the table's sum,
`LatencyCost.latency`) is within +-10% (and +-5%) of the measured one, the RMSPE
(sqrt(mean(((predicted - measured) / measured)^2))), the mean and worst error. The reference,
measured in the same run: MACs as a latency model, an affine fit latency = a + b * MACs, fitted on
the table's reference children (the information the table's constant is fitted on) and on these
very children (in-sample, so flattering to MACs). Results go to
benchmarks/results/latency_predictor.json (`benchmarks/record.py`).
"""

from __future__ import annotations

import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import record  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from autonl_tf.runner import config as config_lib  # noqa: E402

_CONFIG = config_lib.define_config_flag("config", default="search:demo")
_MODES = flags.DEFINE_list("modes", ["float32", "int8"], "TFLite modes.")
_CHILDREN = flags.DEFINE_integer("children", 60, "Random children per mode.", lower_bound=1)
_THREADS = flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 20, "Interleaved timing rounds.", lower_bound=1)
_RUNS = flags.DEFINE_integer("runs_per_round", 50, "Timed runs per model per round.",
                             lower_bound=1)
_REFERENCE = flags.DEFINE_integer("reference_children", 6, "Reference children of the table.",
                                  lower_bound=1)
_TABLE = flags.DEFINE_string("table", None, "Evaluate this table instead of building one (its "
                             "mode must be the only --modes).")
_OUTPUT = flags.DEFINE_string("output_json", None, "Where to write the results (default "
                              "benchmarks/results/latency_predictor.json).")


def errors_summary(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """Share within +-10% / +-5%, RMSPE, mean and worst relative error."""
    relative = (predicted - measured) / measured
    return {"within_10pct": float(np.mean(np.abs(relative) <= 0.10)),
            "within_5pct": float(np.mean(np.abs(relative) <= 0.05)),
            "rmspe": float(math.sqrt(np.mean(relative ** 2))),
            "mean_error": float(np.mean(relative)),
            "max_abs_error": float(np.max(np.abs(relative)))}


def evaluate_mode(mode: str, config) -> dict:
    from autonl_tf.latency import build, parts
    from autonl_tf.latency.device import this_device
    from autonl_tf.latency.timing import litert_version, time_tflite_models
    from autonl_tf.search import SearchCost, space_from_config
    from autonl_tf.search.latency_cost import LatencyCost, LatencyTable

    space = space_from_config(config.search_space)
    size, classes = int(config.data.image_size), int(config.data.num_classes)
    width = float(config.model.width_multiplier)
    started = time.time()
    children = [space.random(seed) for seed in range(_CHILDREN.value)]
    child_models = {}
    for seed, decisions in enumerate(children):
        child_models[f"random:{seed}"] = parts.convert(
            parts.child_model(space, decisions, size, classes, width, seed=seed), size, mode)
        if (seed + 1) % 10 == 0:
            print(f"{mode}: converted {seed + 1}/{len(children)} children", flush=True)
    if _TABLE.value:
        table = LatencyTable.load(_TABLE.value)
        timings = time_tflite_models(child_models, _THREADS.value, _ROUNDS.value, _RUNS.value)
    else:
        plan = build.plan_models(space, size, classes, width,
                                 reference_children=_REFERENCE.value)
        table_models = build.convert_models(plan, mode,
                                            log=lambda s: print(f"{mode}: {s}", flush=True))
        timings = time_tflite_models({**table_models, **child_models}, _THREADS.value,
                                     _ROUNDS.value, _RUNS.value)
        version = litert_version()
        table = LatencyTable.from_dict(build.assemble_table(
            plan, {n: (t.fastest_ms, t.spread_ms) for n, t in timings.items()
                   if not n.startswith("random:")},
            mode=mode, threads=_THREADS.value, device=this_device(),
            runtime=f"LiteRT {version} Python interpreter (ai_edge_litert), XNNPACK",
            litert_version=version, statistic="fastest (this benchmark's session)"))
    latency = LatencyCost(space, table, size, classes, width, mode=mode)
    macs_cost = SearchCost(space, size, classes, width)
    predicted = np.array([latency.latency(d) for d in children])
    measured = np.array([timings[f"random:{seed}"].fastest_ms for seed in range(len(children))])
    macs = np.array([macs_cost.macs(d) for d in children], dtype=np.float64)
    # The reference: MACs as a latency model, an affine fit a + b * MACs, (1) on the table's
    # reference children (what the table's constant is fitted on: the same information) and
    # (2) on these very children (in-sample: flattering to MACs).
    from autonl_tf.arch import decode_arch, encode_block
    from autonl_tf.search.space import decisions_for_arch

    references = table.data["overhead_fit"]["children"]
    reference_macs = np.array([macs_cost.macs(decisions_for_arch(space, decode_arch(c["arch"])))
                               for c in references], dtype=np.float64)
    reference_ms = np.array([c["measured_ms"] for c in references])
    design = np.stack([np.ones_like(macs), macs], axis=1)
    on_references = np.linalg.lstsq(np.stack([np.ones_like(reference_macs), reference_macs], 1),
                                    reference_ms, rcond=None)[0]
    coefficients = np.linalg.lstsq(design, measured, rcond=None)[0]

    rows = [{"seed": seed, "arch": [encode_block(r) for r in space.child_blocks(d)],
             "macs": int(macs[seed]), "predicted_ms": float(predicted[seed]),
             "measured_ms": float(measured[seed]),
             "spread_ms": timings[f"random:{seed}"].spread_ms,
             "relative_error": float((predicted[seed] - measured[seed]) / measured[seed])}
            for seed, d in enumerate(children)]
    result = {
        "mode": mode, "children": len(children), "table": _TABLE.value or "built in this run",
        "overhead_ms": table.overhead_ms, "table_entries": len(table.data["entries"]),
        "table_reference_fit": [c["relative_error"]
                                for c in table.data["overhead_fit"]["children"]],
        "predictor": errors_summary(predicted, measured),
        "macs_fit_on_reference_children": {
            "intercept_ms": float(on_references[0]), "ms_per_mmac": float(on_references[1] * 1e6),
            **errors_summary(design @ on_references, measured)},
        "macs_affine_fit_in_sample": {"intercept_ms": float(coefficients[0]),
                                      "ms_per_mmac": float(coefficients[1] * 1e6),
                                      **errors_summary(design @ coefficients, measured)},
        "measured_range_ms": [float(measured.min()), float(measured.max())],
        "seconds": time.time() - started,
        "rows": rows,
    }
    return result


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _TABLE.value and len(_MODES.value) != 1:
        raise app.UsageError("--table evaluates one table: give its mode alone in --modes")
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    config_name = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--config=")),
                       "search:demo")
    results = {}
    for mode in _MODES.value:
        results[mode] = evaluate_mode(mode, config)
    print(f"\nLatency table predictions of {_CHILDREN.value} random children of the "
          f"{config_name} space ({config.data.image_size} px, width "
          f"x{config.model.width_multiplier:g}, LiteRT, {_THREADS.value} thread(s)):")
    print(f"{'':<9}{'latency table':^45}{'MACs, fit on refs':^20}{'MACs, in-sample':^20}")
    print(f"{'mode':<9}{'within 10%':>11}{'within 5%':>10}{'RMSPE':>8}{'mean':>8}{'worst':>8}"
          + f"{'within 10%':>11}{'RMSPE':>9}" * 2 + f"{'measured ms':>18}")
    for mode, r in results.items():
        p = r["predictor"]
        low, high = r["measured_range_ms"]
        print(f"{mode:<9}{p['within_10pct']:>11.1%}{p['within_5pct']:>10.1%}"
              f"{p['rmspe']:>8.2%}{p['mean_error']:>+8.2%}{p['max_abs_error']:>8.2%}"
              + "".join(f"{m['within_10pct']:>11.1%}{m['rmspe']:>9.2%}"
                        for m in (r["macs_fit_on_reference_children"],
                                  r["macs_affine_fit_in_sample"]))
              + f"{low:>9.4f}-{high:.4f}")
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs; a shared machine inflates the "
          "errors)")
    path = record.write_result("latency_predictor", {
        "config": config_name,
        "image_size": int(config.data.image_size),
        "width_multiplier": float(config.model.width_multiplier),
        "num_classes": int(config.data.num_classes), "threads": _THREADS.value,
        "rounds": _ROUNDS.value, "runs_per_round": _RUNS.value, "results": results},
        path=_OUTPUT.value)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
