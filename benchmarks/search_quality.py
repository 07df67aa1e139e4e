"""Does the search choose by accuracy? Searched vs random vs no-LightNL vs shuffled-label searches.

The proxy task is the demo's own: the embedded dataset at 32 px (label = the shape of two tokens
and whether their colours match), the 'demo' search space at width 0.25, the demo search's MACs
target (450k, within +-2%), and every child retrained by the demo recipe cut to --train_steps
(1000 by default), where networks have not all converged. Every child is retrained with the same
recipe, once per --seeds seed (weights and data order), on the TRUE labels, and evaluated (EMA
weights) on the 600 held-out images.

Two phases, so that the proxy is fixed before any search runs on it:

  --phase=random     the sanity check (a hand-placed LightNL vs the same network without) and
                     --num_random random children at the target, and how much of the spread of
                     their top-1 is the architecture's rather than the retraining seed's (a
                     one-way analysis of variance, benchmarks/ranking_stats.py: a search can
                     only move the architecture's part); writes the JSON
  --phase=searches   reads that JSON (refuses a different proxy), then --search_seeds searches
                     of each condition: true labels ('searched'), shuffled training labels
                     (retrained on the true ones), no LightNL candidates; retrains each searched
                     child; adds how each ranks among the random children (percentiles) and how
                     the supernet ranks networks: for every random child, its held-out top-1
                     inside the supernet of each true-label search at the end of the warm-up
                     (inherited weights, BatchNorm re-estimated) against its standalone top-1,
                     Kendall's tau (Yu et al., "Evaluating the Search Phase of Neural
                     Architecture Search", ICLR 2020)

    python benchmarks/search_quality.py --phase=random      # ~40 min on 2 cores
    python benchmarks/search_quality.py --phase=searches    # 25-40 min on 2 cores
    python benchmarks/search_quality.py --phase=ranking     # ~25 min on 2 cores
    # The same population question at the demo recipe's full length (~15 min on 2 cores):
    python benchmarks/search_quality.py --phase=random --train_steps=1875 --num_random=4 \
        --seeds=0,1,2 --sanity_seeds=0,1 \
        --output_json=benchmarks/results/search_quality_full_recipe.json
    # ... and with fewer or more training images (~12 min each on 2 cores):
    python benchmarks/search_quality.py --phase=random --num_train=1000 --num_random=6 \
        --seeds=0,1,2 --sanity_seeds=0,1,2 \
        --output_json=benchmarks/results/search_quality_1000_images.json
    python benchmarks/search_quality.py --phase=random --num_train=10000 --num_random=6 \
        --seeds=0,1,2 --sanity_seeds=0,1,2 \
        --output_json=benchmarks/results/search_quality_10000_images.json
    # ... and with smaller networks trained fully (~12 min on 2 cores):
    python benchmarks/search_quality.py --phase=random --target_flops=300000 --train_steps=1875 \
        --num_random=6 --seeds=0,1 --sanity_seeds=0,1 \
        --output_json=benchmarks/results/search_quality_300k_macs.json

--phase=report rewrites the tables and the summary of --output_json from the figures it holds,
after a change to how they are reported; the measurements, command, date and machine stay.

--phase=ranking is the ranking diagnostic alone, for comparing search settings without
retraining anything: for each --ranking_setting (a name and extra search_main flags) and each
--search_seeds seed, one true-label search, and Kendall's tau of its supernet at the end of the
warm-up against the committed random population's standalone top-1. It reads the random
population from --output_json (the searches' file) and writes
benchmarks/results/supernet_ranking.json (--ranking_json).
    python benchmarks/search_quality.py --quick --workdir=/tmp/sq_quick   # the code path, minutes

The searches and retrainings are the package's own programs (`python -m autonl_tf.search_main`,
`autonl_tf.train_main --mode=train_and_eval`), run --jobs at a time as subprocesses, with one
TensorFlow thread each. The shuffled-label training split is written as real TFRecord shards.
Results: benchmarks/results/search_quality.json (`record.write_result`).
"""

from __future__ import annotations

import concurrent.futures
import glob
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from autonl_tf import files  # noqa: E402
from benchmarks import record  # noqa: E402
from benchmarks.ranking_stats import (  # noqa: E402
    kendall_tau,
    one_std_bar,
    runs_by_child,
    variance_components,
    who_reaches,
)

