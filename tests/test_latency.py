"""Latency tables (docs/latency.md): the search's latency cost, benchmark_model, the builder."""
# bazel: suite=search

from __future__ import annotations

import copy
import itertools
import json
import pathlib
import random

import pytest

from autonl_tf.latency import benchmark_model, build
from autonl_tf.search import space_from_config
from autonl_tf.search import spaces as search_space_config
from autonl_tf.search.latency_cost import (
    LatencyCost,
    LatencyTable,
    LatencyTableError,
    space_fingerprint,
    space_parts,
)
from autonl_tf.search.search_cost import TargetError, block_decisions

DATA = pathlib.Path(__file__).parent / "data"
# A sample of benchmark_model's output in the format its sources write (see
# test_parse_recorded_benchmark_model_output).
SAMPLE = DATA / "benchmark_model_int8_part.txt"
SIZE, CLASSES, WIDTH = 32, 10, 0.25


def tiny_space():
    return space_from_config(search_space_config.get_config("tiny"))


def two_block_space():
    """Two searchable blocks (skip, kernel, expansion, SE, LightNL ratio and stride)."""
    return space_from_config(dict(
        activation="swish", kernel_sizes=(3, 5), expand_ratios=(3, 6),
        lightnl_ratios=(0.125, 0.25), lightnl_strides=(1, 2),
        stages=[dict(filters=16, repeats=2, stride=2, se_ratios=(0.0, 0.25))]))


def synthetic_table(space, mode: str = "int8", seed: int = 0, size: int = SIZE) -> LatencyTable:
    """A table assembled from made-up timings (every model of the plan a random latency)."""
    plan = build.plan_models(space, size, CLASSES, WIDTH, reference_children=3)
    rng = random.Random(seed)
    timings = {name: (rng.uniform(0.001, 0.05), rng.uniform(0.0, 0.001))
               for name in plan.model_names()}
    return LatencyTable.from_dict(build.assemble_table(
        plan, timings, mode=mode, threads=1, device="test device", runtime="made up",
        litert_version="0", statistic="made up"), path="synthetic.json")


# -- the search's cost -----------------------------------------------------------------------------

def test_hard_indicators_give_the_tables_prediction_of_the_decoded_child():
    space = tiny_space()
    table = synthetic_table(space)
    cost = LatencyCost(space, table, SIZE, CLASSES, WIDTH)
    parts = space_parts(space, SIZE, CLASSES, WIDTH)
    entries = table.data["entries"]
    children = [space.largest(), space.smallest()] + [space.random(s) for s in range(60)]
    for decisions in children:
        by_hand = table.overhead_ms + sum(entries[p.key]["ms"]
                                          for p in parts.of_child(space, decisions))
        assert cost.latency(decisions) == pytest.approx(by_hand, rel=1e-12, abs=1e-15)
        assert cost.predict(decisions) == pytest.approx(by_hand, rel=1e-12, abs=1e-15)
    # Different children, different predictions: the gates reach every entry.
    assert len({round(cost.latency(d), 12) for d in children}) > 50


def test_feasible_range_is_the_fastest_and_slowest_child():
    space = two_block_space()
    cost = LatencyCost(space, synthetic_table(space), SIZE, CLASSES, WIDTH)
    every = [cost.latency(d) for d in itertools.product(*(block_decisions(b)
                                                          for b in space.blocks))]
    low, high = cost.feasible_range()
    assert low == pytest.approx(min(every)) and high == pytest.approx(max(every))
    cost.check_target((low + high) / 2)
    with pytest.raises(TargetError, match="below the fastest child network: feasible range"):
        cost.check_target(low - 0.01)


def test_assembled_entries_are_part_minus_baseline_and_the_overhead_fits_the_median():
    space = two_block_space()
    table = synthetic_table(space).data
    for entry in table["entries"].values():
        assert entry["ms"] == pytest.approx(entry["model_ms"] - entry["baseline_ms"])
        assert entry["baseline_ms"] == table["baselines"][entry["baseline"]]["ms"]
    errors = sorted(c["measured_ms"] - c["predicted_ms"] for c in table["overhead_fit"]["children"])
    assert errors[1] == pytest.approx(0.0, abs=1e-12)  # the median child is predicted exactly


