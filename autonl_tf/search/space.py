"""The search space: which block may take which choices, and the child network of a decision.

A space is data (`autonl_tf.search.spaces`); `space_from_config` validates it and unrolls it into
one `SearchBlock` per supernet block. A `BlockDecision` per block fully describes a child
network; `SearchSpace.child_blocks` turns the decisions into the `BlockSpec` rows of the
architecture codec, i.e. exactly what ``arch.txt`` holds and what ``train_main.py --arch``
builds.

Every list of choices is ordered from the cheapest to the most expensive option (kernels and
expansions ascending, LightNL ratios ascending, LightNL strides descending), so that the
supernet's nested indicators mean "switch on the next, more expensive option".
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

from autonl_tf.arch import BlockSpec, encode_block, expand_repeats
from autonl_tf.errors import UserError
from autonl_tf.layers.mbconv import ACTIVATIONS
from autonl_tf.models.registry import spec_from_blocks
from autonl_tf.models.spec import ModelSpec
from autonl_tf.plan import STEM_FILTERS, BlockChoices, NetworkPlan, plan_network

__all__ = [
    "ArchNotInSpaceError",
    "BlockDecision",
    "SearchBlock",
    "SearchSpace",
    "SearchSpaceError",
    "decisions_for_arch",
    "space_from_config",
]

_SPACE_KEYS = ("activation", "kernel_sizes", "expand_ratios", "lightnl_ratios",
               "lightnl_strides", "stages")
_STAGE_REQUIRED = ("filters", "repeats", "stride")
_STAGE_OPTIONAL = ("kernel_sizes", "expand_ratios", "lightnl_ratios", "lightnl_strides",
                   "se_ratio", "se_ratios", "lightnl", "skip")


class SearchSpaceError(UserError, ValueError):
    """A malformed search-space config; the message names the offending key."""


@dataclasses.dataclass(frozen=True)
class SearchBlock:
    """The choices of one supernet block (repeats unrolled). Channels are before the width multiplier.

    ``kernel_sizes``/``expand_ratios``/``se_ratios``/``lightnl_ratios``/``lightnl_strides`` run
    from the cheapest to the most expensive choice; a single entry means the choice is fixed.
    ``se_ratios`` starts with None (no SE) when SE is optional. An empty ``lightnl_ratios`` means
    no LightNL candidate after this block.
    """

    index: int
    stage: int
    position: int
    input_filters: int
    output_filters: int
    stride: int
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    se_ratios: tuple[float | None, ...]
    skippable: bool
    lightnl_ratios: tuple[float, ...] = ()
    lightnl_strides: tuple[int, ...] = ()

    @property
    def se_ratio(self) -> float | None:
        """The largest SE choice: what the supernet allocates (None = no SE at all)."""
        return self.se_ratios[-1]

    @property
    def has_lightnl(self) -> bool:
        return bool(self.lightnl_ratios)

    @property
    def num_decisions(self) -> int:
        """Binary indicators of this block (0 = a fixed block)."""
        count = (int(self.skippable) + len(self.kernel_sizes) - 1 + len(self.expand_ratios) - 1
                 + len(self.se_ratios) - 1)
        if self.has_lightnl:
            count += 1 + len(self.lightnl_ratios) - 1 + len(self.lightnl_strides) - 1
        return count

    @property
    def searchable(self) -> bool:
        return self.num_decisions > 0

    @property
    def choices(self) -> BlockChoices:
        """The options of this block, as a network plan carries them."""
        return BlockChoices(self.kernel_sizes, self.expand_ratios, self.se_ratios,
                            self.skippable, self.lightnl_ratios, self.lightnl_strides)

    def largest(self) -> BlockDecision:
        """The most expensive choice of every decision (what the supernet starts from)."""
        return BlockDecision(True, self.kernel_sizes[-1], self.expand_ratios[-1],
                             self.lightnl_ratios[-1] if self.has_lightnl else None,
                             self.lightnl_strides[-1] if self.has_lightnl else 1,
                             self.se_ratios[-1])

    def smallest(self) -> BlockDecision:
        return BlockDecision(not self.skippable, self.kernel_sizes[0], self.expand_ratios[0],
                             None, 1, self.se_ratios[0])

    def decision(self, keep: bool = True, kernel_size: int | None = None,
                 expand_ratio: int | None = None, lightnl_ratio: float | None = None,
                 lightnl_stride: int = 1, se_ratio: float | None | str = "largest"
                 ) -> BlockDecision:
        """A decision of this block; unspecified kernel/expansion/SE take the largest choice."""
        return BlockDecision(
            keep, self.kernel_sizes[-1] if kernel_size is None else kernel_size,
            self.expand_ratios[-1] if expand_ratio is None else expand_ratio,
            lightnl_ratio, lightnl_stride if lightnl_ratio is not None else 1,
            self.se_ratios[-1] if se_ratio == "largest" else se_ratio)

    def random(self, rng: random.Random) -> BlockDecision:
        lightnl = self.has_lightnl and rng.random() < 0.5
        return BlockDecision(
            keep=not self.skippable or rng.random() < 0.7,
            kernel_size=rng.choice(self.kernel_sizes),
            expand_ratio=rng.choice(self.expand_ratios),
            lightnl_ratio=rng.choice(self.lightnl_ratios) if lightnl else None,
            lightnl_stride=rng.choice(self.lightnl_strides) if lightnl else 1,
            se_ratio=rng.choice(self.se_ratios))

    def check(self, decision: BlockDecision) -> None:
        """Raises ValueError when the decision is not one of this block's choices."""
        problems = []
        if not decision.keep and not self.skippable:
            problems.append("it cannot be skipped")
        if decision.kernel_size not in self.kernel_sizes:
            problems.append(f"kernel {decision.kernel_size} not in {self.kernel_sizes}")
        if decision.expand_ratio not in self.expand_ratios:
            problems.append(f"expansion {decision.expand_ratio} not in {self.expand_ratios}")
        if decision.se_ratio not in self.se_ratios:
            problems.append(f"SE ratio {decision.se_ratio} not in {self.se_ratios}")
        if decision.lightnl_ratio is not None:
            if not self.has_lightnl:
                problems.append("no LightNL candidate here")
            elif decision.lightnl_ratio not in self.lightnl_ratios:
                problems.append(f"LightNL ratio {decision.lightnl_ratio} not in "
                                f"{self.lightnl_ratios}")
            elif decision.lightnl_stride not in self.lightnl_strides:
                problems.append(f"LightNL stride {decision.lightnl_stride} not in "
                                f"{self.lightnl_strides}")
        if problems:
            raise ValueError(f"block {self.index}: decision {decision} is invalid: "
                             + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class BlockDecision:
    """The hard decisions of one block. ``lightnl_ratio=None``: no LightNL inserted;
    ``se_ratio=None``: no squeeze-and-excitation."""

    keep: bool
    kernel_size: int
    expand_ratio: int
    lightnl_ratio: float | None = None
    lightnl_stride: int = 1
    se_ratio: float | None = None

    def label(self) -> str:
        """Short text such as 'k5 e6 SE1/4 NL1/4-s2' or 'skip'."""
        if not self.keep:
            return "skip"
        text = f"k{self.kernel_size} e{self.expand_ratio}"
        if self.se_ratio:
            text += f" SE{_fraction(self.se_ratio)}"
        if self.lightnl_ratio is not None:
            text += f" NL{_fraction(self.lightnl_ratio)}-s{self.lightnl_stride}"
        return text


def _fraction(ratio: float) -> str:
    inverse = 1.0 / ratio
    return f"1/{round(inverse)}" if abs(inverse - round(inverse)) < 1e-6 else f"{ratio:g}"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The unrolled supernet: one `SearchBlock` per block, plus the activation."""

    blocks: tuple[SearchBlock, ...]
    activation: str = "swish"

    @property
    def searchable_blocks(self) -> tuple[SearchBlock, ...]:
        return tuple(b for b in self.blocks if b.searchable)

    @property
    def num_decisions(self) -> int:
        return sum(b.num_decisions for b in self.blocks)

    def largest(self) -> tuple[BlockDecision, ...]:
        return tuple(b.largest() for b in self.blocks)

    def smallest(self) -> tuple[BlockDecision, ...]:
        return tuple(b.smallest() for b in self.blocks)

    def random(self, seed: int) -> tuple[BlockDecision, ...]:
        rng = random.Random(seed)
        return tuple(b.random(rng) for b in self.blocks)

    def check(self, decisions: Sequence[BlockDecision]) -> None:
        if len(decisions) != len(self.blocks):
            raise ValueError(f"{len(decisions)} decisions for a space of {len(self.blocks)} "
                             "blocks")
        for block, decision in zip(self.blocks, decisions, strict=True):
            block.check(decision)

    def child_blocks(self, decisions: Sequence[BlockDecision]) -> tuple[BlockSpec, ...]:
        """The child's block rows (skipped blocks removed), as the codec encodes them."""
        self.check(decisions)
        swish = self.activation == "swish"
        rows = []
        for block, decision in zip(self.blocks, decisions, strict=True):
            if not decision.keep:
                continue  # only residual blocks (i == o, stride 1) are skippable: channels chain
            rows.append(BlockSpec(
                repeats=1, kernel_sizes=(decision.kernel_size,),
                strides=(block.stride, block.stride), expand_ratio=decision.expand_ratio,
                input_filters=block.input_filters, output_filters=block.output_filters,
                se_ratio=decision.se_ratio, swish=swish,
                nonlocal_ratio=decision.lightnl_ratio,
                nonlocal_stride=decision.lightnl_stride if decision.lightnl_ratio else 1))
        return tuple(rows)

    def child_spec(self, decisions: Sequence[BlockDecision], name: str = "searched") -> ModelSpec:
        """The child as the `ModelSpec` that ``resolve_model_spec(arch.txt)`` returns."""
        return spec_from_blocks(name, self.child_blocks(decisions))

    def plan(self, image_size: int = 224, num_classes: int = 1000,
             width_multiplier: float = 1.0, depth_divisor: int = 8) -> NetworkPlan:
        """The supernet's plan: its largest child (one block per space block), each searchable
        block with its choices (`autonl_tf.plan.BlockChoices`)."""
        largest = self.child_spec(self.largest(), name="supernet")
        return plan_network(
            largest.blocks, name=largest.name, activation=largest.activation,
            stem_filters=largest.stem_filters, head_filters=largest.head_filters,
            image_size=image_size, num_classes=num_classes, width_multiplier=width_multiplier,
            depth_divisor=depth_divisor,
            choices=[b.choices if b.searchable else None for b in self.blocks])


class ArchNotInSpaceError(UserError, ValueError):
    """An architecture that no setting of the space's indicators produces; names the block."""


def decisions_for_arch(space: SearchSpace, blocks: Sequence[BlockSpec]) -> tuple[BlockDecision, ...]:
    """The decisions under which ``space`` produces the architecture ``blocks`` (codec rows).

    The architecture's blocks are matched to the space's in order, stage by stage: a space block
    whose channels and stride fit the next architecture block takes its kernel, expansion, SE
    and LightNL choices; a skippable space block that does not fit is skipped. Inverse of
    `SearchSpace.child_blocks`: ``child_blocks(decisions_for_arch(space, b)) == b`` for every
    architecture the space contains.

    Raises:
      ArchNotInSpaceError: naming the first architecture block the space cannot express.
    """
    rows = expand_repeats(blocks)
    swish = space.activation == "swish"
    decisions: list[BlockDecision] = []
    position = 0
    for block in space.blocks:
        row = rows[position] if position < len(rows) else None
        fits = (row is not None and row.input_filters == block.input_filters
                and row.output_filters == block.output_filters and row.stride == block.stride)
        if not fits:
            if not block.skippable:
                what = "nothing" if row is None else f"block {position} ({_describe(row)})"
                raise ArchNotInSpaceError(
                    f"the architecture has {what} where the space needs block {block.index} "
                    f"(i{block.input_filters} o{block.output_filters} s{block.stride}, not "
                    "skippable)")
            decisions.append(block.smallest())
            continue
        decision = BlockDecision(
            True, row.kernel_sizes[0] if len(row.kernel_sizes) == 1 else -1, row.expand_ratio,
            row.nonlocal_ratio, row.nonlocal_stride if row.nonlocal_ratio else 1, row.se_ratio or None)
        problems = []
        try:
            block.check(decision)
        except ValueError as e:
            problems.append(str(e).split(": ", 2)[-1])
        if row.swish != swish or not row.id_skip or row.expand_kernel != 1 \
                or row.project_kernel != 1:
            problems.append("activation, skip or 1x1 convolutions differ from the space's")
        if problems:
            raise ArchNotInSpaceError(f"architecture block {position} ({_describe(row)}) is not "
                                      f"a choice of space block {block.index}: {problems[0]}")
        decisions.append(decision)
        position += 1
    if position < len(rows):
        raise ArchNotInSpaceError(f"architecture block {position} ({_describe(rows[position])}) "
                                  "and after have no place left in the space")
    return tuple(decisions)


def _describe(row: BlockSpec) -> str:
    return encode_block(row)


# -- config parsing ------------------------------------------------------------------------------

def _get(mapping, key: str, where: str, required: bool = True, default=None):
    if key in mapping and mapping[key] is not None:
        return mapping[key]
    if required:
        raise SearchSpaceError(f"search space: missing key {where}{key}")
    return default


def _int_list(value, key: str, minimum: int) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (
        value,)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum
                         for v in values):
        raise SearchSpaceError(f"search space: {key}={value!r}: expected integers >= {minimum}")
    return values


