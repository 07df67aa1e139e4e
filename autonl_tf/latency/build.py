"""Builds a latency table: which models to time, converting them, and the table from timings.

`plan_models` lists what a table is measured from: one part model per distinct part of the
space's children (`autonl_tf.search.latency_cost.space_parts`), one baseline per distinct
adapter, and a few *reference children* (the smallest, the largest and random ones) that fit the
per-network constant. `convert_models` converts them (`autonl_tf.export.convert_to_tflite`, the
export's own converter); the timings come from LiteRT on this machine
(`autonl_tf.latency.timing`) or from Android's ``benchmark_model``
(`autonl_tf.latency.benchmark_model`); `assemble_table` turns either into the table:

* entry of a part = t(part model) - t(its baseline), with the two spreads added;
* ``overhead_ms`` = median over the reference children of t(child) - sum of its entries: what a
  whole network costs beyond its parts (one interpreter invoke instead of one per part, the
  input's normalisation and quantisation, the output). The residuals of that fit are recorded
  (``overhead_fit``): the table's own check of its additivity.
"""

from __future__ import annotations

import dataclasses
import datetime
import statistics
from collections.abc import Callable, Mapping, Sequence

from autonl_tf.search.latency_cost import (
    TABLE_FORMAT,
    TABLE_VERSION,
    Part,
    space_fingerprint,
    space_parts,
)
from autonl_tf.search.space import BlockDecision, SearchSpace

__all__ = ["ModelPlan", "assemble_table", "convert_models", "plan_models",
           "reference_decisions"]

# Seeds of the random reference children, far from those of benchmarks/latency_predictor.py
# (0, 1, 2, ...): the children that fit the constant are never those that test the prediction.
REFERENCE_SEED = 1_000_000


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """The models a table is measured from (JSON-ready through `to_dict`).

    setting: image_size, width_multiplier, num_classes, depth_divisor, space_fingerprint.
    parts: part key -> Part.
    baselines: part key -> name of its baseline model.
    children: child name -> {'arch': [block strings], 'parts': [part keys]}.
    """

    setting: dict
    parts: dict[str, Part]
    baselines: dict[str, str]
    children: dict[str, dict]

    def model_names(self) -> list[str]:
        """Every model to time: 'part:<key>', 'baseline:<name>', 'child:<name>'."""
        return ([f"part:{key}" for key in self.parts]
                + [f"baseline:{name}" for name in dict.fromkeys(self.baselines.values())]
                + [f"child:{name}" for name in self.children])

    def to_dict(self) -> dict:
        return {"setting": self.setting,
                "parts": {key: part.to_dict() for key, part in self.parts.items()},
                "baselines": self.baselines, "children": self.children}

    @classmethod
    def from_dict(cls, value: Mapping) -> ModelPlan:
        return cls(dict(value["setting"]),
                   {key: Part.from_dict(p) for key, p in value["parts"].items()},
                   dict(value["baselines"]), {k: dict(v) for k, v in value["children"].items()})


def baseline_name(part: Part) -> str:
    """The baseline a part shares with every part of the same input (see `parts`)."""
    if part.kind == "stem":
        return f"image {part.size}px"
    return f"adapter {part.size}px 3>{part.input_filters}"


def reference_decisions(space: SearchSpace, count: int) -> list[tuple[BlockDecision, ...]]:
    """The smallest and largest children, then random ones: ``count`` in all (>= 1)."""
    children = [space.smallest(), space.largest()][:count]
    children += [space.random(REFERENCE_SEED + i) for i in range(max(0, count - 2))]
    return children


def plan_models(space: SearchSpace, image_size: int, num_classes: int,
                width_multiplier: float = 1.0, depth_divisor: int = 8,
                reference_children: int = 6, space_config: Mapping | None = None) -> ModelPlan:
    """What to time for a table of ``space`` at this size / width / class count."""
    from autonl_tf.arch import encode_block

    if reference_children < 1:
        raise ValueError("reference_children must be >= 1 (they fit the per-network constant)")
    parts = space_parts(space, image_size, num_classes, width_multiplier, depth_divisor)
    setting = {"image_size": int(image_size), "width_multiplier": float(width_multiplier),
               "num_classes": int(num_classes), "depth_divisor": int(depth_divisor),
               "space_fingerprint": space_fingerprint(space),
               "num_blocks": len(space.blocks), "num_decisions": space.num_decisions}
    if space_config is not None:
        setting["search_space"] = _plain(space_config)
    children = {}
    for index, decisions in enumerate(reference_decisions(space, reference_children)):
        children[f"reference_{index}"] = {
            "arch": [encode_block(row) for row in space.child_blocks(decisions)],
            "parts": [p.key for p in parts.of_child(space, decisions)]}
    return ModelPlan(setting, {p.key: p for p in parts.all()},
                     {p.key: baseline_name(p) for p in parts.all()}, children)


