"""MACs and parameters of the published networks as this package builds them, against the paper.

The counts are the analytic cost model's (`autonl_tf.cost`, `python -m autonl_tf.profile`: the
paper's conventions, checked op by op against TensorFlow's graph profiler in
tests/test_profile.py) at 224 px and 1000 classes; the published figures are those of the
AutoNL paper (Li et al., CVPR 2020, Table 1) and of MobileNetV2 (Sandler et al., 2018). It also
sets each LightNL of AutoNL-L against a conventional non-local block (Wang et al., 2018) at the
same place. It counts, it does not run the networks: seconds.

    python benchmarks/model_profile.py
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonl_tf.models.registry import resolve_model_spec  # noqa: E402
from autonl_tf.profile import profile_dict  # noqa: E402
from benchmarks import record  # noqa: E402

IMAGE_SIZE, NUM_CLASSES = 224, 1000
# (MACs, params) as published: AutoNL paper Table 1; MobileNetV2 paper Table 4 (300M, 3.4M).
PUBLISHED = {"autonl_s": (267e6, 4.4e6), "autonl_l": (353e6, 5.6e6),
             "mobilenet_v2": (300e6, 3.4e6)}
NAMES = {"autonl_s": "AutoNL-S", "autonl_l": "AutoNL-L",
         "mobilenet_v2": "MobileNetV2 1.0 (same builder)"}


def measure() -> dict:
    """{model: figures} for every model of `PUBLISHED` (the NL comparison for all of them)."""
    models = {}
    for name, (published_macs, published_params) in PUBLISHED.items():
        profile = profile_dict(resolve_model_spec(name), IMAGE_SIZE, NUM_CLASSES, 1.0,
                               compare_nl=True)
        ratios = [row["cost_ratio"] for row in profile["nonlocal_comparison"]]
        models[name] = {
            "macs": profile["macs"], "params": profile["params"],
            "published_macs": published_macs, "published_params": published_params,
            # In millions too, as tables and the README show them.
            "mmacs": profile["macs"] / 1e6, "mparams": profile["params"] / 1e6,
            "published_mmacs": published_macs / 1e6, "published_mparams": published_params / 1e6,
            "lightnl_mmacs": profile["lightnl_macs"] / 1e6,
            "macs_vs_published": profile["macs"] / published_macs - 1,
            "params_vs_published": profile["params"] / published_params - 1,
            "lightnl_blocks": len(ratios), "lightnl_macs": profile["lightnl_macs"],
            "lightnl_share_of_macs": profile["lightnl_macs"] / profile["macs"],
            "conventional_nl_ratio_min": min(ratios, default=None),
            "conventional_nl_ratio_max": max(ratios, default=None)}
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_json", default=None,
                        help="default: benchmarks/results/model_profile.json")
    args = parser.parse_args(argv)
    models = measure()
    rows = [[NAMES[name], m["macs"] / 1e6, m["published_macs"] / 1e6, m["macs_vs_published"],
             m["params"] / 1e6, m["published_params"] / 1e6, m["params_vs_published"],
             m["lightnl_blocks"], m["lightnl_macs"] / 1e6]
            for name, m in models.items()]
    table = record.Table(
        title=f"MACs and parameters, {IMAGE_SIZE} px, {NUM_CLASSES} classes",
        columns=["model", "MACs (M)", "published (M)", "vs published", "params (M)",
                 "published (M)", "vs published", "LightNL blocks", "LightNL MACs (M)"],
        rows=rows, formats=["", ".2f", ".0f", "+.2%", ".3f", ".1f", "+.2%", "d", ".2f"],
        notes="MACs: multiply-adds of convolutions, dense layers, SE, LightNL and global "
              "pooling; parameters: trainable weights plus BatchNorm gamma/beta (the paper's "
              "conventions, autonl_tf/cost.py).")
    autonl_l = models["autonl_l"]
    summary = (f"AutoNL-S {models['autonl_s']['macs'] / 1e6:.2f}M MACs and AutoNL-L "
               f"{autonl_l['macs'] / 1e6:.2f}M (published 267M and 353M); AutoNL-L's "
               f"{autonl_l['lightnl_blocks']} LightNLs cost {autonl_l['lightnl_macs'] / 1e6:.2f}M "
               f"MACs in all, a conventional NL block {autonl_l['conventional_nl_ratio_min']:.1f}x-"
               f"{autonl_l['conventional_nl_ratio_max']:.0f}x more at each place.")
    path = record.write_result("model_profile", {
        "image_size": IMAGE_SIZE, "num_classes": NUM_CLASSES, "models": models},
        tables=[table], summary=summary, path=args.output_json)
    print(summary)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