def _choices(value, key: str, kind: str) -> tuple:
    """Validates a list of choices and orders it from the cheapest to the most expensive."""
    if kind == "kernel":
        values = _int_list(value, key, 1)
        if any(v % 2 == 0 for v in values):
            raise SearchSpaceError(f"search space: {key}={value!r}: kernel sizes must be odd")
        ordered = tuple(sorted(set(values)))
    elif kind == "expand":
        values = _int_list(value, key, 1)
        ordered = tuple(sorted(set(values)))
        if len(ordered) > 1 and ordered[0] < 2:
            # e=1 drops the expansion conv in the child, which then is not a slice of the
            # supernet's expansion: it can only be a fixed choice.
            raise SearchSpaceError(f"search space: {key}={value!r}: an expansion of 1 can only "
                                   "be a fixed choice (the child would have no expansion conv)")
    elif kind == "ratio":
        values = tuple(value) if isinstance(value, Sequence) else (value,)
        if not values or any(isinstance(v, bool) or not isinstance(v, int | float)
                             or not 0.0 < v <= 1.0 for v in values):
            raise SearchSpaceError(f"search space: {key}={value!r}: expected ratios in (0, 1]")
        ordered = tuple(sorted({float(v) for v in values}))
    else:  # LightNL strides: stride 2 is the cheaper choice
        values = _int_list(value, key, 1)
        if any(v not in (1, 2) for v in values):
            raise SearchSpaceError(f"search space: {key}={value!r}: strides must be 1 or 2")
        ordered = tuple(sorted(set(values), reverse=True))
    return ordered


