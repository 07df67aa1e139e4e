"""Does the search choose by accuracy? Searched vs random vs no-LightNL vs shuffled-label search.

The proxy task: the embedded dataset generated at 64 px (label = shape of two tokens + whether
their colours match; the tokens are at least 32 px apart), and the 'proxy' search space
(autonl_tf/search/spaces.py: the first stages of the macro, output stride 8), whose convolutions
reach a limited neighbourhood. First, a sanity check that LightNL can help there at all: one
hand-placed architecture retrained with and without its LightNLs. Then, at one MACs target:

  (a) searched         the search over the proxy space (LightNL candidates after every block)
  (b) random           --num_random architectures of the same space, sampled at the target +-2%
  (c) no_lightnl       the same search over the space without LightNL candidates
  (d) shuffled_labels  the same search run on randomly permuted training labels

Every child is retrained with the same recipe and steps (configs/demo.py's recipe), once per
seed, on the TRUE labels, and evaluated (EMA weights) on the held-out split. The table gives
mean +- std of top-1 over all runs of a group; ``--output_json`` writes it (with every run).

    python benchmarks/search_quality.py --output_json=benchmarks/results/search_quality.json
    python benchmarks/search_quality.py --search_steps=200 --train_steps=200 --num_random=2 \\
        --seeds=0 --skip_sanity        # a quick look (minutes)

Everything goes through the library's own programs (`search_experiment`, `train_experiment`),
i.e. what search_main.py and train_main.py run. The shuffled-label copy of the training split is
written as real TFRecord shards next to the generated set.
"""

from __future__ import annotations

import glob
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where searches, retrainings and data go (default: temp).")
flags.DEFINE_string("output_json", None, "Write the table and every run here.")
flags.DEFINE_integer("image_size", 64, "Generated image size = model input size (px), a multiple "
                     "of 32.")
flags.DEFINE_float("width_multiplier", 0.5, "Channel multiplier of supernet and children.")
flags.DEFINE_float("target_fraction", 0.5, "MACs target: this fraction of the way from the "
                   "smallest to the largest child of the proxy space.")
flags.DEFINE_float("macs_tolerance", 0.02, "Equal MACs: every compared child within this "
                   "relative distance of the target.")
flags.DEFINE_integer("search_steps", 1000, "Steps of each search (batch 32).")
flags.DEFINE_integer("train_steps", 600, "Retraining steps of each child (batch 64).")
flags.DEFINE_list("seeds", ["0", "1"], "Retraining seeds (every child is retrained once each).")
flags.DEFINE_integer("search_seed", 0, "Seed of the three searches.")
flags.DEFINE_integer("num_random", 5, "Random architectures of the space at the target.")
flags.DEFINE_integer("num_train", 3000, "Generated training images.")
flags.DEFINE_integer("num_eval", 600, "Generated held-out images.")
flags.DEFINE_bool("skip_sanity", False, "Skip the hand-placed LightNL check.")
flags.DEFINE_bool("sanity_only", False, "Run only the hand-placed LightNL check.")

GROUPS = ("searched", "random", "no_lightnl", "shuffled_labels")


# -- data ----------------------------------------------------------------------------------------

def embedded_data_dir() -> str:
    """The embedded dataset at --image_size (generated once into the user cache)."""
    from autonl_tf.data.embedded import ensure_embedded_dataset

    return ensure_embedded_dataset("", FLAGS.image_size, FLAGS.num_train, FLAGS.num_eval,
                                   num_train_shards=4, num_eval_shards=2, seed=0)


