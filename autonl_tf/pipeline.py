"""The whole AutoNL pipeline on one machine: search -> arch.txt -> retrain -> eval -> export.

    python -m autonl_tf.pipeline --workdir=runs/demo            # embedded dataset, ~5 min, 2 CPUs
    python -m autonl_tf.pipeline --workdir=runs/smoke --smoke   # CI size, a few minutes
    python -m autonl_tf.pipeline --workdir=runs/fast --target_latency_ms=0.055 --latency_mode=int8

Each stage runs one of the package's programs in a subprocess (``python -m autonl_tf.search_main``,
``autonl_tf.train_main``, ``autonl_tf.eval_main``, ``autonl_tf.export``: exactly what a user
would type, printed before it runs), so the pipeline exercises the programs end to end. Rerunning the
same command resumes: every stage resumes from its checkpoints or finds its work done. The run
ends with a summary of the searched network, its accuracy, the TFLite latency and every artefact.

With --target_latency_ms the search aims at a batch-1 latency instead of MACs, predicted by a
latency table (docs/latency.md; by default the committed table of the demo space for
--latency_mode, autonl_tf/latency/tables/); the summary then sets the table's prediction and the
measured latency of the searched and of the exported network against the target.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from absl import app, flags

from autonl_tf import files
from autonl_tf.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Where every stage writes (search/, train/, export/).")
flags.DEFINE_float("target_flops", None, "MACs target of the search (default: --target_fraction "
                   "of the largest network of the demo search space).")
flags.DEFINE_float("target_fraction", 0.7, "Default target as a fraction of the largest child.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("smoke", False, "Reduced size for CI: half the search steps.")
flags.DEFINE_integer("seed", None, "Weight-initialisation seed of the search and the retraining "
                     "(default: the configs' seed, 0).")
flags.DEFINE_integer("search_steps", None, "Search steps (default: the search:demo config).")
flags.DEFINE_integer("train_steps", None, "Retraining steps (default: the demo config's, 1875).")
flags.DEFINE_string("tflite", None, "TFLite modes to export and verify (default: those of "
                    "`python -m autonl_tf.export`, float32 + int8, int8 left out with its reason "
                    "when it fails verification).")
flags.DEFINE_float("min_top1_agreement", 0.9, "Export fails if a TFLite model agrees with "
                   "TensorFlow on fewer eval images than this (see autonl_tf.export).")
flags.DEFINE_integer("latency_runs", 1000, "Timed batch-1 LiteRT runs per TFLite model for the "
                     "summary (the fastest is reported; 0.04 ms each at the demo's 32 px).")
flags.DEFINE_float("require_target_within", None, "Fail unless the searched MACs are within this "
                   "relative distance of the target (CI: 0.05).")
flags.DEFINE_float("require_top1", None, "Fail unless the retrained top-1 reaches this (CI).")
flags.DEFINE_float("require_supernet_top1", None, "Fail unless the supernet's held-out top-1 "
                   "reaches this at the end of the warm-up and at the end of the search.")
flags.DEFINE_float("target_latency_ms", None, "Search for this batch-1 latency in ms instead of "
                   "MACs, predicted by --latency_table (docs/latency.md).", lower_bound=0.0)
flags.DEFINE_enum("latency_mode", "float32", ["float32", "int8"], "TFLite mode of the latency "
                  "target: which committed table is the default, which export is timed.")
flags.DEFINE_string("latency_table", None, "Latency table of the device to search for (default: "
                    "the committed demo table of --latency_mode, measured on the machine named "
                    "in it; build one for yours with python -m autonl_tf.latency.build_table).")

SMOKE_SEARCH_STEPS = 1000
# Written into --workdir at the end of a run: the figures of the printed summary that no stage
# writes elsewhere (stage times, TFLite latencies and sizes) and the summary text itself, for
# benchmarks/demo_runs.py and anyone comparing runs.
PIPELINE_SUMMARY_FILE = "pipeline_summary.json"


class StageError(RuntimeError):
    """A stage's command failed; its output has been shown. The pipeline exits with the
    stage's own exit code (README, "Exit codes": e.g. 4 when the search's supernet did not
    learn during its warm-up)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


