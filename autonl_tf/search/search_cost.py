"""Expected MACs (and parameters) of the supernet as a multilinear function of its indicators.

Every constant comes from the profiler's own formulas (`autonl_tf.cost.block_cost`,
`autonl_tf.cost.lightnl_macs`, `autonl_tf.cost.model_cost`) on the space's network plan
(`autonl_tf.search.space.SearchSpace.plan`, the shapes the supernet is built with): for each
block, the cost of every
(kernel, expansion) choice and of every LightNL (ratio, stride) choice is tabulated, and the
expected cost is ``sum_choices weight(choice) * cost(choice)`` with the weights of
`autonl_tf.search.indicators.nested_weights`. With hard (0/1) indicators exactly one weight per
decision is 1, so the expected cost IS the profiler's cost of the decoded child. This works for
the blocks' additive structure: a skippable block has stride 1 and as many input as output
channels, so no decision changes the shapes seen by any other block.

`SearchCost.expected_macs` evaluates the same arithmetic on whatever it is given: float32
tensors (the training loss), float64 tensors (exact integers up to 2**53) or Python ints.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

from autonl_tf import cost
from autonl_tf.errors import UserError
from autonl_tf.plan import BlockLayer, NetworkPlan
from autonl_tf.search.indicators import nested_weights
from autonl_tf.search.space import BlockDecision, SearchBlock, SearchSpace

__all__ = ["BlockGates", "SearchCost", "TargetError", "block_decisions", "block_expected_cost",
           "gates_from_decision"]

# The indicators of one block, as a mapping (values: tensors or numbers):
#   keep: scalar (1 for a block that cannot be skipped)
#   kernel, expand, se, lightnl_ratio, lightnl_stride: lists of nested gates (len(choices) - 1)
#   lightnl: scalar, LightNL inserted (0 where there is no candidate)
BlockGates = Mapping[str, object]


class TargetError(UserError, ValueError):
    """A cost target outside what the search space can reach."""


def gates_from_decision(block: SearchBlock, decision: BlockDecision) -> dict:
    """The 0/1 gates (Python ints) that select `decision` in `block`'s supernet layer."""
    block.check(decision)

    def steps(choices, chosen):
        index = choices.index(chosen)
        return [int(j < index) for j in range(len(choices) - 1)]

    lightnl = decision.lightnl_ratio is not None
    return {
        "keep": int(decision.keep),
        "kernel": steps(block.kernel_sizes, decision.kernel_size),
        "expand": steps(block.expand_ratios, decision.expand_ratio),
        "se": steps(block.se_ratios, decision.se_ratio),
        "lightnl": int(lightnl),
        "lightnl_ratio": (steps(block.lightnl_ratios, decision.lightnl_ratio) if lightnl
                          else [0] * (len(block.lightnl_ratios) - 1)),
        "lightnl_stride": (steps(block.lightnl_strides, decision.lightnl_stride) if lightnl
                           else [0] * max(0, len(block.lightnl_strides) - 1)),
    }


@dataclasses.dataclass(frozen=True)
class _BlockTables:
    """Per-choice costs of one block: [kernel][expansion][SE] and [LightNL ratio][LightNL stride]."""

    mbconv_macs: tuple[tuple[tuple[int, ...], ...], ...]
    mbconv_params: tuple[tuple[tuple[int, ...], ...], ...]
    lightnl_macs: tuple[tuple[int, ...], ...]
    lightnl_params: int


def block_decisions(block: SearchBlock) -> list[BlockDecision]:
    """Every decision of one block (each kernel, expansion, SE, LightNL option; skip)."""
    decisions = [BlockDecision(True, k, e, None, 1, se) for k in block.kernel_sizes
                 for e in block.expand_ratios for se in block.se_ratios]
    decisions += [BlockDecision(True, k, e, r, s, se) for k in block.kernel_sizes
                  for e in block.expand_ratios for r in block.lightnl_ratios
                  for s in block.lightnl_strides for se in block.se_ratios]
    if block.skippable:
        decisions.append(block.smallest())
    return decisions