def shuffled_label_copy(data_dir: str, root: str, seed: int = 1234) -> str:
    """A copy of ``data_dir`` whose training labels are a random permutation of the originals
    (same images, same label counts); the held-out split is copied unchanged."""
    import numpy as np
    import tensorflow as tf

    out_dir = os.path.join(root, "embedded_shuffled_labels")
    done = os.path.join(out_dir, ".complete")
    if os.path.exists(done):
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    shards = sorted(glob.glob(os.path.join(data_dir, "train-*-of-*")))
    records = [r.numpy() for shard in shards for r in tf.data.TFRecordDataset(shard)]
    examples = [tf.train.Example.FromString(r) for r in records]
    labels = [e.features.feature["image/class/label"].int64_list.value[0] for e in examples]
    permuted = np.random.default_rng(seed).permutation(labels)
    per_shard = math.ceil(len(examples) / len(shards))
    for index, shard in enumerate(shards):
        with tf.io.TFRecordWriter(os.path.join(out_dir, os.path.basename(shard))) as writer:
            for example, label in zip(examples[index * per_shard:(index + 1) * per_shard],
                                      permuted[index * per_shard:(index + 1) * per_shard],
                                      strict=True):
                example.features.feature["image/class/label"].int64_list.value[:] = [int(label)]
                writer.write(example.SerializeToString())
    for path in glob.glob(os.path.join(data_dir, "validation-*-of-*")):
        shutil.copy(path, out_dir)
    open(done, "w").close()
    return out_dir


def data_config(data_dir: str):
    """The TFRecord input pipeline on ``data_dir`` (the ImageNet shard layout, 1-based labels),
    with the embedded dataset's settings: whole image, no crop, no colour augmentation."""
    from autonl_tf.data import default_data_config

    cfg = default_data_config("imagenet")
    cfg.data_dir = data_dir
    cfg.image_size = FLAGS.image_size
    cfg.num_classes = 10
    cfg.num_train_examples = FLAGS.num_train
    cfg.num_eval_examples = FLAGS.num_eval
    cfg.augment = "none"
    cfg.random_crop = False
    cfg.eval_crop_padding = 0
    cfg.shuffle_buffer = 4096
    return cfg


# -- search space, searches, architectures ---------------------------------------------------

def proxy_space_config(lightnl: bool):
    from autonl_tf.search import spaces as search_space_config

    config = search_space_config.get_config("proxy")
    if not lightnl:
        for stage in config.stages:
            stage["lightnl"] = False
    return config


