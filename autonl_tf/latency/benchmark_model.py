"""A latency table from LiteRT's ``benchmark_model`` on an Android phone (over adb).

The models of the table (`autonl_tf.latency.build.plan_models`) are exported as .tflite files
with a ``manifest.json`` (`export_models`); each is run on the phone by the LiteRT benchmark tool
(``benchmark_model --graph=... --num_threads=N --use_xnnpack=true``) in several interleaved
rounds, its output saved as ``<model>.round<r>.txt``; `table_from_logs` parses the outputs
(`parse_benchmark_model_output`) and assembles the same table the LiteRT timing on this machine
gives. `run_over_adb` does the pushing and running itself. docs/latency.md has the commands.

The tool's output format, as the LiteRT sources write it (tflite/tools/benchmark/
benchmark_model.cc: ``BenchmarkModel::Run`` logs each run's statistics with
``StatWithPercentiles::OutputToStream``, xla/tsl/util/stats_calculator.h; ``TFLITE_LOG(INFO)``
prefixes ``INFO: ``, tflite/tools/logging.h)::

    INFO: Num threads: [1]
    INFO: Graph: [/data/local/tmp/autonl_latency/part_003.tflite]
    ...
    INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but ...
    INFO: count=1234 first=61 curr=40 min=38 max=190 avg=41.2 std=3 p5=39 median=40 p95=46
    INFO: Running benchmark for at least 50 iterations and at least 1 seconds but ...
    INFO: count=24051 first=41 curr=40 min=38 max=127 avg=40.9 std=2 p5=39 median=40 p95=44
    INFO: Inference timings in us: Init: 3412, First inference: 61, Warmup (avg): 41.2, ...

The first statistics line is the warm-up, the second the timed runs (microseconds; min, max and
the percentiles are integers, avg and std printed with 6 significant digits). A run whose values
are all equal prints ``count=N curr=X`` (plus ``(all same)`` when N > 1) before the percentiles.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import statistics
import subprocess
from collections.abc import Callable, Mapping

from autonl_tf.errors import UserError

__all__ = ["BenchmarkModelError", "BenchmarkModelRun", "export_models",
           "parse_benchmark_model_output", "run_over_adb", "table_from_logs"]

MANIFEST = "manifest.json"
STATISTICS = ("min", "median", "avg")
DEVICE_DIR = "/data/local/tmp/autonl_latency"
DEVICE_TOOL = "/data/local/tmp/benchmark_model"
# benchmark_model flags of every run: untimed warm-up of at least 0.5 s, then at least
# ``num_runs`` runs and 1 s.
TOOL_FLAGS = ("--use_xnnpack=true", "--warmup_min_secs=0.5", "--min_secs=1", "--num_runs=50")

_STAT = re.compile(r"count=(\d+)(.*)")
_PAIR = re.compile(r"([a-z0-9]+)=([-+0-9.eE]+|nan|inf)")


class BenchmarkModelError(UserError, ValueError):
    """A benchmark_model output that holds no timing (names the file and the tool's error)."""


@dataclasses.dataclass(frozen=True)
class BenchmarkModelRun:
    """The timed runs of one benchmark_model invocation (microseconds).

    graph: the --graph the tool ran; num_threads: its --num_threads (None: not logged).
    count: timed runs; min/max/avg/std/p5/median/p95: their statistics; warmup_avg_us: the
    warm-up's average; init_us: the tool's "Init" time.
    """

    graph: str | None
    num_threads: int | None
    count: int
    min_us: float
    max_us: float
    avg_us: float
    std_us: float
    p5_us: float
    median_us: float
    p95_us: float
    warmup_avg_us: float | None = None
    init_us: float | None = None
    xnnpack: bool | None = None

    def ms(self, statistic: str = "min") -> float:
        """The run's ``statistic`` ('min', 'median' or 'avg') in milliseconds."""
        if statistic not in STATISTICS:
            raise ValueError(f"statistic {statistic!r}: expected one of {STATISTICS}")
        return getattr(self, f"{statistic}_us") / 1e3


def _statistics(line: str) -> dict[str, float] | None:
    match = _STAT.search(line)
    if match is None:
        return None
    values = {"count": float(match.group(1))}
    rest = match.group(2)
    values.update((key, float(value)) for key, value in _PAIR.findall(rest))
    if "min" not in values:  # count=N curr=X[(all same)]: every run took X
        current = values.get("curr", values.get("median"))
        if current is None:
            return None
        values.update(min=current, max=current, avg=current, std=0.0)
    return values


def parse_benchmark_model_output(text: str, source: str = "benchmark_model output"
                                 ) -> BenchmarkModelRun:
    """The timed runs of one ``benchmark_model`` output (see the module docstring).

    Raises:
      BenchmarkModelError: no timed runs in the text (the tool's first ERROR line is quoted).
    """
    graph = threads = init = warmup_avg = xnnpack = None
    runs = []
    for raw in text.splitlines():
        line = raw.strip()
        body = line.split(": ", 1)[1] if line.startswith(("INFO: ", "WARN: ")) else line
        if body.startswith("Graph: ["):
            graph = body[len("Graph: ["):].rstrip("]")
        elif body.startswith(("Num threads: [", "#threads used for CPU inference: [")):
            threads = int(body.rsplit("[", 1)[1].rstrip("]"))
        elif body.startswith("Use xnnpack: ["):
            xnnpack = body.endswith("[1]") or body.endswith("[true]")
        elif body.startswith("Inference timings in us:"):
            fields = dict(part.split(": ", 1) for part in
                          body[len("Inference timings in us: "):].split(", ") if ": " in part)
            init = float(fields["Init"]) if "Init" in fields else None
            if "Warmup (avg)" in fields:
                warmup_avg = float(fields["Warmup (avg)"])
        elif body.startswith("count="):
            stats = _statistics(body)
            if stats is not None:
                runs.append(stats)
    timed = [r for r in runs if r["count"] > 0]
    if len(runs) < 2 or not timed or runs[-1]["count"] == 0:
        errors = [line.strip() for line in text.splitlines()
                  if line.strip().startswith(("ERROR", "FATAL"))]
        raise BenchmarkModelError(
            f"{source}: no timed runs of benchmark_model found"
            + (f" (the tool said: {errors[0]})" if errors else
               " (expected a warm-up and a timed 'count=... min=... avg=...' line)"))
    run = runs[-1]  # the warm-up's statistics come first, then the timed runs'
    if warmup_avg is None and runs[-2]["count"] > 0:
        warmup_avg = runs[-2]["avg"]
    return BenchmarkModelRun(
        graph=graph, num_threads=threads, count=int(run["count"]), min_us=run["min"],
        max_us=run["max"], avg_us=run["avg"], std_us=run.get("std", 0.0),
        p5_us=run.get("p5", run["min"]), median_us=run.get("median", run["avg"]),
        p95_us=run.get("p95", run["max"]), warmup_avg_us=warmup_avg, init_us=init,
        xnnpack=xnnpack)


# -- files for the phone ----------------------------------------------------------------------

def export_models(plan, models: Mapping[str, bytes], directory: str, *, mode: str) -> dict:
    """Writes every model as ``<kind>_<nnn>.tflite`` and ``manifest.json``; returns the
    manifest ({'plan': ..., 'mode': ..., 'files': {file name: model name}})."""
    from autonl_tf import files

    os.makedirs(directory, exist_ok=True)
    names = {}
    for number, name in enumerate(plan.model_names()):
        file_name = f"{name.split(':', 1)[0]}_{number:03d}.tflite"
        files.write_atomic(os.path.join(directory, file_name), models[name])
        names[file_name] = name
    manifest = {"mode": mode, "plan": plan.to_dict(), "files": names}
    files.write_json_atomic(os.path.join(directory, MANIFEST), manifest)
    return manifest


def read_manifest(directory: str) -> dict:
    from autonl_tf import files

    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        raise BenchmarkModelError(f"{path} not found: export the models first with "
                                  "`python -m autonl_tf.latency.build_table --export_dir=...`")
    return files.read_json(path)


def log_name(file_name: str, round_index: int) -> str:
    """Where the output of one run goes: ``<model file>.round<r>.txt``."""
    return f"{file_name}.round{round_index}.txt"


def table_from_logs(models_dir: str, logs_dir: str, *, device: str, threads: int,
                    statistic: str = "min", command: str = "") -> dict:
    """The table from the saved benchmark_model outputs of every model and round.

    Per model, the statistic of each round's timed runs is read; the fastest round is the
    entry's value and the median round minus it its spread (as the LiteRT timing here).

    Raises:
      BenchmarkModelError: a model without any output, or an output without timed runs, or
        one that ran another graph or thread count than asked.
    """
    from autonl_tf.latency.build import ModelPlan, assemble_table

    manifest = read_manifest(models_dir)
    plan = ModelPlan.from_dict(manifest["plan"])
    logs = sorted(os.listdir(logs_dir)) if os.path.isdir(logs_dir) else []
    timings = {}
    for file_name, name in manifest["files"].items():
        outputs = [f for f in logs if f.startswith(file_name + ".round") and f.endswith(".txt")]
        if not outputs:
            raise BenchmarkModelError(f"{logs_dir}: no benchmark_model output for {file_name} "
                                      f"(expected {log_name(file_name, 0)}, ...)")
        values = []
        for output in outputs:
            path = os.path.join(logs_dir, output)
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            run = parse_benchmark_model_output(text, path)
            if run.graph is not None and os.path.basename(run.graph) != file_name:
                raise BenchmarkModelError(f"{path}: the tool ran {run.graph}, not {file_name}")
            if run.num_threads is not None and run.num_threads != threads:
                raise BenchmarkModelError(f"{path}: ran with {run.num_threads} thread(s), the "
                                          f"table is for --threads={threads}")
            values.append(run.ms(statistic))
        fastest = min(values)
        timings[name] = (fastest, statistics.median(values) - fastest)
    rounds = min(sum(1 for f in logs if f.startswith(n + ".round")) for n in manifest["files"])
    return assemble_table(
        plan, timings, mode=manifest["mode"], threads=threads, device=device,
        runtime="LiteRT benchmark_model (XNNPACK)",
        litert_version="that of the benchmark_model binary (its output does not say)",
        statistic=f"fastest of {rounds} round(s) of benchmark_model's '{statistic}' "
                  "(timed runs after a 0.5 s warm-up)",
        command=command)


# -- adb ------------------------------------------------------------------------------------------

def adb_command(args: list[str], serial: str | None = None) -> list[str]:
    return ["adb", *(["-s", serial] if serial else []), *args]


def device_name(serial: str | None = None,
                run: Callable[[list[str]], str] | None = None) -> str:
    """'<manufacturer> <model> (<SoC>, Android <version>)' from the phone's properties."""
    run = run or _run

    def prop(name: str) -> str:
        return run(adb_command(["shell", "getprop", name], serial)).strip()

    soc = prop("ro.soc.model") or prop("ro.board.platform")
    return (f"{prop('ro.product.manufacturer')} {prop('ro.product.model')} ({soc}, Android "
            f"{prop('ro.build.version.release')}, {prop('ro.product.cpu.abi')})")


def _run(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise BenchmarkModelError("adb not found: install the Android platform tools and put "
                                  "adb on PATH (docs/latency.md)") from None
    if result.returncode != 0:
        raise BenchmarkModelError(f"`{shlex.join(command)}` failed (exit {result.returncode}): "
                                  + " ".join((result.stderr or result.stdout).split())[:300])
    return result.stdout


def run_over_adb(models_dir: str, logs_dir: str, *, threads: int, rounds: int,
                 serial: str | None = None, tool: str = DEVICE_TOOL,
                 device_dir: str = DEVICE_DIR, log: Callable[[str], None] = print,
                 run: Callable[[list[str]], str] | None = None) -> None:
    """Pushes the exported models to the phone and runs benchmark_model on each, ``rounds``
    times round-robin, saving every output in ``logs_dir`` (see `log_name`).

    ``tool``: the benchmark_model binary on the phone (push it there first, docs/latency.md).
    """
    from autonl_tf import files

    run = run or _run
    manifest = read_manifest(models_dir)
    run(adb_command(["shell", "mkdir", "-p", device_dir], serial))
    for file_name in manifest["files"]:
        run(adb_command(["push", os.path.join(models_dir, file_name),
                         f"{device_dir}/{file_name}"], serial))
    os.makedirs(logs_dir, exist_ok=True)
    names = list(manifest["files"])
    for round_index in range(rounds):
        for file_name in names:
            output = run(adb_command(
                ["shell", tool, f"--graph={device_dir}/{file_name}",
                 f"--num_threads={threads}", *TOOL_FLAGS], serial))
            files.write_atomic(os.path.join(logs_dir, log_name(file_name, round_index)),
                               output)
        log(f"benchmark_model round {round_index + 1}/{rounds}: {len(names)} models")