def _plain(value):
    """A ConfigDict / tuples as plain JSON values."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def convert_models(plan: ModelPlan, mode: str, log: Callable[[str], None] = print
                   ) -> dict[str, bytes]:
    """{model name: .tflite bytes} of every model of the plan, converted in ``mode``."""
    import keras

    from autonl_tf.arch import decode_arch
    from autonl_tf.latency import parts as part_models
    from autonl_tf.models import build_model
    from autonl_tf.models.registry import spec_from_blocks

    setting = plan.setting
    size, classes = setting["image_size"], setting["num_classes"]
    width, divisor = setting["width_multiplier"], setting["depth_divisor"]
    baseline_parts = {}
    for key, name in plan.baselines.items():
        baseline_parts.setdefault(name, plan.parts[key])
    jobs: list[tuple[str, Callable, int]] = []
    jobs += [(f"part:{key}", lambda p=part: part_models.part_model(p), part.size)
             for key, part in plan.parts.items()]
    jobs += [(f"baseline:{name}", lambda p=part: part_models.baseline_model(p), part.size)
             for name, part in baseline_parts.items()]
    for name, child in plan.children.items():
        def build(arch=child["arch"]):
            keras.utils.set_random_seed(0)
            spec = spec_from_blocks("reference", decode_arch(arch))
            return part_models.randomize_batch_norms(build_model(
                spec, classes, size, width, dropout_rate=0.0, depth_divisor=divisor))
        jobs.append((f"child:{name}", build, size))
    converted = {}
    for number, (name, build, input_size) in enumerate(jobs, start=1):
        converted[name] = part_models.convert(build(), input_size, mode)
        if number % 10 == 0 or number == len(jobs):
            log(f"converted {number}/{len(jobs)} models ({mode})")
        if number % 20 == 0:
            keras.backend.clear_session()  # the converter's traced graphs pile up otherwise
    return converted


def assemble_table(plan: ModelPlan, timings: Mapping[str, tuple[float, float]], *, mode: str,
                   threads: int, device: str, runtime: str, litert_version: str,
                   statistic: str, command: str = "", date: str | None = None) -> dict:
    """The table (JSON-ready) from {model name: (latency ms, spread ms)} of every plan model."""
    missing = [name for name in plan.model_names() if name not in timings]
    if missing:
        raise ValueError(f"no timing for {len(missing)} model(s), e.g. {missing[0]!r}")
    entries = {}
    for key, part in plan.parts.items():
        part_ms, part_spread = timings[f"part:{key}"]
        base_ms, base_spread = timings[f"baseline:{plan.baselines[key]}"]
        entries[key] = {**part.to_dict(), "ms": part_ms - base_ms,
                        "spread_ms": part_spread + base_spread, "model_ms": part_ms,
                        "baseline": plan.baselines[key], "baseline_ms": base_ms}
    sums, measured = {}, {}
    for name, child in plan.children.items():
        sums[name] = sum(entries[key]["ms"] for key in child["parts"])
        measured[name] = timings[f"child:{name}"][0]
    overhead = statistics.median(measured[n] - sums[n] for n in plan.children)
    children = [{"name": name, "arch": child["arch"], "measured_ms": measured[name],
                 "spread_ms": timings[f"child:{name}"][1],
                 "predicted_ms": sums[name] + overhead,
                 "relative_error": (sums[name] + overhead - measured[name]) / measured[name]}
                for name, child in plan.children.items()]
    return {
        "format": TABLE_FORMAT,
        "format_version": TABLE_VERSION,
        "device": device,
        "runtime": runtime,
        "litert_version": litert_version,
        "mode": mode,
        "threads": int(threads),
        "date": date or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "statistic": statistic,
        "setting": plan.setting,
        "overhead_ms": overhead,
        "overhead_fit": {
            "method": "median over the reference children of measured - sum of their entries",
            "children": children},
        "baselines": {name: {"ms": timings[f"baseline:{name}"][0],
                             "spread_ms": timings[f"baseline:{name}"][1]}
                      for name in dict.fromkeys(plan.baselines.values())},
        "entries": entries,
    }


def check_fit(table: Mapping, within: float = 0.1) -> list[str]:
    """Reference children whose prediction is off by more than ``within`` (relative)."""
    return [f"{c['name']}: predicted {c['predicted_ms']:.4f} ms, measured "
            f"{c['measured_ms']:.4f} ms ({100 * c['relative_error']:+.1f}%)"
            for c in table["overhead_fit"]["children"] if abs(c["relative_error"]) > within]


def describe_table(table: Mapping, names: Sequence[str] = ()) -> str:
    """A few lines: device, mode, entries, overhead and the reference children's errors."""
    children = table["overhead_fit"]["children"]
    worst = max(abs(c["relative_error"]) for c in children)
    measured = ", ".join(f"{c['measured_ms']:.4f}" for c in children)
    lines = [f"{len(table['entries'])} entries, {table['mode']}, {table['threads']} thread(s), "
             f"{table['device']}; overhead {table['overhead_ms']:.4f} ms; reference children "
             f"predicted within {100 * worst:.1f}% "
             f"({measured} ms measured)"]
    for name in names:
        entry = table["entries"][name]
        lines.append(f"  {name}: {entry['ms']:.4f} ms (spread {entry['spread_ms']:.4f})")
    return "\n".join(lines)