FLAGS = flags.FLAGS
flags.DEFINE_enum("phase", "random", ["random", "searches", "ranking", "report"],
                  "Which phase to run (see above).")
flags.DEFINE_string("workdir", None, "Searches, retrainings and data (default: a temp dir).")
flags.DEFINE_string("output_json", None, "Default: benchmarks/results/search_quality.json "
                    "(with --quick: <workdir>/search_quality.json).")
flags.DEFINE_integer("train_steps", 1000, "Retraining steps of each child (demo recipe, batch 64).")
flags.DEFINE_integer("search_steps", None, "Steps of each search (default: the demo search's).")
flags.DEFINE_float("target_flops", None, "MACs target (default: the demo search's).")
flags.DEFINE_float("macs_tolerance", 0.02, "Random children within this relative distance of "
                   "the target.")
flags.DEFINE_integer("num_train", 3000, "Training images of the embedded set (the demo's: "
                     "3000); the held-out 600 stay the same images.")
flags.DEFINE_integer("num_random", 12, "Random children of the space at the target.")
flags.DEFINE_list("seeds", ["0", "1"], "Retraining seeds (weights and data order).")
flags.DEFINE_list("sanity_seeds", ["0", "1", "2", "3", "4", "5"], "Retraining seeds of the "
                  "hand-placed LightNL check (more than --seeds: one network against one).")
flags.DEFINE_list("search_seeds", ["0", "1", "2"], "Search seeds (weights and data order).")
flags.DEFINE_integer("jobs", 2, "Programs run at once (one TensorFlow thread each).")
flags.DEFINE_multi_string(
    "ranking_setting", [
        "default:",
        "indicator keep 0.5:--config.search.indicator_keep_probability=0.5",
        "no indicator dropout:--config.search.indicator_keep_probability=1.0"],
    "--phase=ranking: 'NAME:FLAGS', FLAGS the extra search_main flags (space-separated) of "
    "one search setting; repeat the flag for several.")
flags.DEFINE_string("ranking_json", None, "--phase=ranking output (default: "
                    "benchmarks/results/supernet_ranking.json).")
flags.DEFINE_bool("quick", False, "A few minutes: short searches and retrainings, 3 random "
                  "children, one seed; checks the code path, not the search.")

CONDITIONS = ("searched", "shuffled_labels", "no_lightnl")
WIDTH = 0.25
IMAGE_SIZE = 32

# A search config without LightNL candidates, written next to the runs (configs are code).
NO_LIGHTNL_CONFIG = '''
from autonl_tf.runner.config import config_module


def get_config():
    config = config_module("search").get_config("demo")
    for stage in config.search_space.stages:
        stage["lightnl"] = False
    return config
'''


# -- programs --------------------------------------------------------------------------------

def _env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1",
               TF_NUM_INTEROP_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


def _run(argv: list[str], log_path: str) -> None:
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, *argv], cwd=REPO, env=_env(), stdout=log,
                                stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed (exit {result.returncode}), see "
                           f"{log_path}")


def _common_flags(seed: int) -> list[str]:
    """The flags of one seed, and the proxy's training set size, of every program."""
    return [f"--config.train.seed={seed}", "--config.data.deterministic=true",
            f"--config.data.seed={seed}", f"--config.data.embedded.num_train={FLAGS.num_train}"]


