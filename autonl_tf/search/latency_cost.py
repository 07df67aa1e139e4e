"""Latency as the search's cost: a measured table of per-part latencies and the expected latency.

A latency table (built by ``python -m autonl_tf.latency.build_table``, docs/latency.md) holds,
for one search space at one image size, width multiplier, class count and TFLite mode on one
device, the latency in milliseconds of every *part* a child network can contain: the stem, each
(kernel, expansion, SE) choice of each block at the map size and channels where the block sits,
each LightNL (ratio, stride) choice after it, the head + classifier, and a fitted per-network
constant (the interpreter's invoke overhead and what the parts' measurements leave out).

The predicted latency of a child is ``overhead + stem + head + sum over its blocks``: the
table's sum. `LatencyCost.expected_latency` evaluates that sum as the same multilinear function
of the supernet's indicators as the expected MACs (`autonl_tf.search.search_cost`, with the same
nested weights): with hard (0/1) indicators it IS the table's prediction for the decoded child.

Parts are keyed by what decides their latency (kind, map size, channels, stride, choices), so
blocks with the same shapes share one measurement; a table also records the space's fingerprint,
image size, width, class count and mode it was built for, and `LatencyTable.check_matches`
refuses it, in one line, for any other.

This module does no measuring and needs no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence

from autonl_tf.errors import UserError
from autonl_tf.plan import same_output_size
from autonl_tf.search.search_cost import (
    BlockGates,
    TargetError,
    block_decisions,
    block_expected_cost,
    gates_from_decision,
)
from autonl_tf.search.space import BlockDecision, SearchBlock, SearchSpace

__all__ = ["TABLE_FORMAT", "TABLE_VERSION", "LatencyCost", "LatencyTable", "LatencyTableError",
           "Part", "SpaceParts", "space_fingerprint", "space_parts"]

TABLE_FORMAT = "autonl_tf.latency_table"
TABLE_VERSION = 1
PART_KINDS = ("stem", "mbconv", "lightnl", "head")


class LatencyTableError(UserError, ValueError):
    """A latency table that cannot be read, or was built for another setting; names the fix."""


@dataclasses.dataclass(frozen=True)
class Part:
    """One measurable piece of a child network (channels already width-multiplied).

    kind: 'stem' (3x3 stride-2 conv, BN, activation on the image), 'mbconv' (one MBConv block
    without LightNL), 'lightnl' (a LightNL on a block's output) or 'head' (1x1 conv, BN,
    activation, global pooling and the classifier). ``size`` is the input map's side.
    """

    kind: str
    size: int
    input_filters: int
    output_filters: int
    stride: int = 1
    kernel_size: int = 0
    expand_ratio: int = 0
    se_ratio: float | None = None
    lightnl_ratio: float | None = None
    lightnl_stride: int = 1
    num_classes: int = 0
    activation: str = "swish"

    @property
    def output_size(self) -> int:
        return same_output_size(self.size, self.stride)

    @property
    def key(self) -> str:
        """A unique, readable name, e.g. 'mbconv 16px 8>16 s2 k5 e6 se0.25 swish'."""
        where = f"{self.kind} {self.size}px {self.input_filters}>{self.output_filters}"
        if self.kind == "mbconv":
            return (f"{where} s{self.stride} k{self.kernel_size} e{self.expand_ratio} "
                    f"se{self.se_ratio or 0:g} {self.activation}")
        if self.kind == "lightnl":
            return f"{where} r{self.lightnl_ratio:g} s{self.lightnl_stride}"
        if self.kind == "head":
            return f"{where} classes{self.num_classes} {self.activation}"
        return f"{where} s{self.stride} {self.activation}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, value: Mapping) -> Part:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in fields})


def space_fingerprint(space: SearchSpace) -> str:
    """A short hash of the unrolled space (every block's channels, stride and choices)."""
    text = json.dumps(dataclasses.asdict(space), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class SpaceParts:
    """The parts of every child of a space: ``mbconv[b][i][j][k]`` for kernel i, expansion j,
    SE k of block b; ``lightnl[b][r][s]`` for LightNL ratio r, stride s after block b."""

    stem: Part
    head: Part
    mbconv: dict[int, tuple[tuple[tuple[Part, ...], ...], ...]]
    lightnl: dict[int, tuple[tuple[Part, ...], ...]]

    def all(self) -> list[Part]:
        """Every distinct part, in network order."""
        parts = [self.stem]
        for index in sorted(self.mbconv):
            parts += [p for by_kernel in self.mbconv[index] for by_expand in by_kernel
                      for p in by_expand]
            parts += [p for by_ratio in self.lightnl.get(index, ()) for p in by_ratio]
        parts.append(self.head)
        return list(dict.fromkeys(parts))

    def of_child(self, space: SearchSpace, decisions: Sequence[BlockDecision]) -> list[Part]:
        """The parts of one child network, in network order."""
        space.check(decisions)
        parts = [self.stem]
        for block, decision in zip(space.blocks, decisions, strict=True):
            if not decision.keep:
                continue
            i, j, k = (block.kernel_sizes.index(decision.kernel_size),
                       block.expand_ratios.index(decision.expand_ratio),
                       block.se_ratios.index(decision.se_ratio))
            parts.append(self.mbconv[block.index][i][j][k])
            if decision.lightnl_ratio is not None:
                parts.append(self.lightnl[block.index][
                    block.lightnl_ratios.index(decision.lightnl_ratio)][
                    block.lightnl_strides.index(decision.lightnl_stride)])
        parts.append(self.head)
        return parts


def space_parts(space: SearchSpace, image_size: int, num_classes: int,
                width_multiplier: float = 1.0, depth_divisor: int = 8) -> SpaceParts:
    """The parts of a space's children at an image size / class count / width: each block's
    choices at the map size and channels of the space's plan (`SearchSpace.plan`)."""
    plan = space.plan(image_size, num_classes, width_multiplier, depth_divisor)
    stem = Part("stem", plan.stem.in_size, plan.stem.in_channels, plan.stem.out_channels,
                stride=plan.stem.stride, kernel_size=plan.stem.kernel_size,
                activation=plan.stem.activation)
    mbconv, lightnl = {}, {}
    for layer in plan.blocks:
        # A block without choices has one option: the plan's block (and no LightNL candidate).
        options = layer.choices or space.blocks[layer.index].choices
        mbconv[layer.index] = tuple(tuple(tuple(
            Part("mbconv", layer.in_size, layer.in_channels, layer.out_channels, layer.stride,
                 kernel, expand, se, activation=layer.activation)
            for se in options.se_ratios) for expand in options.expand_ratios)
            for kernel in options.kernel_sizes)
        if options.lightnl_ratios:
            lightnl[layer.index] = tuple(tuple(
                Part("lightnl", layer.out_size, layer.out_channels, layer.out_channels,
                     lightnl_ratio=ratio, lightnl_stride=stride)
                for stride in options.lightnl_strides) for ratio in options.lightnl_ratios)
    head = plan.head
    head = Part("head", head.in_size, head.in_channels, head.out_channels,
                num_classes=plan.num_classes, activation=head.activation)
    return SpaceParts(stem, head, mbconv, lightnl)


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """A measured latency table (the JSON file's content; docs/latency.md describes it).

    Attributes:
      data: the whole JSON object.
      path: where it was read from ('' when built in memory).
    """

    data: Mapping
    path: str = ""

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str) -> LatencyTable:
        """Reads and validates a table file.

        Raises:
          LatencyTableError: a missing/unreadable file or a malformed table (one line).
        """
        from autonl_tf import files

        try:
            data = files.read_json(path)
        except Exception as e:  # noqa: BLE001  (not found, not JSON: the same fix)
            raise LatencyTableError(
                f"latency table {path}: cannot read it ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); build one with "
                "`python -m autonl_tf.latency.build_table` (docs/latency.md)") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Mapping, path: str = "") -> LatencyTable:
        where = f"latency table {path or '(in memory)'}"
        if not isinstance(data, Mapping) or data.get("format") != TABLE_FORMAT:
            raise LatencyTableError(f"{where}: not an autonl_tf latency table (expected "
                                    f"\"format\": \"{TABLE_FORMAT}\")")
        if data.get("format_version") != TABLE_VERSION:
            raise LatencyTableError(f"{where}: format_version {data.get('format_version')!r}, "
                                    f"this autonl_tf reads {TABLE_VERSION}; rebuild the table")
        missing = [k for k in ("mode", "threads", "device", "setting", "entries", "overhead_ms")
                   if k not in data]
        if missing:
            raise LatencyTableError(f"{where}: missing key {missing[0]!r}")
        setting = data["setting"]
        missing = [k for k in ("image_size", "width_multiplier", "num_classes", "depth_divisor",
                               "space_fingerprint") if k not in setting]
        if missing:
            raise LatencyTableError(f"{where}: missing key 'setting.{missing[0]}'")
        for key, entry in data["entries"].items():
            value = entry.get("ms") if isinstance(entry, Mapping) else None
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise LatencyTableError(f"{where}: entry {key!r} has no finite 'ms'")
        if not isinstance(data["overhead_ms"], int | float) or not math.isfinite(
                data["overhead_ms"]):
            raise LatencyTableError(f"{where}: overhead_ms must be a finite number")
        return cls(data, path)

    # -- what it was built for -------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return str(self.data["mode"])

    @property
    def threads(self) -> int:
        return int(self.data["threads"])

    @property
    def device(self) -> str:
        return str(self.data["device"])

    @property
    def overhead_ms(self) -> float:
        return float(self.data["overhead_ms"])

    @property
    def setting(self) -> Mapping:
        return self.data["setting"]

    def describe(self) -> str:
        """One line: device, runtime, mode, threads."""
        return (f"{self.device}, {self.data.get('runtime', 'LiteRT')}, {self.mode}, "
                f"{self.threads} thread(s)")

    def check_matches(self, space: SearchSpace, image_size: int, num_classes: int,
                      width_multiplier: float = 1.0, depth_divisor: int = 8,
                      mode: str | None = None) -> None:
        """Raises LatencyTableError (one line) unless the table was built for this setting.

        Args:
          mode: the TFLite mode asked for; None accepts the table's.
        """
        setting = self.setting
        wanted = {"image_size": int(image_size), "width_multiplier": float(width_multiplier),
                  "num_classes": int(num_classes), "depth_divisor": int(depth_divisor)}
        problems = [f"{key}={setting[key]!r} (this search: {value!r})"
                    for key, value in wanted.items()
                    if (float(setting[key]) != float(value))]
        if setting["space_fingerprint"] != space_fingerprint(space):
            problems.insert(0, f"another search space (fingerprint {setting['space_fingerprint']}"
                               f", this search's: {space_fingerprint(space)})")
        if mode is not None and mode != self.mode:
            problems.append(f"mode {self.mode!r} (asked: {mode!r})")
        if problems:
            raise LatencyTableError(
                f"latency table {self.path or '(in memory)'} was built for "
                f"{'; '.join(problems)}; build one for this setting with `python -m "
                f"autonl_tf.latency.build_table` (docs/latency.md)")
        parts = space_parts(space, image_size, num_classes, width_multiplier, depth_divisor)
        missing = [p.key for p in parts.all() if p.key not in self.data["entries"]]
        if missing:
            raise LatencyTableError(f"latency table {self.path or '(in memory)'} has no entry "
                                    f"for {missing[0]!r} ({len(missing)} missing); rebuild it")

    def ms(self, part: Part) -> float:
        """The part's latency in milliseconds."""
        try:
            return float(self.data["entries"][part.key]["ms"])
        except KeyError:
            raise LatencyTableError(f"latency table {self.path or '(in memory)'} has no entry "
                                    f"for {part.key!r}; rebuild it") from None


