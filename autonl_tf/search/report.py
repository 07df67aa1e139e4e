"""What a search leaves in its model dir: arch.txt, search_summary.json, history, figure.

* ``arch.txt``: the decoded child in the codec's format (``train_main.py --arch=<this file>``).
* ``search_summary.json``: per-block decisions, threshold values and scores, per-block and total
  MACs/params of the child (the profiler's numbers), target, feasible range, and how well the
  supernet learns: ``supernet_train_top1`` (last training chunk), ``supernet_heldout_top1`` (last
  held-out evaluation), ``supernet_heldout_top1_after_warmup`` (first evaluation at or after the
  end of the warm-up), ``heldout`` (every evaluation).
* ``search_history.json``: (step, expected MACs, cross-entropy, training top-1, ...) rows and the
  held-out evaluations (step, top-1, top-5); lets a resumed search continue the curves.
* ``search.png``: cost vs step against the target, and the child drawn block by block.

Under a latency target (`autonl_tf.search.latency_cost`), the summary's ``latency`` holds the
target, the table's prediction for the child, the feasible range, the table's device / mode /
threads and, once search_main.py has timed the child on this machine
(`record_measured_latency`), its measured latency; every block row has its ``latency_ms``.

Files are written atomically (temporary file + rename) through `tf.io.gfile`, so the model dir
may be a GCS bucket.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from autonl_tf import files
from autonl_tf.search import decode
from autonl_tf.search.layers import SuperMBConvBlock
from autonl_tf.search.space import BlockDecision
from autonl_tf.search.supernet import Supernet, gate_names

__all__ = ["learning_summary", "latency_summary",
           "read_heldout", "read_history", "record_measured_latency", "search_summary",
           "write_search_outputs"]



def _read_history_key(model_dir: str, key: str, up_to_step: int | None) -> list[dict]:
    path = os.path.join(model_dir, files.SEARCH_HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        rows = json.load(f).get(key, [])
    return [r for r in rows if up_to_step is None or r["step"] <= up_to_step]


def read_history(model_dir: str, up_to_step: int | None = None) -> list[dict]:
    """The recorded history rows (those at or before ``up_to_step``), [] when there is none."""
    return _read_history_key(model_dir, "rows", up_to_step)


def read_heldout(model_dir: str, up_to_step: int | None = None) -> list[dict]:
    """The recorded held-out evaluations (step, top1, top5, num_images), [] when none."""
    return _read_history_key(model_dir, "heldout", up_to_step)


def learning_summary(history: Sequence[Mapping], heldout: Sequence[Mapping],
                     warmup_steps: int) -> dict:
    """How well the supernet learns: last training top-1, held-out top-1 at the end and at the
    end of the warm-up (the first evaluation at or after it); None where not measured."""
    train = [row["accuracy"] for row in history if "accuracy" in row]
    after_warmup = [row for row in heldout if row["step"] >= warmup_steps]
    return {
        "supernet_train_top1": float(train[-1]) if train else None,
        "supernet_heldout_top1": float(heldout[-1]["top1"]) if heldout else None,
        "supernet_heldout_top1_after_warmup": (float(after_warmup[0]["top1"])
                                               if after_warmup else None),
        "heldout_images": int(heldout[-1].get("num_images", 0)) if heldout else 0,
        "warmup_steps": int(warmup_steps),
        "heldout": [dict(row) for row in heldout],
    }


def _block_rows(supernet: Supernet, decisions: Sequence[BlockDecision]) -> list[dict]:
    profile = supernet.search_cost.profile(decisions)
    child_costs = iter(profile.blocks)
    thresholds = {name: float(np.asarray(v)) for name, v in supernet.threshold_values().items()}
    rows = []
    for block, layer, decision in zip(supernet.space.blocks, supernet.search_blocks, decisions,
                                      strict=True):
        cost = next(child_costs) if decision.keep else None
        row = {
            "index": block.index, "stage": block.stage, "position": block.position,
            "input_filters": block.input_filters, "output_filters": block.output_filters,
            "stride": block.stride, "se_ratio": decision.se_ratio, "searchable": block.searchable,
            "keep": decision.keep, "kernel_size": decision.kernel_size,
            "expand_ratio": decision.expand_ratio, "lightnl_ratio": decision.lightnl_ratio,
            "lightnl_stride": decision.lightnl_stride if decision.lightnl_ratio else None,
            "label": decision.label(),
            "choices": {"kernel_sizes": list(block.kernel_sizes),
                        "expand_ratios": list(block.expand_ratios),
                        "se_ratios": list(block.se_ratios),
                        "skippable": block.skippable,
                        "lightnl_ratios": list(block.lightnl_ratios),
                        "lightnl_strides": list(block.lightnl_strides)},
            "macs": cost.macs if cost else 0,
            "params": cost.params if cost else 0,
            "lightnl_macs": cost.nonlocal_macs if cost else 0,
        }
        if supernet.latency_cost is not None:
            row["latency_ms"] = _block_latency_ms(supernet, block, decision)
        if isinstance(layer, SuperMBConvBlock):
            scores = layer.scores()
            names = gate_names(block)
            row["thresholds"] = {name.split("/", 1)[1]: thresholds[name] for name, _, _ in names}
            row["scores"] = {
                name.split("/", 1)[1]: float(np.asarray(
                    scores[key] if index is None else scores[key][index]))
                for name, key, index in names}
        rows.append(row)
    return rows


def _block_latency_ms(supernet: Supernet, block, decision: BlockDecision) -> float:
    """The table's latency of one block of the child (its MBConv and LightNL parts)."""
    if not decision.keep:
        return 0.0
    parts = supernet.latency_cost.parts
    table = supernet.latency_cost.table
    total = table.ms(parts.mbconv[block.index][block.kernel_sizes.index(decision.kernel_size)][
        block.expand_ratios.index(decision.expand_ratio)][block.se_ratios.index(decision.se_ratio)])
    if decision.lightnl_ratio is not None:
        total += table.ms(parts.lightnl[block.index][
            block.lightnl_ratios.index(decision.lightnl_ratio)][
            block.lightnl_strides.index(decision.lightnl_stride)])
    return total