def run_search(name: str, data_dir: str, lightnl: bool, target: float, root: str) -> dict:
    import tensorflow as tf

    from autonl_tf.training.config import config_module

    search_config = config_module("search")
    from autonl_tf.search.experiment import search_experiment

    config = search_config.get_config("demo")
    config.data = data_config(data_dir)
    config.search_space = proxy_space_config(lightnl)
    config.model.width_multiplier = FLAGS.width_multiplier
    config.search.target_flops = target
    config.train.train_steps = FLAGS.search_steps
    config.train.seed = FLAGS.search_seed
    config.train.checkpoint_every_steps = FLAGS.search_steps
    config.eval.every_steps = max(1, FLAGS.search_steps // 8)
    start = time.time()
    result = search_experiment(config, model_dir=os.path.join(root, "search", name),
                               strategy=tf.distribute.get_strategy())
    summary = result["summary"]
    print(f"search '{name}': {summary['macs']:,} MACs ({100 * summary['relative_error']:+.2f}% "
          f"of the target), supernet held-out top-1 {summary['supernet_heldout_top1']:.3f} "
          f"({summary['supernet_heldout_top1_after_warmup']:.3f} after the warm-up), "
          f"{time.time() - start:.0f}s", flush=True)
    return {"arch": summary["arch"], "macs": summary["macs"],
            "supernet_heldout_top1": summary["supernet_heldout_top1"],
            "supernet_heldout_top1_after_warmup": summary["supernet_heldout_top1_after_warmup"],
            "seconds": time.time() - start}


def random_architectures(space, search_cost, target: float, count: int) -> list[dict]:
    """``count`` distinct random children of ``space`` within --macs_tolerance of ``target``."""
    from autonl_tf.arch import encode_arch

    found, seen = [], set()
    rng = random.Random(0)
    for _ in range(200_000):
        decisions = space.random(rng.randrange(1 << 30))
        macs = search_cost.macs(decisions)
        if abs(macs - target) > FLAGS.macs_tolerance * target:
            continue
        arch = encode_arch(space.child_blocks(decisions))
        if arch in seen:
            continue
        seen.add(arch)
        found.append({"arch": arch.splitlines(), "macs": macs})
        if len(found) == count:
            return found
    raise RuntimeError(f"found only {len(found)} random architectures within "
                       f"{FLAGS.macs_tolerance:.0%} of {target:,.0f} MACs")


def hand_placed(space) -> tuple[list[str], list[str]]:
    """A hand-written child with LightNL 1/4 after the last block of each stage, and the same
    child without them."""
    from autonl_tf.arch import encode_arch

    last_of_stage = {}
    for block in space.blocks:
        last_of_stage[block.stage] = block.index
    with_nl, without = [], []
    for block in space.blocks:
        base = block.decision(kernel_size=block.kernel_sizes[0],
                              expand_ratio=block.expand_ratios[-1])
        without.append(base)
        nl = block.has_lightnl and block.index == last_of_stage[block.stage]
        with_nl.append(block.decision(kernel_size=base.kernel_size,
                                      expand_ratio=base.expand_ratio,
                                      lightnl_ratio=0.25 if nl else None, lightnl_stride=1))
    return (encode_arch(space.child_blocks(with_nl)).splitlines(),
            encode_arch(space.child_blocks(without)).splitlines())


# -- retraining ------------------------------------------------------------------------------

def retrain(arch: list[str], seed: int, data_dir: str, model_dir: str) -> dict:
    import keras
    import tensorflow as tf

    from autonl_tf.training.config import config_module

    demo_config = config_module("demo")
    from autonl_tf.training.experiment import train_experiment

    keras.backend.clear_session()
    config = demo_config.get_config()
    config.model.arch = " ".join(arch)
    config.model.width_multiplier = FLAGS.width_multiplier
    config.data = data_config(data_dir)
    config.train.train_steps = FLAGS.train_steps
    config.train.seed = seed
    config.train.checkpoint_every_steps = FLAGS.train_steps
    config.eval.every_steps = FLAGS.train_steps
    start = time.time()
    result = train_experiment(config, model_dir=model_dir, strategy=tf.distribute.get_strategy(),
                              mode="train_and_eval")
    metrics = result["eval"]
    return {"top1": float(metrics["top1"]), "top5": float(metrics["top5"]),
            "eval_loss": float(metrics["loss"]), "seconds": time.time() - start}


def stats(values: list[float]) -> dict:
    return {"top1_mean": statistics.fmean(values),
            "top1_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": len(values)}


def main(argv):
    del argv
    from autonl_tf.search import SearchCost, space_from_config

    root = FLAGS.workdir or tempfile.mkdtemp(prefix="search_quality_")
    seeds = [int(s) for s in FLAGS.seeds]
    start = time.time()
    data_dir = embedded_data_dir()
    shuffled_dir = shuffled_label_copy(data_dir, root)
    space = space_from_config(proxy_space_config(lightnl=True))
    search_cost = SearchCost(space, FLAGS.image_size, 10, FLAGS.width_multiplier)
    low, high = search_cost.feasible_range()
    target = low + FLAGS.target_fraction * (high - low)
    print(f"proxy: embedded dataset at {FLAGS.image_size} px ({FLAGS.num_train} train / "
          f"{FLAGS.num_eval} held-out), 'proxy' space at width {FLAGS.width_multiplier:g}: "
          f"{low:,}..{high:,} MACs, target {target:,.0f}; retraining {FLAGS.train_steps} steps, "
          f"seeds {seeds}", flush=True)

    def retrain_group(group: str, archs: list[dict]) -> list[dict]:
        runs = []
        for number, entry in enumerate(archs):
            for seed in seeds:
                model_dir = os.path.join(root, "train", f"{group}_{number}_seed{seed}")
                run = retrain(entry["arch"], seed, data_dir, model_dir)
                run.update(arch_index=number, seed=seed, macs=entry.get("macs"))
                runs.append(run)
                print(f"  {group} #{number} seed {seed}: top-1 {run['top1']:.3f} "
                      f"({run['seconds']:.0f}s)", flush=True)
        return runs

    report = {"task": {"image_size": FLAGS.image_size, "width_multiplier": FLAGS.width_multiplier,
                       "num_train": FLAGS.num_train, "num_eval": FLAGS.num_eval,
                       "space": "proxy", "target_macs": target, "feasible_range": [low, high],
                       "search_steps": FLAGS.search_steps, "train_steps": FLAGS.train_steps,
                       "seeds": seeds}}
    if not FLAGS.skip_sanity:
        with_nl, without = hand_placed(space)
        print("sanity check: a hand-placed LightNL vs none, same network otherwise", flush=True)
        sanity_nl = retrain_group("hand_placed_lightnl",
                                  [{"arch": with_nl, "macs": search_cost.macs(
                                      _decisions(space, with_nl))}])
        sanity_no = retrain_group("hand_placed_no_lightnl",
                                  [{"arch": without, "macs": search_cost.macs(
                                      _decisions(space, without))}])
        report["hand_placed_lightnl"] = stats([r["top1"] for r in sanity_nl]) | {
            "arch": with_nl}
        report["hand_placed_no_lightnl"] = stats([r["top1"] for r in sanity_no]) | {
            "arch": without}
        print(f"hand-placed LightNL {100 * report['hand_placed_lightnl']['top1_mean']:.1f}% vs "
              f"none {100 * report['hand_placed_no_lightnl']['top1_mean']:.1f}%", flush=True)
        if FLAGS.sanity_only:
            _write(report)
            return 0

    searches = {
        "searched": run_search("searched", data_dir, True, target, root),
        "no_lightnl": run_search("no_lightnl", data_dir, False, target, root),
        "shuffled_labels": run_search("shuffled_labels", shuffled_dir, True, target, root),
    }
    archs = {group: [searches[group]] for group in searches}
    archs["random"] = random_architectures(space, search_cost, target, FLAGS.num_random)
    for group in GROUPS:
        runs = retrain_group(group, archs[group])
        off = [a["macs"] for a in archs[group]
               if abs(a["macs"] - target) > FLAGS.macs_tolerance * target]
        report[group] = stats([r["top1"] for r in runs]) | {
            "archs": [{"arch": a["arch"], "macs": a["macs"]} for a in archs[group]],
            "within_macs_tolerance": not off, "runs_detail": runs}
        if group in searches:
            report[group]["search"] = {k: v for k, v in searches[group].items() if k != "arch"}
    report["seconds"] = time.time() - start

    print(f"\ntop-1 on {FLAGS.num_eval} held-out images (mean +- std over runs; "
          f"target {target:,.0f} MACs +-{FLAGS.macs_tolerance:.0%})")
    print(f"{'group':<24} {'top-1':>16} {'runs':>5}  MACs")
    for group in ([g for g in ("hand_placed_lightnl", "hand_placed_no_lightnl") if g in report]
                  + list(GROUPS)):
        entry = report[group]
        macs = ", ".join(f"{a['macs']:,}" for a in entry.get("archs", []))
        print(f"{group:<24} {100 * entry['top1_mean']:6.1f} +- {100 * entry['top1_std']:4.1f}%"
              f" {entry['runs']:>5}  {macs}")
    beats_random = (report["searched"]["top1_mean"]
                    >= report["random"]["top1_mean"] + report["random"]["top1_std"])
    beats_no_lightnl = report["searched"]["top1_mean"] > report["no_lightnl"]["top1_mean"]
    report["searched_beats_random_by_one_std"] = beats_random
    report["searched_beats_no_lightnl"] = beats_no_lightnl
    print(f"searched >= random mean + 1 std: {beats_random}; searched > no_lightnl: "
          f"{beats_no_lightnl}; {report['seconds'] / 60:.0f} min in all")
    _write(report)
    return 0


def _write(report: dict) -> None:
    if FLAGS.output_json:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
        with open(FLAGS.output_json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {FLAGS.output_json}")


def _decisions(space, arch_lines: list[str]):
    from autonl_tf.arch import decode_arch
    from autonl_tf.search import decisions_for_arch

    return decisions_for_arch(space, decode_arch(arch_lines))


if __name__ == "__main__":
    app.run(main)