def _per_block(value, key: str, repeats: int, check) -> list:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != repeats:
            raise SearchSpaceError(f"search space: {key}={value!r}: expected one value per "
                                   f"block ({repeats})")
        values = list(value)
    else:
        values = [value] * repeats
    for v in values:
        check(v, key)
    return values


def _check_se(value, key):
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise SearchSpaceError(f"search space: {key}={value!r}: expected an SE ratio in [0, 1]")


def _check_bool(value, key):
    if not isinstance(value, bool):
        raise SearchSpaceError(f"search space: {key}={value!r}: expected True or False")


def _stage_se_choices(stage: Mapping, where: str, repeats: int) -> list[tuple]:
    """Per block of a stage, its SE choices (ascending, None = no SE first).

    ``se_ratio`` fixes the SE of every block (or of each block, as a list); ``se_ratios`` makes
    it a searched choice among the listed ratios (0 = no SE), the same for every block.
    """
    fixed, searched = stage.get("se_ratio"), stage.get("se_ratios")
    if fixed is not None and searched is not None:
        raise SearchSpaceError(f"search space: {where}se_ratio and {where}se_ratios are "
                               "exclusive: fix the SE ratio or list its choices, not both")
    if searched is None:
        values = _per_block(0.0 if fixed is None else fixed, where + "se_ratio", repeats,
                            _check_se)
        return [(float(v) or None,) for v in values]
    values = (tuple(searched) if isinstance(searched, Sequence) and not isinstance(searched, str)
              else (searched,))
    if not values:
        raise SearchSpaceError(f"search space: {where}se_ratios=(): expected SE ratio choices")
    for v in values:
        _check_se(v, where + "se_ratios")
    ratios = sorted({float(v) for v in values})
    choices = tuple(r or None for r in ratios)  # 0 -> None (no SE), which sorts first
    return [choices] * repeats