def latency_summary(supernet: Supernet, decisions: Sequence[BlockDecision],
                    target_ms: float | None) -> dict | None:
    """The child's predicted latency against the target, and the table's setting (None when
    the search has no latency table)."""
    latency = supernet.latency_cost
    if latency is None:
        return None
    predicted = latency.latency(decisions)
    low, high = latency.feasible_range()
    table = latency.table
    return {
        "target_ms": float(target_ms) if target_ms else None,
        "predicted_ms": predicted,
        "relative_error": (predicted - target_ms) / target_ms if target_ms else None,
        "feasible_range_ms": [low, high],
        "measured_ms": None,
        "measured_relative_error": None,
        "measured": "not measured yet (search_main.py times the child at the end)",
        "table": table.path,
        "device": table.device,
        "runtime": table.data.get("runtime"),
        "mode": table.mode,
        "threads": table.threads,
        "overhead_ms": table.overhead_ms,
        "stem_ms": table.ms(latency.parts.stem),
        "head_ms": table.ms(latency.parts.head),
    }


def record_measured_latency(model_dir: str, measured_ms: float | None, how: str) -> dict:
    """Writes the searched child's measured latency (or why it was not measured) into
    search_summary.json and redraws search.png; returns the summary."""
    path = os.path.join(model_dir, files.SEARCH_SUMMARY_FILE)
    summary = files.read_json(path)
    latency = summary.get("latency")
    if latency is None:
        raise ValueError(f"{path} has no latency section: the search had no latency target")
    target = latency.get("target_ms")
    latency["measured_ms"] = measured_ms
    latency["measured_relative_error"] = ((measured_ms - target) / target
                                          if measured_ms is not None and target else None)
    latency["measured"] = how
    files.write_json_atomic(path, summary, allow_nan=True)
    from autonl_tf.search.figure import render_search_figure

    history = read_history(model_dir)
    png = render_search_figure(summary, history, warmup_steps=summary.get("warmup_steps", 0))
    files.write_atomic(os.path.join(model_dir, files.SEARCH_FIGURE_FILE), png)
    return summary


def search_summary(supernet: Supernet, step: int, target_macs: float | None = None,
                   target_latency_ms: float | None = None) -> dict:
    """A JSON-ready account of the current decisions (see the module docstring)."""
    decisions = decode.current_decisions(supernet)
    profile = supernet.search_cost.profile(decisions)
    low, high = supernet.search_cost.feasible_range()
    summary = {
        "step": int(step),
        "arch": decode.arch_text(supernet, decisions).splitlines(),
        "macs": int(profile.macs),
        "params": int(profile.params),
        "expected_macs": int(supernet.search_cost.macs(decisions)),
        "target_macs": float(target_macs) if target_macs else None,
        "relative_error": ((profile.macs - target_macs) / target_macs) if target_macs else None,
        "feasible_range": [int(low), int(high)],
        "image_size": supernet.image_size,
        "num_classes": supernet.num_classes,
        "width_multiplier": supernet.width_multiplier,
        "num_decisions": supernet.space.num_decisions,
        "blocks": _block_rows(supernet, decisions),
    }
    latency = latency_summary(supernet, decisions, target_latency_ms)
    if latency is not None:
        summary["latency"] = latency
    return summary


def write_search_outputs(model_dir: str, supernet: Supernet, step: int,
                         history: Sequence[Mapping[str, float]] = (),
                         target_macs: float | None = None,
                         warmup_steps: int = 0, total_steps: int | None = None,
                         figure: bool = True, heldout: Sequence[Mapping] = (),
                         target_latency_ms: float | None = None,
                         write_arch: bool = True) -> dict:
    """Writes search_summary.json, search_history.json, search.png and (``write_arch``)
    arch.txt; returns the summary."""
    tf.io.gfile.makedirs(model_dir)
    summary = search_summary(supernet, step, target_macs, target_latency_ms)
    summary.update(learning_summary(history, heldout, warmup_steps))
    if write_arch:
        files.write_atomic(os.path.join(model_dir, files.ARCH_FILE),
                           "\n".join(summary["arch"]) + "\n")
    files.write_json_atomic(os.path.join(model_dir, files.SEARCH_SUMMARY_FILE), summary, allow_nan=True)
    files.write_json_atomic(os.path.join(model_dir, files.SEARCH_HISTORY_FILE),
                            {"rows": [dict(r) for r in history],
                             "heldout": [dict(r) for r in heldout]}, indent=None,
                            allow_nan=True)
    if figure:
        from autonl_tf.search.figure import render_search_figure

        png = render_search_figure(summary, history, warmup_steps=warmup_steps,
                                   total_steps=total_steps)
        files.write_atomic(os.path.join(model_dir, files.SEARCH_FIGURE_FILE), png)
    return summary