@dataclasses.dataclass
class Stage:
    name: str
    argv: list[str]
    seconds: float = 0.0
    skipped: str | None = None  # why the stage was not run (its result was already there)
    # Returns why the stage's result is already there (then it is not rerun), else None.
    already_done: Callable[[], str | None] | None = None


def _latest_checkpoint_name(model_dir: str) -> str | None:
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(model_dir)
    return os.path.basename(latest) if latest else None


def evaluated_already(train_dir: str) -> str | None:
    """eval_results.json holds an EMA evaluation of the latest checkpoint."""
    latest = _latest_checkpoint_name(train_dir)
    path = os.path.join(train_dir, files.EVAL_RESULTS_FILE)
    if latest is None or not os.path.exists(path):
        return None
    step = int(latest.rsplit("-", 1)[1])
    if any(r.get("step") == step and r.get("ema") for r in files.read_json(path)):
        return f"eval_results.json already holds the EMA evaluation of {latest}"
    return None


def exported_already(train_dir: str, export_dir: str, tflite_modes: str | None) -> str | None:
    """export_card.json says the export holds the latest checkpoint's EMA weights and modes
    (None: the export command's default modes, of which a failed int8 may have been left out)."""
    from autonl_tf.export.modes import DEFAULT_TFLITE_MODES

    latest = _latest_checkpoint_name(train_dir)
    path = os.path.join(export_dir, files.EXPORT_CARD_FILE)
    if latest is None or not os.path.exists(path):
        return None
    card = files.read_json(path)
    weights = card.get("weights") or {}
    modes = ({m.strip() for m in tflite_modes.split(",") if m.strip()} if tflite_modes
             else set(DEFAULT_TFLITE_MODES))
    done = set(card.get("tflite", {})) | set(card.get("tflite_left_out") or {})
    if weights.get("checkpoint") == latest and weights.get("ema") and done == modes:
        return f"{export_dir} already holds {latest} (EMA) with TFLite {', '.join(sorted(modes))}"
    return None


def run_stage(stage: Stage, index: int, total: int) -> None:
    """Runs one stage's command, streaming its output, and times it."""
    reason = stage.already_done() if stage.already_done else None
    if reason:
        stage.skipped = reason
        print(f"\n[{index}/{total}] {stage.name}: skipped, {reason}", flush=True)
        return
    print(f"\n[{index}/{total}] {stage.name}\n$ {shlex.join(stage.argv)}", flush=True)
    # The stages are modules of this package (``python -m autonl_tf.<program>``): they import
    # autonl_tf as this process did (same interpreter, working directory and PYTHONPATH).
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.monotonic()
    result = subprocess.run(stage.argv, env=env)
    stage.seconds = time.monotonic() - start
    if result.returncode != 0:
        raise StageError(f"stage '{stage.name}' failed (exit {result.returncode}); its output is "
                         "above. Fix the cause and rerun the same command: finished work is kept.",
                         result.returncode if result.returncode > 0 else 1)
    print(f"[{index}/{total}] {stage.name}: done in {stage.seconds:.0f}s", flush=True)


@dataclasses.dataclass(frozen=True)
class SearchSetting:
    """What the retraining must share with the search for the MACs target to mean the same."""

    image_size: int
    width_multiplier: float
    feasible_range: tuple[int, int]


def demo_search_setting() -> SearchSetting:
    """Image size, width and feasible MACs range of the ``search:demo`` config."""
    from autonl_tf.data import prepare
    from autonl_tf.runner.config import load_config
    from autonl_tf.search import SearchCost, space_from_config

    config = load_config("search:demo")
    data = prepare(config.data)
    space = space_from_config(config.search_space)
    width = float(config.model.width_multiplier)
    cost = SearchCost(space, int(data.image_size), int(data.num_classes), width)
    return SearchSetting(int(data.image_size), width, cost.feasible_range())


@dataclasses.dataclass(frozen=True)
class LatencySetting:
    """A latency target's table, as the search will use it."""

    table_path: str
    mode: str
    threads: int
    device: str
    feasible_range_ms: tuple[float, float]
    here: bool  # the table was measured on this machine (its latencies can be checked here)