@pytest.mark.slow
def test_supernet_expected_latency_of_hard_indicators_is_the_tables_prediction():
    import tensorflow as tf

    from autonl_tf.search import SearchObjective, Supernet
    from autonl_tf.search.decode import current_decisions, set_decisions

    space = tiny_space()
    cost = LatencyCost(space, synthetic_table(space), SIZE, CLASSES, WIDTH)
    low, high = cost.feasible_range()
    supernet = Supernet(space, num_classes=CLASSES, image_size=SIZE, width_multiplier=WIDTH,
                        latency_cost=cost, objective=SearchObjective(
                            target_latency_ms=(low + high) / 2, cost_weight=1.0))
    for decisions in [space.largest(), space.smallest()] + [space.random(s) for s in range(8)]:
        set_decisions(supernet, decisions)
        child = current_decisions(supernet)
        assert supernet.space.child_blocks(child) == space.child_blocks(decisions)
        value = float(supernet.expected_latency(dtype=tf.float64))
        assert value == pytest.approx(cost.predict(decisions), rel=1e-12)
    # The loss acts on the latency: its logs carry it, with MACs beside.
    images = tf.random.normal((2, SIZE, SIZE, 3))
    terms = supernet.search_losses(images, tf.constant([1, 2]), training=False)
    assert float(terms["expected_latency_ms"]) == pytest.approx(cost.predict(child), rel=1e-5)
    assert float(terms["expected_macs"]) == pytest.approx(supernet.search_cost.macs(child))


# -- bad tables ------------------------------------------------------------------------------------