def search(job: dict) -> dict:
    """One search (autonl_tf.search_main); returns its summary's figures and the child."""
    model_dir = job["model_dir"]
    summary_path = os.path.join(model_dir, "search_summary.json")
    if not (os.path.exists(summary_path) and os.path.exists(os.path.join(model_dir, "arch.txt"))
            and json.load(open(summary_path))["step"] == job["steps"]):
        # Evaluations and checkpoints every eighth of the search (250 steps of the demo's 2000):
        # the warm-up ends on one, and its supernet is kept for the ranking diagnostic.
        every = max(1, job["steps"] // 8)
        argv = ["-m", "autonl_tf.search_main", f"--config={job['config']}", f"--model_dir={model_dir}",
                f"--target_flops={job['target']}", f"--train_steps={job['steps']}",
                f"--config.train.checkpoint_every_steps={every}",
                f"--config.eval.every_steps={every}",
                "--config.train.max_checkpoints_to_keep=20",
                *_common_flags(job["seed"]), *job.get("extra", [])]
        _run(argv, model_dir + ".log")
    with open(summary_path) as f:
        summary = json.load(f)
    return {"arch": summary["arch"], "macs": summary["macs"], "seed": job["seed"],
            "relative_error": summary["relative_error"],
            "supernet_heldout_top1_after_warmup": summary["supernet_heldout_top1_after_warmup"],
            "supernet_heldout_top1": summary["supernet_heldout_top1"],
            "warmup_steps": summary["warmup_steps"], "model_dir": model_dir}


def retrain(job: dict) -> dict:
    """One retraining (autonl_tf.train_main --mode=train_and_eval); its final EMA top-1."""
    model_dir, steps = job["model_dir"], job["steps"]
    results = os.path.join(model_dir, "eval_results.json")

    def final():
        if not os.path.exists(results):
            return None
        rows = [r for r in json.load(open(results)) if r["step"] == steps]
        return rows[-1] if rows else None

    if final() is None:
        os.makedirs(model_dir, exist_ok=True)
        arch_file = os.path.join(model_dir, "arch.txt")
        with open(arch_file, "w") as f:
            f.write("\n".join(job["arch"]) + "\n")
        argv = ["-m", "autonl_tf.train_main", "--config=demo", f"--arch={arch_file}",
                f"--model_dir={model_dir}", "--mode=train_and_eval", f"--train_steps={steps}",
                f"--config.model.width_multiplier={WIDTH}",
                f"--config.data.image_size={IMAGE_SIZE}",
                f"--config.eval.every_steps={steps}",
                f"--config.train.checkpoint_every_steps={steps}", *_common_flags(job["seed"]),
                *job.get("extra", [])]
        _run(argv, model_dir + ".log")
    row = final()
    return {"top1": float(row["top1"]), "seed": job["seed"]}


def run_all(function, jobs: list[dict]) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(FLAGS.jobs) as pool:
        return list(pool.map(function, jobs))


# -- the proxy -------------------------------------------------------------------------------

def demo_defaults() -> tuple[float, int]:
    from autonl_tf.runner.config import config_module

    config = config_module("search").get_config("demo")
    return float(config.search.target_flops), int(config.train.train_steps)


def demo_space():
    from autonl_tf.search import SearchCost, space_from_config, spaces

    space = space_from_config(spaces.get_config("demo"))
    return space, SearchCost(space, IMAGE_SIZE, 10, WIDTH)


def random_children(space, cost, target: float, count: int) -> list[dict]:
    """``count`` distinct random children within --macs_tolerance of ``target`` (seed 0)."""
    from autonl_tf.arch import encode_arch

    found, seen, rng = [], set(), random.Random(0)
    for _ in range(500_000):
        decisions = space.random(rng.randrange(1 << 30))
        macs = cost.macs(decisions)
        if abs(macs - target) > FLAGS.macs_tolerance * target:
            continue
        arch = encode_arch(space.child_blocks(decisions))
        if arch not in seen:
            seen.add(arch)
            found.append({"arch": arch.splitlines(), "macs": macs})
            if len(found) == count:
                return found
    raise RuntimeError(f"found only {len(found)} random children within "
                       f"{FLAGS.macs_tolerance:.0%} of {target:,.0f} MACs")


def hand_placed(space, cost) -> tuple[dict, dict]:
    """A hand-written child with a LightNL 1/4 after the last block of every stage that may
    host one, and the same child without them."""
    from autonl_tf.arch import encode_arch

    last = {block.stage: block.index for block in space.blocks}
    with_nl, without = [], []
    for block in space.blocks:
        kernel, expand = block.kernel_sizes[0], block.expand_ratios[-1]
        without.append(block.decision(kernel_size=kernel, expand_ratio=expand))
        nl = block.has_lightnl and block.index == last[block.stage]
        with_nl.append(block.decision(kernel_size=kernel, expand_ratio=expand,
                                      lightnl_ratio=0.25 if nl else None, lightnl_stride=1))
    return tuple({"arch": encode_arch(space.child_blocks(d)).splitlines(), "macs": cost.macs(d)}
                 for d in (with_nl, without))


def shuffled_label_copy(data_dir: str, root: str, seed: int = 1234) -> str:
    """A copy of the embedded set whose training labels are a random permutation of the
    originals (same images, same label counts), in the builder's shard layout (labels.txt,
    metadata.json), which the demo configs read as one's own data; held-out split unchanged."""
    import numpy as np
    import tensorflow as tf

    out_dir = os.path.join(root, "shuffled_labels_data")
    done = os.path.join(out_dir, ".complete")
    if os.path.exists(done):
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    shards = sorted(glob.glob(os.path.join(data_dir, "train-*-of-*")))
    examples = [tf.train.Example.FromString(r.numpy())
                for shard in shards for r in tf.data.TFRecordDataset(shard)]
    labels = [e.features.feature["image/class/label"].int64_list.value[0] for e in examples]
    permuted = np.random.default_rng(seed).permutation(labels)
    per_shard = math.ceil(len(examples) / len(shards))
    for index, shard in enumerate(shards):
        part = slice(index * per_shard, (index + 1) * per_shard)
        with tf.io.TFRecordWriter(os.path.join(out_dir, os.path.basename(shard))) as writer:
            for example, label in zip(examples[part], permuted[part], strict=True):
                example.features.feature["image/class/label"].int64_list.value[:] = [int(label)]
                writer.write(example.SerializeToString())
    for name in ("labels.txt", "metadata.json", *map(os.path.basename, glob.glob(
            os.path.join(data_dir, "validation-*-of-*")))):
        shutil.copy(os.path.join(data_dir, name), out_dir)
    open(done, "w").close()
    return out_dir


def stats(runs: list[dict]) -> dict:
    values = [r["top1"] for r in runs]
    return {"top1_mean": statistics.fmean(values),
            "top1_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": len(values)}


def child_means(runs: list[dict]) -> dict[int, float]:
    """{child index: mean top-1 over its seeds}."""
    return {child: statistics.fmean(v) for child, v in runs_by_child(runs).items()}


def retrain_children(group: str, children: list[dict], root: str, steps: int,
                     seeds: list[int]) -> list[dict]:
    jobs = [{"model_dir": os.path.join(root, "train", f"{group}_{i}_seed{s}"), "steps": steps,
             "arch": child["arch"], "seed": s, "child": i}
            for i, child in enumerate(children) for s in seeds]
    runs = run_all(retrain, jobs)
    for job, run in zip(jobs, runs, strict=True):
        run["child"] = job["child"]
        print(f"  {group} #{job['child']} seed {job['seed']}: top-1 {100 * run['top1']:.1f}%",
              flush=True)
    return runs


# -- ranking diagnostic ----------------------------------------------------------------------

def supernet_accuracies(search_dir: str, children: list[dict]) -> list[float]:
    """Held-out top-1 of each child inside the supernet at the end of the warm-up: the
    checkpoint of that step restored for every child, its decisions set, BatchNorm statistics
    re-estimated (the search's own held-out evaluator)."""
    import tensorflow as tf

    from autonl_tf import data as data_lib
    from autonl_tf.arch import decode_arch
    from autonl_tf.runner import checkpoints
    from autonl_tf.search import decisions_for_arch
    from autonl_tf.search.decode import set_decisions
    from autonl_tf.search.experiment import build_supernet, heldout_evaluator
    from autonl_tf.search.space import space_from_config

    resolved = checkpoints.load_experiment_config(search_dir)
    space = space_from_config(resolved.search_space)
    strategy = tf.distribute.get_strategy()
    supernet = build_supernet(resolved, space)
    path = os.path.join(search_dir, f"ckpt-{int(resolved.search.warmup_steps)}")
    cfg = data_lib.prepare(resolved.data)
    evaluate = heldout_evaluator(
        supernet, strategy,
        lambda ctx: data_lib.build_train_dataset(cfg, resolved.train.batch_size, ctx),
        lambda ctx: data_lib.build_eval_dataset(cfg, resolved.eval.batch_size, ctx),
        None, int(resolved.search.bn_recalibration_steps))
    accuracies = []
    for child in children:
        checkpoints.restore_model_variables(supernet, path)
        set_decisions(supernet, decisions_for_arch(space, decode_arch(child["arch"])))
        accuracies.append(float(evaluate(supernet)["top1"]))
    return accuracies


def rank_random_children(searches: list[dict], children: list[dict]) -> tuple[list, list]:
    """Kendall's tau of each search's supernet (end of warm-up) against the standalone top-1 of
    the random ``children``; returns (taus, inherited top-1 per search and child)."""
    standalone = [c["top1_mean"] for c in children]
    taus, inherited = [], []
    for s in searches:
        accuracies = supernet_accuracies(s["model_dir"], children)
        inherited.append(accuracies)
        taus.append(kendall_tau(accuracies, standalone))
        print(f"supernet of search seed {s['seed']}: Kendall's tau {taus[-1]:+.2f} over "
              f"{len(standalone)} random children", flush=True)
    return taus, inherited


# -- phases ----------------------------------------------------------------------------------

def proxy_description(target: float, search_steps: int) -> dict:
    space, cost = demo_space()
    low, high = cost.feasible_range()
    return {"dataset": f"embedded (generated), 32 px, {FLAGS.num_train} train / 600 held-out, "
                       "10 classes",
            "space": "demo", "width_multiplier": WIDTH, "image_size": IMAGE_SIZE,
            "target_macs": target, "macs_tolerance": FLAGS.macs_tolerance,
            "feasible_range": [low, high], "train_steps": FLAGS.train_steps,
            "retrain_recipe": "configs/demo.py, cut to train_steps",
            "search_steps": search_steps, "seeds": [int(s) for s in FLAGS.seeds],
            "sanity_seeds": [int(s) for s in FLAGS.sanity_seeds]}


def phase_random(root: str, output: str) -> dict:
    target, search_steps = settings()
    proxy = proxy_description(target, search_steps)
    space, cost = demo_space()
    seeds = proxy["seeds"]
    start = time.time()
    with_nl, without = hand_placed(space, cost)
    print(f"proxy: {json.dumps(proxy)}", flush=True)
    report = {"proxy": proxy}
    for name, child in (("hand_placed_lightnl", with_nl), ("hand_placed_no_lightnl", without)):
        runs = retrain_children(name, [child], root, FLAGS.train_steps, proxy["sanity_seeds"])
        report[name] = stats(runs) | {"arch": child["arch"], "macs": child["macs"],
                                      "runs_detail": runs}
    children = random_children(space, cost, target, FLAGS.num_random)
    runs = retrain_children("random", children, root, FLAGS.train_steps, seeds)
    means = child_means(runs)
    report["random"] = stats(runs) | {
        "children": [c | {"top1_mean": means[i]} for i, c in enumerate(children)],
        "runs_detail": runs, "best_child_top1": max(means.values()),
        "variance_components": variance_components(runs)}
    report["random_phase_seconds"] = time.time() - start
    return report


def measured_proxy(report: dict) -> tuple[float, int, dict]:
    """(target, search steps, proxy) of these flags; exits if the random population of
    ``report`` was measured on another proxy."""
    target, search_steps = settings()
    proxy = proxy_description(target, search_steps)
    if report.get("proxy") != proxy:
        raise SystemExit("error: the random population was measured on another proxy "
                         f"({report.get('proxy')}); run --phase=random first with these flags")
    return target, search_steps, proxy


def phase_searches(root: str, report: dict) -> dict:
    target, search_steps, proxy = measured_proxy(report)
    seeds, search_seeds = proxy["seeds"], [int(s) for s in FLAGS.search_seeds]
    start = time.time()
    from autonl_tf.data.embedded import ensure_embedded_dataset

    data_dir = ensure_embedded_dataset("", num_train=FLAGS.num_train)
    shuffled = shuffled_label_copy(data_dir, root)
    no_lightnl_config = os.path.join(root, "search_no_lightnl.py")
    with open(no_lightnl_config, "w") as f:
        f.write(NO_LIGHTNL_CONFIG)
    extras = {"searched": ("search:demo", []),
              "shuffled_labels": ("search:demo", [
                  f"--config.data.data_dir={shuffled}",
                  # Shuffled labels teach the supernet nothing: go on to the decisions anyway.
                  "--config.search.stop_if_not_learning=false"]),
              "no_lightnl": (no_lightnl_config, [])}
    # --quick searches are too short to learn; they check the code path.
    quick = ["--config.search.stop_if_not_learning=false"] if FLAGS.quick else []
    jobs = [{"model_dir": os.path.join(root, "search", f"{c}_seed{s}"), "config": extras[c][0],
             "extra": extras[c][1] + quick, "seed": s, "target": target, "steps": search_steps,
             "condition": c} for c in CONDITIONS for s in search_seeds]
    os.makedirs(os.path.join(root, "search"), exist_ok=True)
    searches = run_all(search, jobs)
    random_means = sorted(m["top1_mean"] for m in report["random"]["children"])
    report["percentiles"] = {}
    for condition in CONDITIONS:
        found = [s for job, s in zip(jobs, searches, strict=True)
                 if job["condition"] == condition]
        for s in found:
            print(f"search {condition} seed {s['seed']}: {s['macs']:,} MACs "
                  f"({100 * s['relative_error']:+.2f}%), supernet held-out top-1 "
                  f"{100 * s['supernet_heldout_top1_after_warmup']:.1f}% after the warm-up",
                  flush=True)
        runs = retrain_children(condition, found, root, FLAGS.train_steps, seeds)
        means = child_means(runs)
        report[condition] = stats(runs) | {
            "searches": len(found),
            "children": [{k: v for k, v in s.items() if k != "model_dir"}
                         | {"top1_mean": means[i]} for i, s in enumerate(found)],
            "runs_detail": runs}
        # Share of the random children whose mean top-1 is below the searched child's.
        report["percentiles"][condition] = [
            100.0 * sum(r < means[i] for r in random_means) / len(random_means)
            for i in range(len(found))]
    # The ranking diagnostic on every true-label search's supernet.
    taus, inherited = rank_random_children(
        [s for job, s in zip(jobs, searches, strict=True) if job["condition"] == "searched"],
        report["random"]["children"])
    report["kendall_tau"] = statistics.fmean(taus)
    report["kendall_tau_per_search"] = taus
    report["supernet_inherited_top1"] = inherited
    report["searches_phase_seconds"] = time.time() - start
    return report


def parse_setting(text: str) -> tuple[str, list[str]]:
    name, sep, extra = text.partition(":")
    if not sep or not name.strip():
        raise SystemExit(f"error: --ranking_setting={text!r}: expected 'NAME:FLAGS' (FLAGS may "
                         "be empty), e.g. 'keep 0.5:--config.search.indicator_keep_probability=0.5'")
    return name.strip(), extra.split()


def phase_ranking(root: str, report: dict) -> dict:
    """Searches of each --ranking_setting and seed; the tau of each supernet (see above)."""
    target, search_steps, proxy = measured_proxy(report)
    children = report["random"]["children"]
    settings_list = [parse_setting(text) for text in FLAGS.ranking_setting]
    quick = ["--config.search.stop_if_not_learning=false"] if FLAGS.quick else []
    # A setting without extra flags is the searches phase's true-label search: its runs are
    # reused when that phase ran in the same --workdir (same flags, same seeds).
    jobs = [{"model_dir": (os.path.join(root, "search", f"searched_seed{seed}") if not extra
                           else os.path.join(root, "ranking", f"setting{i}_seed{seed}")),
             "config": "search:demo", "extra": extra + quick, "seed": int(seed),
             "target": target, "steps": search_steps, "setting": name}
            for i, (name, extra) in enumerate(settings_list) for seed in FLAGS.search_seeds]
    os.makedirs(os.path.join(root, "ranking"), exist_ok=True)
    start = time.time()
    searches = run_all(search, jobs)
    results = []
    for name, extra in settings_list:
        found = [s for job, s in zip(jobs, searches, strict=True) if job["setting"] == name]
        taus, inherited = rank_random_children(found, children)
        results.append({
            "setting": name, "flags": extra, "seeds": [s["seed"] for s in found],
            "kendall_tau": statistics.fmean(taus), "kendall_tau_per_search": taus,
            "supernet_heldout_top1_after_warmup": [
                s["supernet_heldout_top1_after_warmup"] for s in found],
            "mean_inherited_top1": [statistics.fmean(a) for a in inherited],
            "supernet_inherited_top1": inherited})
    return {"proxy": proxy, "random_children": len(children), "settings": results,
            "seconds": time.time() - start}


def ranking_tables(result: dict) -> list:
    rows = []
    for entry in result["settings"]:
        for seed, tau, heldout, inherited in zip(
                entry["seeds"], entry["kendall_tau_per_search"],
                entry["supernet_heldout_top1_after_warmup"], entry["mean_inherited_top1"],
                strict=True):
            rows.append([entry["setting"], seed, tau, 100 * heldout, 100 * inherited])
        rows.append([entry["setting"], "mean", entry["kendall_tau"],
                     100 * statistics.fmean(entry["supernet_heldout_top1_after_warmup"]),
                     100 * statistics.fmean(entry["mean_inherited_top1"])])
    return [record.Table(
        f"Kendall's tau of the supernet at the end of the warm-up against the standalone top-1 of "
        f"{result['random_children']} random children at the target",
        ["setting", "seed", "tau", "supernet held-out top-1 %", "children's mean inherited top-1 %"],
        rows, formats=["", "", "+.2f", ".1f", ".1f"],
        notes="Inherited top-1: each child's held-out top-1 inside the supernet (weights of the "
              "warm-up's last step, BatchNorm re-estimated for the child).")]


def ranking_summary(result: dict) -> str:
    return "; ".join(
        f"{e['setting']}: Kendall's tau {e['kendall_tau']:+.2f} (per seed "
        + ", ".join(f"{t:+.2f}" for t in e["kendall_tau_per_search"]) + ")"
        for e in result["settings"]) + "."


def settings() -> tuple[float, int]:
    target, search_steps = demo_defaults()
    return FLAGS.target_flops or target, FLAGS.search_steps or search_steps


def tables(report: dict) -> list:
    rows = []
    for group in ("hand_placed_lightnl", "hand_placed_no_lightnl", "random", *CONDITIONS):
        if group in report:
            entry = report[group]
            rows.append([group, 100 * entry["top1_mean"], 100 * entry["top1_std"], entry["runs"],
                         entry.get("searches")])
    out = [record.Table(
        "Retrained top-1 at equal MACs (held-out, EMA weights)",
        ["group", "top-1 mean %", "std (points)", "runs", "searches"], rows,
        formats=["", ".1f", ".1f", "d", "d"],
        notes="std over all runs of a group (children x retraining seeds).")]
    components = report["random"].get("variance_components")
    if components:
        out.append(record.Table(
            "What the proxy can resolve: the random children's retrained top-1, split into the "
            "architecture's part and the retraining seed's",
            ["seed std (points)", "architecture std (points)", "architecture's share of the "
             "variance %"],
            [[100 * components["seed_std"], 100 * components["architecture_std"],
              100 * components["architecture_share"]]], formats=[".1f", ".1f", ".0f"],
            notes="One-way random-effects analysis of variance over the random children and "
                  "their retraining seeds. A search can move only the architecture's part."))
        bar = one_std_bar(report["random"])
        out.append(record.Table(
            "What beating random by one standard deviation asks of a search",
            ["bar: random mean + 1 std (top-1 %)", "bar above the mean, in architecture stds",
             "children of the space whose true mean reaches it"],
            [[100 * bar["top1"], bar["architecture_stds"], who_reaches(bar)]],
            formats=[".1f", ".1f", ""],
            notes="The share assumes normal architecture effects with the std above; a search "
                  "that knew every child's true mean could do no better than find such a "
                  "child. A bar above 100% is out of reach of every network."))
    if "percentiles" in report:
        out.append(record.Table(
            "Each searched child's percentile among the random children (by mean top-1)",
            ["condition", "percentiles"],
            [[c, ", ".join(f"{p:.0f}" for p in v)] for c, v in report["percentiles"].items()]))
    if "kendall_tau" in report:
        out.append(record.Table(
            "How the supernet ranks networks: Kendall's tau, supernet (end of warm-up) vs "
            "standalone top-1 of the random children",
            ["search", "tau"],
            [[f"searched, seed {s}", t] for s, t in zip(FLAGS.search_seeds,
                                                        report["kendall_tau_per_search"],
                                                        strict=False)]
            + [["mean", report["kendall_tau"]]], formats=["", "+.2f"]))
    return out


def summary_line(report: dict) -> str:
    pct = lambda key: f"{100 * report[key]['top1_mean']:.1f}%"  # noqa: E731
    line = (f"Random children at the target: {pct('random')} +- "
            f"{100 * report['random']['top1_std']:.1f} points; a hand-placed LightNL "
            f"{pct('hand_placed_lightnl')} against {pct('hand_placed_no_lightnl')} without.")
    components = report["random"].get("variance_components")
    if components:
        line += (f" The architecture explains {100 * components['architecture_share']:.0f}% of "
                 f"that spread (architecture std {100 * components['architecture_std']:.1f} "
                 f"points, retraining seed {100 * components['seed_std']:.1f}).")
        bar = one_std_bar(report["random"])
        line += (f" Beating random by one standard deviation takes {100 * bar['top1']:.1f}%, "
                 f"reached by {who_reaches(bar)}.")
    if "searched" in report:
        beats = report["searched"]["top1_mean"] >= one_std_bar(report["random"])["top1"]
        line += (f" Searched {pct('searched')}, shuffled labels {pct('shuffled_labels')}, no "
                 f"LightNL {pct('no_lightnl')}: the search "
                 f"{'beats' if beats else 'does not beat'} random by one standard deviation; "
                 f"Kendall's tau {report['kendall_tau']:+.2f}.")
    else:
        line += " Random population only: no searches in this file (--phase=searches adds them)."
    return line


def print_report(report: dict) -> None:
    for table in tables(report):
        print(f"\n{table.title}")
        print(" | ".join(table.columns))
        for row in table.rows:
            print(" | ".join(str(x) for x in row))
    print(summary_line(report))


def main(argv):
    del argv
    if FLAGS.quick:
        FLAGS.train_steps, FLAGS.search_steps, FLAGS.num_random = 60, 120, 3
        FLAGS.seeds, FLAGS.search_seeds = ["0"], ["0"]
    root = FLAGS.workdir or tempfile.mkdtemp(prefix="search_quality_")
    os.makedirs(root, exist_ok=True)
    output = FLAGS.output_json or (os.path.join(root, "search_quality.json") if FLAGS.quick
                                   else os.path.join(record.RESULTS_DIR, "search_quality.json"))
    if FLAGS.phase == "ranking":
        with open(output) as f:
            population = json.load(f)
        result = phase_ranking(root, population)
        ranking_json = FLAGS.ranking_json or (
            os.path.join(root, "supernet_ranking.json") if FLAGS.quick
            else os.path.join(record.RESULTS_DIR, "supernet_ranking.json"))
        record.write_result(
            "supernet_ranking", result, tables=ranking_tables(result),
            summary=ranking_summary(result), path=ranking_json,
            about="How well the search's supernet ranks networks: Kendall's tau at the end of "
                  "the warm-up, per search setting (benchmarks/search_quality.py "
                  "--phase=ranking).")
        print(ranking_summary(result))
        print(f"wrote {ranking_json}", flush=True)
        return 0
    if FLAGS.phase == "report":
        if not os.path.exists(output):
            raise SystemExit(f"error: --phase=report rewrites an existing result, and {output} "
                             "does not exist: pass its path with --output_json")
        report = files.read_json(output)
        record.rewrite_view(output, tables(report), summary_line(report))
        print(summary_line(report))
        print(f"rewrote the tables and summary of {output}", flush=True)
        return 0
    phases = ["random", "searches"] if FLAGS.quick else [FLAGS.phase]
    report: dict = {}
    for phase in phases:
        if phase == "random":
            report = phase_random(root, output)
            report["commands"] = {"random": record.command_line()}
        else:
            if not report:
                with open(output) as f:
                    report = json.load(f)
                for key in record.RESERVED_KEYS:
                    report.pop(key, None)
            report = phase_searches(root, report)
            report.setdefault("commands", {})["searches"] = record.command_line()
        print_report(report)
        record.write_result("search_quality", report, tables=tables(report),
                            summary=summary_line(report), path=output)
        print(f"wrote {output}", flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