def block_expected_cost(block: SearchBlock, gates: BlockGates, mbconv: Sequence,
                        lightnl: Sequence | None = None, lightnl_total=None):
    """The expected cost of one block: a multilinear function of its gates.

    ``keep * (sum_{i,j,k} w_kernel[i] w_expand[j] w_se[k] mbconv[i][j][k]
    + lightnl_gate * sum_{r,s} w_ratio[r] w_stride[s] lightnl[r][s])``, with the nested weights
    of `nested_weights`; ``lightnl_total`` replaces the LightNL sum by one value (a cost that
    does not depend on the ratio and stride). Any additive per-choice cost works: MACs,
    parameters, milliseconds (`autonl_tf.search.latency_cost`). With 0/1 gates the result is
    the table value of the chosen options.
    """
    kernel_w = nested_weights(gates["kernel"])
    expand_w = nested_weights(gates["expand"])
    se_w = nested_weights(gates["se"])
    total = sum(kernel_w[i] * expand_w[j] * se_w[k] * mbconv[i][j][k]
                for i, j, k in itertools.product(range(len(kernel_w)), range(len(expand_w)),
                                                 range(len(se_w))))
    if block.has_lightnl:
        if lightnl_total is not None:
            extra = lightnl_total
        else:
            ratio_w = nested_weights(gates["lightnl_ratio"])
            stride_w = nested_weights(gates["lightnl_stride"])
            extra = sum(ratio_w[i] * stride_w[j] * lightnl[i][j]
                        for i, j in itertools.product(range(len(ratio_w)), range(len(stride_w))))
        total = total + gates["lightnl"] * extra
    return gates["keep"] * total