def _saved(tmp_path, table: dict, name: str = "table.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(table))
    return str(path)


@pytest.mark.parametrize("change,message", [
    (lambda t: t.update(format="something else"), "not an autonl_tf latency table"),
    (lambda t: t.update(format_version=99), "format_version 99"),
    (lambda t: t.pop("overhead_ms"), "missing key 'overhead_ms'"),
    (lambda t: t["setting"].pop("image_size"), "missing key 'setting.image_size'"),
    (lambda t: next(iter(t["entries"].values())).update(ms=float("nan")), "has no finite 'ms'"),
])
def test_a_malformed_table_is_refused_in_one_line(tmp_path, change, message):
    table = copy.deepcopy(dict(synthetic_table(tiny_space()).data))
    change(table)
    with pytest.raises(LatencyTableError, match=message) as error:
        LatencyTable.load(_saved(tmp_path, table))
    assert "\n" not in str(error.value) and "table.json" in str(error.value)


def test_a_missing_or_unreadable_table_names_the_file_and_the_builder(tmp_path):
    with pytest.raises(LatencyTableError, match="no_such.json: cannot read it.*build_table"):
        LatencyTable.load(str(tmp_path / "no_such.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LatencyTableError, match="bad.json: cannot read it"):
        LatencyTable.load(str(tmp_path / "bad.json"))


@pytest.mark.parametrize("setting,message", [
    (dict(image_size=64), "image_size=32 \\(this search: 64\\)"),
    (dict(width_multiplier=0.5), "width_multiplier=0.25 \\(this search: 0.5\\)"),
    (dict(num_classes=1000), "num_classes=10 \\(this search: 1000\\)"),
    (dict(mode="float32"), "mode 'int8' \\(asked: 'float32'\\)"),
    (dict(space="autonl"), "another search space \\(fingerprint"),
])
def test_a_table_of_another_setting_is_refused_in_one_line(setting, message):
    space = tiny_space()
    table = synthetic_table(space, mode="int8")
    wanted = dict(image_size=SIZE, num_classes=CLASSES, width_multiplier=WIDTH)
    wanted.update({k: v for k, v in setting.items() if k in wanted})
    other = (space_from_config(search_space_config.get_config(setting["space"]))
             if "space" in setting else space)
    with pytest.raises(LatencyTableError, match=message) as error:
        LatencyCost(other, table, mode=setting.get("mode"), **wanted)
    assert "\n" not in str(error.value) and "build_table" in str(error.value)


def test_a_table_missing_an_entry_is_refused():
    space = tiny_space()
    table = copy.deepcopy(dict(synthetic_table(space).data))
    key = next(k for k in table["entries"] if k.startswith("lightnl"))
    del table["entries"][key]
    with pytest.raises(LatencyTableError, match=f"has no entry for '{key}'"):
        LatencyCost(space, LatencyTable.from_dict(table), SIZE, CLASSES, WIDTH)


def test_the_fingerprint_follows_the_space():
    tiny = search_space_config.get_config("tiny")
    assert space_fingerprint(space_from_config(tiny)) == space_fingerprint(tiny_space())
    tiny.stages[1]["kernel_sizes"] = (3,)
    assert space_fingerprint(space_from_config(tiny)) != space_fingerprint(tiny_space())


# -- benchmark_model -------------------------------------------------------------------------------

def test_parse_recorded_benchmark_model_output():
    """SAMPLE is benchmark_model's output for one part model, in the tool's format: lines as
    the LiteRT sources write them (tflite/tools/benchmark/benchmark_model.cc
    ``BenchmarkModel::Run`` and ``BenchmarkLoggingListener::OnBenchmarkEnd``,
    ``StatWithPercentiles::OutputToStream`` in xla/tsl/util/stats_calculator.h, the ``INFO: ``
    prefix of tflite/tools/logging.h), with timings of the size a phone gives this model; it was
    written from those sources, not captured from a phone (none is attached here)."""
    run = benchmark_model.parse_benchmark_model_output(SAMPLE.read_text())
    assert run.graph == "/data/local/tmp/autonl_latency/part_003.tflite"
    assert run.num_threads == 1 and run.xnnpack is True
    # The timed runs (the second statistics line), not the warm-up (the first).
    assert (run.count, run.min_us, run.max_us, run.median_us) == (19226, 48, 431, 51)
    assert run.avg_us == pytest.approx(51.6238) and run.std_us == 6
    assert (run.p5_us, run.p95_us) == (49, 57)
    assert run.warmup_avg_us == pytest.approx(53.1462) and run.init_us == 4731
    assert run.ms("min") == pytest.approx(0.048) and run.ms("avg") == pytest.approx(0.0516238)
    with pytest.raises(ValueError, match="statistic"):
        run.ms("p99")


def test_parse_benchmark_model_runs_whose_times_are_all_the_same():
    text = ("INFO: Num threads: [2]\n"
            "INFO: count=1 curr=905463 p5=905463 median=905463 p95=905463\n"
            "INFO: count=50 curr=898333(all same) p5=898333 median=898333 p95=898333\n")
    run = benchmark_model.parse_benchmark_model_output(text)
    assert run.num_threads == 2 and run.count == 50
    assert run.min_us == run.avg_us == run.max_us == 898333
    assert run.warmup_avg_us == 905463


def test_a_failed_benchmark_model_run_quotes_the_tools_error():
    text = ("INFO: STARTING!\nINFO: Graph: [/data/local/tmp/x.tflite]\n"
            "ERROR: Could not open '/data/local/tmp/x.tflite'.\n"
            "ERROR: Failed to mmap model /data/local/tmp/x.tflite\n")
    with pytest.raises(benchmark_model.BenchmarkModelError,
                       match="log.txt: no timed runs.*Could not open '/data/local/tmp/x.tflite'"):
        benchmark_model.parse_benchmark_model_output(text, "log.txt")


def _sample_output(graph: str, min_us: int, threads: int = 1) -> str:
    """SAMPLE for another graph, its timed runs' minimum (and median, average) moved."""
    lines = []
    for line in SAMPLE.read_text().splitlines():
        line = line.replace("/data/local/tmp/autonl_latency/part_003.tflite", graph)
        if line.startswith("INFO: Num threads:"):
            line = f"INFO: Num threads: [{threads}]"
        if line.startswith("INFO: count=19226"):
            line = (f"INFO: count=19226 first=53 curr=51 min={min_us} max=431 "
                    f"avg={min_us + 3.5} std=6 p5={min_us + 1} median={min_us + 2} p95=57")
        lines.append(line)
    return "\n".join(lines) + "\n"


def _stand_in_adb(latencies_us: dict[str, list[int]], calls: list[list[str]], threads: int = 1):
    """A `run` for `run_over_adb`: records each command, answers benchmark_model runs with the
    sample output, round after round from ``latencies_us[file name]``."""
    rounds: dict[str, int] = {}

    def run(command: list[str]) -> str:
        calls.append(command)
        graph = next((a.split("=", 1)[1] for a in command if a.startswith("--graph=")), None)
        if graph is None:
            return ""
        name = graph.rsplit("/", 1)[1]
        index = rounds.get(name, 0)
        rounds[name] = index + 1
        return _sample_output(graph, latencies_us[name][index], threads)

    return run


def test_a_table_from_benchmark_model_over_adb(tmp_path):
    space = two_block_space()
    plan = build.plan_models(space, SIZE, CLASSES, WIDTH, reference_children=3)
    manifest = benchmark_model.export_models(
        plan, {name: b"TFL3 stand-in" for name in plan.model_names()}, str(tmp_path / "models"),
        mode="int8")
    rng = random.Random(0)
    latencies = {name: [rng.randrange(30, 300) for _ in range(3)] for name in manifest["files"]}
    calls: list[list[str]] = []
    benchmark_model.run_over_adb(str(tmp_path / "models"), str(tmp_path / "logs"), threads=1,
                                 rounds=3, serial="R5CT", log=lambda s: None,
                                 run=_stand_in_adb(latencies, calls))
    pushes = [c for c in calls if "push" in c]
    runs = [c for c in calls if any(a.startswith("--graph=") for a in c)]
    assert len(pushes) == len(manifest["files"]) and len(runs) == 3 * len(manifest["files"])
    assert all(c[:3] == ["adb", "-s", "R5CT"] for c in calls)
    assert "--num_threads=1" in runs[0] and "--use_xnnpack=true" in runs[0]
    table = benchmark_model.table_from_logs(str(tmp_path / "models"), str(tmp_path / "logs"),
                                            device="Pixel 7", threads=1)
    by_name = {name: file for file, name in manifest["files"].items()}
    key = next(iter(plan.parts))
    part, base = by_name[f"part:{key}"], by_name[f"baseline:{plan.baselines[key]}"]
    assert table["entries"][key]["ms"] == pytest.approx(
        (min(latencies[part]) - min(latencies[base])) / 1e3)
    assert table["device"] == "Pixel 7" and table["mode"] == "int8"
    LatencyCost(space, LatencyTable.from_dict(table), SIZE, CLASSES, WIDTH, mode="int8")
    # 'avg' instead of 'min': each round's average (min + 3.5 us here).
    averaged = benchmark_model.table_from_logs(str(tmp_path / "models"), str(tmp_path / "logs"),
                                               device="Pixel 7", threads=1, statistic="avg")
    assert averaged["baselines"][plan.baselines[key]]["ms"] == pytest.approx(
        (min(latencies[base]) + 3.5) / 1e3)


def test_benchmark_model_logs_of_another_thread_count_or_missing_are_refused(tmp_path):
    space = two_block_space()
    plan = build.plan_models(space, SIZE, CLASSES, WIDTH, reference_children=1)
    manifest = benchmark_model.export_models(plan, dict.fromkeys(plan.model_names(), b"x"),
                                             str(tmp_path / "models"), mode="float32")
    logs = tmp_path / "logs"
    logs.mkdir()
    files = list(manifest["files"])
    for name in files:
        (logs / benchmark_model.log_name(name, 0)).write_text(
            _sample_output(f"/data/local/tmp/autonl_latency/{name}", 50, threads=4))
    with pytest.raises(benchmark_model.BenchmarkModelError, match="ran with 4 thread"):
        benchmark_model.table_from_logs(str(tmp_path / "models"), str(logs), device="d",
                                        threads=1)
    (logs / benchmark_model.log_name(files[1], 0)).unlink()
    with pytest.raises(benchmark_model.BenchmarkModelError,
                       match=f"no benchmark_model output for {files[1]}"):
        benchmark_model.table_from_logs(str(tmp_path / "models"), str(logs), device="d",
                                        threads=4)


# -- the builder, for real -------------------------------------------------------------------------

def one_block_space():
    """One searchable block (kernel 3 or 5, LightNL or not): a handful of small models."""
    return space_from_config(dict(
        activation="swish", kernel_sizes=(3, 5), expand_ratios=(3,), lightnl_ratios=(0.25,),
        lightnl_strides=(2,), stages=[dict(filters=16, repeats=1, stride=2)]))


@pytest.mark.slow
def test_table_builder_on_a_tiny_space():
    from autonl_tf.latency.timing import time_tflite_models

    space = one_block_space()
    plan = build.plan_models(space, SIZE, CLASSES, WIDTH, reference_children=2)
    assert sorted(p.kind for p in plan.parts.values()) == [
        "head", "lightnl", "mbconv", "mbconv", "stem"]
    assert len(set(plan.baselines.values())) == 3  # the image; 3>8 at 16 px; 3>16 at 8 px
    models = build.convert_models(plan, "float32", log=lambda s: None)
    assert set(models) == set(plan.model_names())
    assert all(m[4:8] == b"TFL3" for m in models.values())
    timings = time_tflite_models(models, threads=1, rounds=3, runs_per_round=20, warmup=5)
    assert all(t.fastest_ms > 0 and t.spread_ms >= 0 and len(t.round_fastest_ms) == 3
               for t in timings.values())
    table = build.assemble_table(
        plan, {n: (t.fastest_ms, t.spread_ms) for n, t in timings.items()}, mode="float32",
        threads=1, device="here", runtime="LiteRT", litert_version="x", statistic="fastest")
    loaded = LatencyTable.from_dict(json.loads(json.dumps(table)))
    cost = LatencyCost(space, loaded, SIZE, CLASSES, WIDTH, mode="float32")
    assert len(table["entries"]) == 5
    # A whole network costs more than any one of its parts, and the table sees it.
    for child in table["overhead_fit"]["children"]:
        assert child["measured_ms"] > max(e["ms"] for e in table["entries"].values())
    low, high = cost.feasible_range()
    assert 0 < low < high
    # Loose on purpose: the machine running the tests is shared (the benchmark measures).
    assert all(abs(c["relative_error"]) < 0.5 for c in table["overhead_fit"]["children"])
