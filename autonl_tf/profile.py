"""Per-block MACs and parameters of a network, from the analytic cost model.

Usage::

    python -m autonl_tf.profile --model=autonl_s
    python -m autonl_tf.profile --arch_file=runs/search/arch.txt --image_size=224 --json
    python -m autonl_tf.profile --model=autonl_l --compare_nl

The counts are those of `autonl_tf.cost` (conventions in its docstring), the same formulas the
search optimises and the export cards report.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from autonl_tf import cost
from autonl_tf.arch import ArchError, encode_block
from autonl_tf.errors import EXIT_BAD_INPUT
from autonl_tf.models.registry import list_models, load_arch_file, resolve_model_spec
from autonl_tf.models.spec import ModelSpec, check_image_size

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Named model (autonl_tf/models/arch/<name>.txt), an architecture file "
                    "or block strings.")
flags.DEFINE_string("arch_file", None, "Architecture file: one block string per line.")
flags.DEFINE_integer("image_size", 224, "Input resolution (a multiple of 32).")
flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.")
flags.DEFINE_float("width_multiplier", 1.0, "Channel multiplier (MobileNet rounding to 8).")
flags.DEFINE_bool("json", False, "Print one JSON object instead of the table.")
flags.DEFINE_bool("compare_nl", False, "Compare each LightNL with a conventional NL block.")


def nonlocal_comparison(model_cost: cost.ModelCost) -> list[dict]:
    """One row per LightNL: its MACs against a conventional (Wang et al.) NL block there."""
    rows = []
    for block in model_cost.blocks:
        if not block.spec.has_nonlocal:
            continue
        size, channels = block.out_size, block.out_channels
        conventional = cost.conventional_nl_macs(size, size, channels)
        rows.append({
            "block": block.index, "height": size, "width": size, "channels": channels,
            "ratio": block.spec.nonlocal_ratio, "stride": block.spec.nonlocal_stride,
            "lightnl_macs": block.nonlocal_macs, "conventional_nl_macs": conventional,
            "cost_ratio": conventional / block.nonlocal_macs,
        })
    return rows


def profile_dict(spec: ModelSpec, image_size: int, num_classes: int, width_multiplier: float,
                 compare_nl: bool) -> dict:
    """The profile as plain data (ints for MACs and params)."""
    total = spec.cost(image_size, num_classes, width_multiplier)
    result = {
        "model": spec.name, "image_size": image_size, "num_classes": num_classes,
        "width_multiplier": width_multiplier, "macs": total.macs, "params": total.params,
        "lightnl_macs": sum(b.nonlocal_macs for b in total.blocks),
        "lightnl_params": sum(b.nonlocal_params for b in total.blocks),
        "blocks": [{
            "index": b.index, "block": encode_block(b.spec), "input_size": b.in_size,
            "output_size": b.out_size, "in_channels": b.in_channels,
            "out_channels": b.out_channels, "macs": b.macs, "params": b.params,
            "lightnl_macs": b.nonlocal_macs,
        } for b in total.blocks],
        "stem": {"macs": total.stem_macs, "params": total.stem_params},
        "head": {"macs": total.head_macs + total.classifier_macs,
                 "params": total.head_params + total.classifier_params},
    }
    if compare_nl:
        rows = nonlocal_comparison(total)
        result["nonlocal_comparison"] = rows
        result["max_cost_ratio"] = max((r["cost_ratio"] for r in rows), default=None)
    return result


def format_table(profile: dict) -> str:
    """Human-readable table of `profile_dict`'s output."""
    lines = [f"{profile['model']}: {profile['image_size']}px, {profile['num_classes']} classes, "
             f"width x{profile['width_multiplier']:g}",
             f"{'#':>3} {'block':<46} {'in':>4} {'out':>4} {'ch':>9} {'MMACs':>8} "
             f"{'params':>9} {'NL MMACs':>9}"]
    lines.append(f"{'':>3} {'stem conv3x3/2':<46} {profile['image_size']:>4} "
                 f"{'':>4} {'':>9} {profile['stem']['macs'] / 1e6:8.2f} "
                 f"{profile['stem']['params']:9d}")
    for b in profile["blocks"]:
        lines.append(
            f"{b['index']:>3} {b['block']:<46} {b['input_size']:>4} {b['output_size']:>4} "
            f"{b['in_channels']:>4}>{b['out_channels']:<4} {b['macs'] / 1e6:8.2f} "
            f"{b['params']:9d} {b['lightnl_macs'] / 1e6:9.3f}")
    lines.append(f"{'':>3} {'head conv1x1 + pool + classifier':<46} {'':>4} {'':>4} {'':>9} "
                 f"{profile['head']['macs'] / 1e6:8.2f} {profile['head']['params']:9d}")
    lines.append(f"total: {profile['macs'] / 1e6:.2f}M MACs, {profile['params'] / 1e6:.3f}M params "
                 f"(LightNL: {profile['lightnl_macs'] / 1e6:.2f}M MACs, "
                 f"{profile['lightnl_params']} params)")
    if "nonlocal_comparison" in profile:
        lines.append("")
        lines.append(f"{'block':>5} {'HxW':>7} {'C':>4} {'ratio':>6} {'stride':>6} "
                     f"{'LightNL MACs':>13} {'conv. NL MACs':>14} {'NL/LightNL':>10}")
        for r in profile["nonlocal_comparison"]:
            lines.append(f"{r['block']:>5} {r['height']:>3}x{r['width']:<3} {r['channels']:>4} "
                         f"{r['ratio']:>6g} {r['stride']:>6} {r['lightnl_macs']:>13,} "
                         f"{r['conventional_nl_macs']:>14,} {r['cost_ratio']:>9.1f}x")
        if profile["max_cost_ratio"] is not None:
            lines.append(f"largest ratio: {profile['max_cost_ratio']:.1f}x")
        else:
            lines.append("no LightNL in this network")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        if (FLAGS.model is None) == (FLAGS.arch_file is None):
            raise ValueError("give exactly one of --model (one of "
                             f"{', '.join(list_models())}) or --arch_file=PATH")
        spec = (resolve_model_spec(FLAGS.model) if FLAGS.model
                else load_arch_file(FLAGS.arch_file))
        check_image_size(FLAGS.image_size)
        if FLAGS.num_classes < 1 or FLAGS.width_multiplier <= 0:
            raise ValueError("--num_classes must be >= 1 and --width_multiplier > 0")
        profile = profile_dict(spec, FLAGS.image_size, FLAGS.num_classes, FLAGS.width_multiplier,
                               FLAGS.compare_nl)
    except (ArchError, ValueError) as e:
        # One line naming the problem, and the bad-input code every program uses.
        print(f"autonl_tf.profile: error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    print(json.dumps(profile) if FLAGS.json else format_table(profile))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