def _as_dict(value, key: str) -> Mapping:
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise SearchSpaceError(f"search space: {key} must be a dict, got {type(value).__name__}")
    return value


def space_from_config(config) -> SearchSpace:
    """Validates a search-space config (`autonl_tf.search.spaces` format) and unrolls it.

    Raises:
      SearchSpaceError: naming the key, e.g. ``search space: stages[2].stride=3: ...``.
    """
    config = _as_dict(config, "the search space config")
    unknown = sorted(set(config) - set(_SPACE_KEYS))
    if unknown:
        raise SearchSpaceError(f"search space: unknown key {unknown[0]!r}; expected keys "
                               f"{', '.join(_SPACE_KEYS)}")
    activation = _get(config, "activation", "", required=False, default="swish")
    if activation not in ("swish", "relu6") or activation not in ACTIVATIONS:
        raise SearchSpaceError(f"search space: activation={activation!r}: expected 'swish' or "
                               "'relu6' (the architecture format encodes no other)")
    defaults = {
        "kernel_sizes": _choices(_get(config, "kernel_sizes", ""), "kernel_sizes", "kernel"),
        "expand_ratios": _choices(_get(config, "expand_ratios", ""), "expand_ratios", "expand"),
        "lightnl_ratios": _choices(_get(config, "lightnl_ratios", ""), "lightnl_ratios",
                                   "ratio"),
        "lightnl_strides": _choices(_get(config, "lightnl_strides", ""), "lightnl_strides",
                                    "stride"),
    }
    kinds = {"kernel_sizes": "kernel", "expand_ratios": "expand", "lightnl_ratios": "ratio",
             "lightnl_strides": "stride"}
    stages = _get(config, "stages", "")
    if isinstance(stages, str | bytes) or not isinstance(stages, Sequence) or not stages:
        raise SearchSpaceError("search space: stages must be a non-empty list of stage dicts")

    blocks: list[SearchBlock] = []
    channels = STEM_FILTERS  # the first block's input: the codec has no stem token to change it
    for s, raw in enumerate(stages):
        where = f"stages[{s}]."
        stage = _as_dict(raw, f"stages[{s}]")
        unknown = sorted(set(stage) - set(_STAGE_REQUIRED) - set(_STAGE_OPTIONAL))
        if unknown:
            raise SearchSpaceError(
                f"search space: unknown key {where}{unknown[0]}; expected "
                f"{', '.join(_STAGE_REQUIRED + _STAGE_OPTIONAL)}")
        filters = _int_list(_get(stage, "filters", where), where + "filters", 1)
        repeats = _int_list(_get(stage, "repeats", where), where + "repeats", 1)
        stride = _int_list(_get(stage, "stride", where), where + "stride", 1)
        if len(filters) != 1 or len(repeats) != 1 or len(stride) != 1 or stride[0] not in (1, 2):
            bad = ("filters" if len(filters) != 1 else "repeats" if len(repeats) != 1
                   else "stride")
            raise SearchSpaceError(f"search space: {where}{bad}={stage[bad]!r}: expected one "
                                   "integer (stride 1 or 2)")
        filters, repeats, stride = filters[0], repeats[0], stride[0]
        choices = {key: (_choices(stage[key], where + key, kinds[key])
                         if stage.get(key) is not None else default)
                   for key, default in defaults.items()}
        se_choices = _stage_se_choices(stage, where, repeats)
        lightnl = _per_block(stage.get("lightnl", True), where + "lightnl", repeats, _check_bool)
        skip = stage.get("skip", True)
        _check_bool(skip, where + "skip")
        for position in range(repeats):
            first = position == 0
            c_in = channels if first else filters
            block_stride = stride if first else 1
            blocks.append(SearchBlock(
                index=len(blocks), stage=s, position=position, input_filters=c_in,
                output_filters=filters, stride=block_stride,
                kernel_sizes=choices["kernel_sizes"], expand_ratios=choices["expand_ratios"],
                se_ratios=se_choices[position],
                # Only a block with an identity shortcut can become the identity.
                skippable=skip and not first and c_in == filters and block_stride == 1,
                lightnl_ratios=choices["lightnl_ratios"] if lightnl[position] else (),
                lightnl_strides=choices["lightnl_strides"] if lightnl[position] else ()))
        channels = filters
    return SearchSpace(tuple(blocks), activation)