class SearchCost:
    """Analytic cost of every child of a search space at one input size / width / class count.

    ``plan``: the space's network plan at that setting (`SearchSpace.plan`), which the
    supernet is built from too.
    """

    def __init__(self, space: SearchSpace, image_size: int = 224, num_classes: int = 1000,
                 width_multiplier: float = 1.0, depth_divisor: int = 8):
        self.space = space
        self.image_size = image_size
        self.num_classes = num_classes
        self.width_multiplier = width_multiplier
        self.depth_divisor = depth_divisor
        self.plan: NetworkPlan = space.plan(image_size, num_classes, width_multiplier,
                                            depth_divisor)
        # The fixed part (stem, head, classifier, blocks without decisions) straight from the
        # profiler, on the plan (the largest child).
        largest = cost.model_cost(self.plan)
        fixed = [c for c in largest.blocks if c.layer.choices is None]
        self.fixed_macs = (largest.stem_macs + largest.head_macs + largest.classifier_macs
                           + sum(c.macs for c in fixed))
        self.fixed_params = (largest.stem_params + largest.head_params
                             + largest.classifier_params + sum(c.params for c in fixed))
        self.tables = {b.index: self._tables(b) for b in self.plan.blocks
                       if b.choices is not None}

    def _profile(self, decisions: Sequence[BlockDecision]) -> cost.ModelCost:
        spec = self.space.child_spec(decisions)
        return cost.model_cost(spec.plan(self.image_size, self.num_classes,
                                         self.width_multiplier, self.depth_divisor))

    @staticmethod
    def _tables(layer: BlockLayer) -> _BlockTables:
        choices, largest = layer.choices, layer.block
        macs, params = [], []
        for kernel in choices.kernel_sizes:
            row_macs, row_params = [], []
            for expand in choices.expand_ratios:
                parts = [cost.block_cost(layer.choose(dataclasses.replace(
                    largest, kernel_sizes=(kernel,), expand_ratio=expand, se_ratio=se,
                    nonlocal_ratio=None, nonlocal_stride=1))) for se in choices.se_ratios]
                row_macs.append(tuple(p.macs for p in parts))
                row_params.append(tuple(p.params for p in parts))
            macs.append(tuple(row_macs))
            params.append(tuple(row_params))
        size, channels = layer.out_size, layer.out_channels
        nl_macs = tuple(
            tuple(cost.lightnl_macs(size, size, channels, ratio, stride)
                  for stride in choices.lightnl_strides)
            for ratio in choices.lightnl_ratios)
        return _BlockTables(tuple(macs), tuple(params), nl_macs, cost.lightnl_params(channels))

    # -- the multilinear cost ------------------------------------------------------------------
    def _block_expected(self, block: SearchBlock, gates: BlockGates, params: bool):
        tables = self.tables[block.index]
        if params:  # LightNL: one shared depthwise conv + BN, whatever the ratio and stride
            return block_expected_cost(block, gates, tables.mbconv_params,
                                       lightnl_total=tables.lightnl_params)
        return block_expected_cost(block, gates, tables.mbconv_macs, tables.lightnl_macs)

    def _expected(self, gates: Sequence[BlockGates | None], params: bool):
        if len(gates) != len(self.space.blocks):
            raise ValueError(f"{len(gates)} gate sets for {len(self.space.blocks)} blocks")
        total = self.fixed_params if params else self.fixed_macs
        for block, block_gates in zip(self.space.blocks, gates, strict=True):
            if block.searchable:
                total = total + self._block_expected(block, block_gates, params)
        return total

    def expected_macs(self, gates: Sequence[BlockGates | None]):
        """Expected MACs given every block's gates (None for blocks without decisions).

        Returns a value of the gates' type: a float32/float64 scalar tensor or a Python int.
        """
        return self._expected(gates, params=False)

    def expected_params(self, gates: Sequence[BlockGates | None]):
        """Expected parameters (trainable weights + BN gamma/beta), as `expected_macs`."""
        return self._expected(gates, params=True)

    def gates(self, decisions: Sequence[BlockDecision]) -> list[dict | None]:
        self.space.check(decisions)
        return [gates_from_decision(b, d) if b.searchable else None
                for b, d in zip(self.space.blocks, decisions, strict=True)]

    def macs(self, decisions: Sequence[BlockDecision]) -> int:
        """Exact MACs of the child (integer arithmetic on the tables)."""
        return int(self.expected_macs(self.gates(decisions)))

    def params(self, decisions: Sequence[BlockDecision]) -> int:
        return int(self.expected_params(self.gates(decisions)))

    def profile(self, decisions: Sequence[BlockDecision]) -> cost.ModelCost:
        """The profiler's own per-block account of the child (`autonl_tf.cost.model_cost`)."""
        return self._profile(decisions)

    # -- range and target -----------------------------------------------------------------------
    def _block_options(self, block: SearchBlock) -> list[int]:
        return [int(self._block_expected(block, gates_from_decision(block, d), False))
                for d in block_decisions(block)]

    def feasible_range(self) -> tuple[int, int]:
        """(smallest, largest) MACs over all children of the space."""
        low = high = self.fixed_macs
        for block in self.space.searchable_blocks:
            options = self._block_options(block)
            low += min(options)
            high += max(options)
        return low, high

    def describe(self) -> str:
        low, high = self.feasible_range()
        return (f"feasible range of this search space: {low:,} to {high:,} MACs "
                f"({low / 1e6:.2f}M to {high / 1e6:.2f}M) at image_size={self.image_size}, "
                f"width_multiplier={self.width_multiplier:g}, num_classes={self.num_classes}")

    def check_target(self, target_macs: float) -> None:
        """Raises TargetError (printing the feasible range) when no child can reach the target."""
        low, high = self.feasible_range()
        if not low <= target_macs <= high:
            where = "below the smallest" if target_macs < low else "above the largest"
            raise TargetError(f"target_flops={target_macs:,.0f} is {where} child network: "
                              f"{self.describe()}")