def demo_latency_setting(table_path: str | None, mode: str) -> LatencySetting:
    """The latency table for the ``search:demo`` config (the committed one by default).

    Raises:
      LatencyTableError: a missing table, or one built for another space / size / width / mode.
    """
    from autonl_tf.data import prepare
    from autonl_tf.latency.committed import demo_table
    from autonl_tf.latency.measure import measurable_here
    from autonl_tf.runner.config import load_config
    from autonl_tf.search import space_from_config
    from autonl_tf.search.latency_cost import LatencyCost, LatencyTable

    config = load_config("search:demo")
    data = prepare(config.data)
    path = os.path.abspath(table_path or demo_table(mode))
    table = LatencyTable.load(path)
    cost = LatencyCost(space_from_config(config.search_space), table, int(data.image_size),
                       int(data.num_classes), float(config.model.width_multiplier), mode=mode)
    return LatencySetting(path, table.mode, table.threads, table.device, cost.feasible_range(),
                          measurable_here(table) is None)


def retrain_command(python: str, search_dir: str, train_dir: str, setting: SearchSetting,
                    train_steps: int | None = None, seed: int | None = None) -> list[str]:
    """The command that retrains the searched architecture (the pipeline's second stage).

    At the search's resolution and width (the target is a MACs count of that network), with the
    demo's recipe (configs/demo.py).
    """
    command = [python, "-m", "autonl_tf.train_main", "--config=demo",
               f"--arch={search_dir}/arch.txt",
               f"--model_dir={train_dir}", f"--config.data.image_size={setting.image_size}",
               f"--config.model.width_multiplier={setting.width_multiplier}"]
    if train_steps:
        command.append(f"--train_steps={train_steps}")
    if seed is not None:
        command.append(f"--config.train.seed={seed}")
    return command