class LatencyCost:
    """The table's latency of every child of a space, and its expectation under the indicators.

    Raises LatencyTableError (on construction) when the table does not match the setting.
    """

    def __init__(self, space: SearchSpace, table: LatencyTable, image_size: int = 224,
                 num_classes: int = 1000, width_multiplier: float = 1.0,
                 depth_divisor: int = 8, mode: str | None = None):
        table.check_matches(space, image_size, num_classes, width_multiplier, depth_divisor,
                            mode)
        self.space = space
        self.table = table
        self.parts = space_parts(space, image_size, num_classes, width_multiplier,
                                 depth_divisor)
        ms = table.ms
        # The constant part: overhead, stem, head and the blocks without decisions (which have
        # one choice and no LightNL candidate).
        fixed = table.overhead_ms + ms(self.parts.stem) + ms(self.parts.head)
        for block in space.blocks:
            if not block.searchable:
                fixed += ms(self.parts.mbconv[block.index][0][0][0])
        self.fixed_ms = fixed
        self.mbconv_ms = {b.index: tuple(tuple(tuple(ms(p) for p in by_se) for by_se in by_kernel)
                                         for by_kernel in self.parts.mbconv[b.index])
                          for b in space.searchable_blocks}
        self.lightnl_ms = {b.index: tuple(tuple(ms(p) for p in by_ratio)
                                          for by_ratio in self.parts.lightnl[b.index])
                           for b in space.searchable_blocks if b.has_lightnl}

    def _block_expected(self, block: SearchBlock, gates: BlockGates):
        return block_expected_cost(block, gates, self.mbconv_ms[block.index],
                                   self.lightnl_ms.get(block.index))

    def expected_latency(self, gates: Sequence[BlockGates | None]):
        """Expected latency (ms) given every block's gates (None for blocks without decisions).

        Returns a value of the gates' type: a float32/float64 scalar tensor or a Python float.
        """
        if len(gates) != len(self.space.blocks):
            raise ValueError(f"{len(gates)} gate sets for {len(self.space.blocks)} blocks")
        total = self.fixed_ms
        for block, block_gates in zip(self.space.blocks, gates, strict=True):
            if block.searchable:
                total = total + self._block_expected(block, block_gates)
        return total

    def gates(self, decisions: Sequence[BlockDecision]) -> list[dict | None]:
        self.space.check(decisions)
        return [gates_from_decision(b, d) if b.searchable else None
                for b, d in zip(self.space.blocks, decisions, strict=True)]

    def latency(self, decisions: Sequence[BlockDecision]) -> float:
        """The predicted latency (ms) of a child: the expected latency at its 0/1 gates."""
        return float(self.expected_latency(self.gates(decisions)))

    def predict(self, decisions: Sequence[BlockDecision]) -> float:
        """The same prediction as a plain sum over the child's parts (`SpaceParts.of_child`)."""
        return self.table.overhead_ms + sum(self.table.ms(p)
                                            for p in self.parts.of_child(self.space, decisions))

    def breakdown(self, decisions: Sequence[BlockDecision]) -> list[dict]:
        """The child's parts and their table latencies, in network order."""
        return [{"part": p.key, "ms": self.table.ms(p)}
                for p in self.parts.of_child(self.space, decisions)]

    # -- range and target -----------------------------------------------------------------------
    def feasible_range(self) -> tuple[float, float]:
        """(smallest, largest) predicted latency over all children of the space, in ms."""
        low = high = self.fixed_ms
        for block in self.space.searchable_blocks:
            options = [float(self._block_expected(block, gates_from_decision(block, d)))
                       for d in block_decisions(block)]
            low += min(options)
            high += max(options)
        return low, high

    def describe(self) -> str:
        low, high = self.feasible_range()
        return (f"feasible range of this search space: {low:.4g} to {high:.4g} ms predicted by "
                f"{self.table.path or 'the latency table'} ({self.table.describe()})")

    def check_target(self, target_ms: float) -> None:
        """Raises TargetError (printing the feasible range) when no child can reach the target."""
        low, high = self.feasible_range()
        if not low <= target_ms <= high:
            where = "below the fastest" if target_ms < low else "above the slowest"
            raise TargetError(f"target_latency_ms={target_ms:g} is {where} child network: "
                              f"{self.describe()}")