def tflite_latencies_ms(paths: dict[str, str], runs: int, warmup: int = 20,
                        rounds: int = 10) -> dict[str, float]:
    """{name: fastest batch-1 latency in ms} of TFLite models with the LiteRT interpreter.

    One thread (what a phone app gets by default; no contention between the two threads of a
    shared 2-core machine), ``warmup`` untimed runs, then the ``runs`` timed runs taken
    round-robin over the models in ``rounds`` rounds so that load from other processes hits
    them alike (`autonl_tf.latency.timing`, which times the latency tables the same way). The
    fastest run is the least disturbed one: a median on a shared CPU measured 6.21 ms in one run
    and 0.05 ms in the next for the same model.
    """
    from autonl_tf.latency.timing import time_tflite_models

    timings = time_tflite_models(paths, threads=1, rounds=rounds,
                                 runs_per_round=max(1, runs // rounds), warmup=warmup)
    return {name: timing.fastest_ms for name, timing in timings.items()}


def check_requirements(workdir: str, target: float | None, within: float | None,
                       min_top1: float | None, min_supernet_top1: float | None = None
                       ) -> list[str]:
    """The acceptance checks CI asks for; returns the failures (empty: all hold).

    ``within``: of the MACs target, or under a latency target of the searched child's measured
    latency (its predicted one when the table is another device's).
    """
    failures = []
    summary = files.read_json(os.path.join(workdir, "search", files.SEARCH_SUMMARY_FILE))
    if min_supernet_top1 is not None:
        for key, when in (("supernet_heldout_top1_after_warmup", "at the end of the warm-up"),
                          ("supernet_heldout_top1", "at the end of the search")):
            value = summary.get(key)
            if value is None or value < min_supernet_top1:
                failures.append(f"supernet held-out top-1 {when} is {value} (required "
                                f"{min_supernet_top1:.3f})")
    latency = summary.get("latency") or {}
    if within is not None and latency.get("target_ms"):
        measured = latency.get("measured_ms")
        value, what = ((measured, "measured") if measured is not None
                       else (latency["predicted_ms"], "predicted"))
        goal = latency["target_ms"]
        if abs(value - goal) > within * goal:
            failures.append(f"searched child's {what} latency {value:.4f} ms is not within "
                            f"{within:.0%} of the target {goal:.4f} ms")
    elif within is not None:
        macs = summary["macs"]
        if abs(macs - target) > within * target:
            failures.append(f"searched MACs {macs} are not within {within:.0%} of the target "
                            f"{target:.0f}")
    if min_top1 is not None:
        top1 = files.read_json(os.path.join(workdir, "train", files.EVAL_RESULTS_FILE))[-1]["top1"]
        if top1 < min_top1:
            failures.append(f"top-1 {top1:.3f} is below the required {min_top1:.3f}")
    return failures


def supernet_learning_line(summary: dict) -> str:
    """How well the supernet learned: held-out top-1 at the end of the warm-up and of the search."""
    chance = 100.0 / summary["num_classes"]
    after_warmup = summary.get("supernet_heldout_top1_after_warmup")
    final = summary.get("supernet_heldout_top1")
    if final is None:
        return "supernet held-out top-1: not measured"
    return (f"supernet held-out top-1 ({summary.get('heldout_images', 0)} eval images): "
            + (f"{100 * after_warmup:.1f}% after the warm-up (step {summary['warmup_steps']}), "
               if after_warmup is not None else "")
            + f"{100 * final:.1f}% at the end of the search (chance {chance:.1f}%)")


def latency_lines(summary: dict, exported_ms: dict[str, float]) -> list[str]:
    """The latency target against the table's prediction and the measured latencies."""
    latency = summary["latency"]
    goal = latency["target_ms"]
    versus = lambda ms: f"{ms:.4f} ms ({100 * (ms - goal) / goal:+.1f}%)"  # noqa: E731
    lines = [f"latency target {goal:.4f} ms ({latency['mode']}, {latency['threads']} thread(s); "
             f"table {latency['table']}, measured on {latency['device']}):",
             f"  predicted by the table        {versus(latency['predicted_ms'])}"]
    if latency.get("measured_ms") is not None:
        lines.append(f"  searched child, measured      {versus(latency['measured_ms'])} "
                     f"({latency['measured']})")
    else:
        lines.append(f"  searched child: {latency['measured']}")
    mode = latency["mode"]
    if mode in exported_ms:
        lines.append(f"  exported TFLite {mode:<8}      {versus(exported_ms[mode])} (LiteRT, "
                     f"{latency['threads']} thread(s), fastest of 20 rounds x 50 runs)")
    return lines


def summarize(workdir: str, target: float | None, stages: list[Stage], latency_runs: int) -> str:
    """The closing summary: architecture, MACs/params vs target, accuracy, latency, artefacts.

    Also writes ``<workdir>/pipeline_summary.json`` (`PIPELINE_SUMMARY_FILE`): the stage times
    (a stage found done has ``skipped`` set and 0 seconds), the TFLite latencies, sizes and
    agreements, the modes left out, and this text without its banner.
    """
    search_dir, train_dir, export_dir = (os.path.join(workdir, d) for d in ("search", "train", "export"))
    summary = files.read_json(os.path.join(search_dir, files.SEARCH_SUMMARY_FILE))
    arch_path = os.path.join(search_dir, files.ARCH_FILE)
    with open(arch_path) as f:
        arch_lines = [line.strip() for line in f if line.strip()]
    macs, params = int(summary["macs"]), int(summary["params"])
    evals = files.read_json(os.path.join(train_dir, files.EVAL_RESULTS_FILE))
    last = evals[-1] if isinstance(evals, list) else evals
    num_classes = int(files.read_json(os.path.join(train_dir, files.CONFIG_FILE))["data"]["num_classes"])
    lines = ["", "=" * 78, "AutoNL pipeline summary", "=" * 78,
             f"searched architecture ({len(arch_lines)} blocks, {arch_path}):"]
    lines += [f"  {line}" for line in arch_lines]
    if target:
        lines.append(f"MACs {macs / 1e6:.4f}M vs target {target / 1e6:.4f}M "
                     f"({100 * (macs - target) / target:+.2f}%), params {params / 1e6:.4f}M")
    else:
        lines.append(f"MACs {macs / 1e6:.4f}M (the search aimed at a latency), params "
                     f"{params / 1e6:.4f}M")
    lines.append(supernet_learning_line(summary))
    lines.append(f"accuracy ({last['num_images']} eval images, {'EMA' if last.get('ema') else 'raw'}"
                 f" weights, step {last['step']}): top-1 {100 * last['top1']:.1f}%, "
                 f"top-5 {100 * last['top5']:.1f}% (chance {100 / num_classes:.1f}%)")
    export_card = files.read_json(os.path.join(export_dir, files.EXPORT_CARD_FILE))
    tflite_files = {mode: os.path.join(export_dir, entry["file"])
                    for mode, entry in export_card.get("tflite", {}).items()}
    latencies = tflite_latencies_ms(tflite_files, latency_runs)
    tflite_record = {}
    for mode, tflite in tflite_files.items():
        agreement = (export_card.get("verification", {}).get("tflite") or {}).get(mode) or {}
        ratio = (f" ({latencies[mode] / latencies['float32']:.2f}x float32)"
                 if "float32" in latencies and mode != "float32" else "")
        # int8: how LightNL's products were computed (docs/phones.md).
        computed_in = export_card["tflite"][mode].get("lightnl_products")
        products = f", LightNL products in {computed_in}" if computed_in else ""
        lines.append(
            f"TFLite {mode:<8} {os.path.getsize(tflite) / 1024:6.0f} KiB, batch-1 latency "
            f"{latencies[mode]:.3f} ms{ratio} (LiteRT, 1 thread, fastest of {latency_runs}), "
            f"top-1 agreement with TensorFlow "
            f"{100 * agreement.get('top1_agreement', float('nan')):.1f}% on "
            f"{agreement.get('num_images', 0)} eval images{products}")
        tflite_record[mode] = {
            "latency_ms": latencies[mode], "size_bytes": os.path.getsize(tflite),
            "top1_agreement": agreement.get("top1_agreement"),
            "num_images": agreement.get("num_images"), "lightnl_products": computed_in}
    for mode, reason in export_card.get("tflite_left_out", {}).items():
        lines.append(f"TFLite {mode:<8} left out: {reason}")
    if (summary.get("latency") or {}).get("target_ms"):
        latency = summary["latency"]
        exported = {}
        if latency["mode"] in tflite_files:
            from autonl_tf.latency.timing import time_tflite_models

            exported[latency["mode"]] = time_tflite_models(
                {"exported": tflite_files[latency["mode"]]}, latency["threads"], rounds=20,
                runs_per_round=50)["exported"].fastest_ms
        lines += latency_lines(summary, exported)
    lines.append("artefacts:")
    for label, path in (
            ("search figure", os.path.join(search_dir, files.SEARCH_FIGURE_FILE)),
            ("search summary", os.path.join(search_dir, files.SEARCH_SUMMARY_FILE)),
            ("architecture", arch_path),
            ("checkpoints + TensorBoard", train_dir),
            ("eval results", os.path.join(train_dir, files.EVAL_RESULTS_FILE)),
            ("SavedModel", export_dir)):
        lines.append(f"  {label:<26} {path}")
    for tflite in sorted(glob.glob(os.path.join(export_dir, "*.tflite"))):
        lines.append(f"  {'TFLite':<26} {tflite}")
    lines.append("time: " + ", ".join(f"{s.name} {s.seconds:.0f}s" for s in stages)
                 + f" (total {sum(s.seconds for s in stages):.0f}s)")
    text = "\n".join(lines)
    files.write_json_atomic(os.path.join(workdir, PIPELINE_SUMMARY_FILE), {
        "target_flops": target,
        "stages": [{"name": s.name, "seconds": s.seconds, "skipped": s.skipped} for s in stages],
        "seconds_total": sum(s.seconds for s in stages),
        "latency_runs": latency_runs,
        "tflite": tflite_record,
        "tflite_left_out": export_card.get("tflite_left_out") or {},
        "summary_text": "\n".join(lines[4:]),  # without the banner
    })
    return text


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    workdir = os.path.abspath(FLAGS.workdir)
    python = sys.executable
    print(f"AutoNL pipeline on the embedded dataset -> {workdir}", flush=True)
    try:
        setting = demo_search_setting()
    except Exception as e:  # noqa: BLE001  (any failure here is a setup problem to report)
        sys.exit(f"error: cannot prepare the embedded dataset or the search space: {e}")
    low, high = setting.feasible_range
    target = FLAGS.target_flops or max(float(low), FLAGS.target_fraction * high)
    latency = None
    if FLAGS.target_latency_ms:
        try:
            latency = demo_latency_setting(FLAGS.latency_table, FLAGS.latency_mode)
        except UserError as e:
            sys.exit(f"error: {e}")
        fast, slow = latency.feasible_range_ms
        if not fast <= FLAGS.target_latency_ms <= slow:
            sys.exit(f"error: --target_latency_ms={FLAGS.target_latency_ms:g} is outside the "
                     f"feasible range {fast:.4f}..{slow:.4f} ms of the demo space predicted by "
                     f"{latency.table_path}")
        target = None
        print(f"search target: {FLAGS.target_latency_ms:.4f} ms batch-1 latency, {latency.mode}, "
              f"{latency.threads} thread(s) (feasible {fast:.4f}..{slow:.4f} ms predicted by "
              f"{latency.table_path}, measured on {latency.device})", flush=True)
        if not latency.here:
            from autonl_tf.latency.committed import rebuild_command

            print("note: that table was measured on another machine, so the latencies measured "
                  "here will not match its predictions; build one for this machine with\n  "
                  + rebuild_command(latency.mode), flush=True)
    else:
        print(f"search target: {target / 1e6:.3f}M MACs (feasible {low / 1e6:.3f}M.."
              f"{high / 1e6:.3f}M at {setting.image_size}px, width "
              f"x{setting.width_multiplier:g})", flush=True)
    search_steps = FLAGS.search_steps or (SMOKE_SEARCH_STEPS if FLAGS.smoke else None)
    # Smoke size shortens the search only: a less trained network would not learn the colour
    # relation, and its near-tied logits would make the int8 verification meaningless.
    train_steps = FLAGS.train_steps
    search_dir, train_dir, export_dir = (os.path.join(workdir, d) for d in ("search", "train", "export"))
    search = [python, "-m", "autonl_tf.search_main", "--config=search:demo",
              f"--model_dir={search_dir}"]
    if latency is not None:
        search += [f"--target_latency_ms={FLAGS.target_latency_ms:g}",
                   f"--latency_table={latency.table_path}",
                   f"--config.search.latency_mode={latency.mode}"]
    else:
        search.append(f"--target_flops={target:.0f}")
    if search_steps:
        search.append(f"--train_steps={search_steps}")
    if FLAGS.seed is not None:
        search.append(f"--config.train.seed={FLAGS.seed}")
    train = retrain_command(python, search_dir, train_dir, setting, train_steps, FLAGS.seed)
    stages = [
        Stage("search under the " + ("latency" if latency else "MACs") + " target", search),
        Stage("retrain the searched architecture", train),
        Stage("evaluate (top-1/top-5, EMA weights)", [python, "-m", "autonl_tf.eval_main",
                                                      f"--model_dir={train_dir}"],
              already_done=lambda: evaluated_already(train_dir)),
        Stage("export SavedModel + TFLite (verified)",
              [python, "-m", "autonl_tf.export", f"--model_dir={train_dir}",
               f"--export_dir={export_dir}", "--num_verify_images=200",
               f"--min_top1_agreement={FLAGS.min_top1_agreement}"]
              + ([f"--tflite={FLAGS.tflite}"] if FLAGS.tflite is not None else []),
              already_done=lambda: exported_already(train_dir, export_dir, FLAGS.tflite)),
    ]
    try:
        for index, stage in enumerate(stages, start=1):
            run_stage(stage, index, len(stages))
    except StageError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.returncode)
    print(summarize(workdir, target, stages, FLAGS.latency_runs), flush=True)
    failures = check_requirements(workdir, target, FLAGS.require_target_within,
                                  FLAGS.require_top1, FLAGS.require_supernet_top1)
    if failures:
        sys.exit("error: " + "; ".join(failures))


def run() -> None:
    # The flag parser every autonl_tf command shares: --help exits 0, a bad flag is one line
    # and exit 2.
    from autonl_tf.runner import cli

    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
