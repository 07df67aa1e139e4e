"""Analytic multiply-accumulate (MAC) and parameter counts: the one cost model of autonl_tf.

The profiler, the search's differentiable cost and the export cards all use these formulas, so
that "MACs" means the same thing everywhere. Conventions (those of the AutoNL paper):

* MACs of convolutions, dense layers, squeeze-and-excitation (its pooling and its two 1x1 convs),
  LightNL and global average pooling (one add per input element). BatchNorm, activations,
  element-wise gating and residual adds count 0.
* Parameters: trainable weights and biases plus BatchNorm gamma/beta (not the moving statistics).

A network's cost is read from its plan (`autonl_tf.plan.NetworkPlan`: every layer's map size
and width-scaled channels), the same plan the builder and the supernet build from. All functions
take plain Python numbers (or plan layers) and return Python ints, except where noted: the
search multiplies these constants by its (tensor) indicators.
"""

from __future__ import annotations

import dataclasses

from autonl_tf.arch import BlockSpec
from autonl_tf.plan import BlockLayer, NetworkPlan, same_output_size

__all__ = [
    "BlockCost",
    "ModelCost",
    "block_cost",
    "conv_macs",
    "conventional_nl_macs",
    "depthwise_macs",
    "lightnl_channels",
    "lightnl_macs",
    "lightnl_orders",
    "lightnl_params",
    "mixed_kernel_channels",
    "model_cost",
    "se_channels",
]


def conv_macs(out_h: int, out_w: int, kernel: int, c_in: int, c_out: int) -> int:
    return out_h * out_w * kernel * kernel * c_in * c_out


def depthwise_macs(out_h: int, out_w: int, kernel: int, channels: int) -> int:
    return out_h * out_w * kernel * kernel * channels


def mixed_kernel_channels(channels: int, num_kernels: int) -> list[int]:
    """Channel split of a mixed depthwise conv: equal groups, the first takes the remainder."""
    split = [channels // num_kernels] * num_kernels
    split[0] += channels - sum(split)
    return split


def lightnl_channels(channels: int, ratio: float) -> int:
    """Query/key channels of a LightNL: the first ``ratio * C`` channels (at least 1)."""
    return max(1, int(channels * ratio + 1e-6))


def _keys(height: int, width: int, stride: int) -> int:
    # Keys and values are x[::s, ::s]: ceil(H/s) * ceil(W/s) positions; this equals the paper's
    # (H//s)(W//s) whenever H and W are divisible by s, as at every LightNL of AutoNL-S/L.
    return same_output_size(height, stride) * same_output_size(width, stride)


def lightnl_orders(height: int, width: int, channels: int, ratio: float, stride: int) -> tuple[int, int]:
    """MACs of the two multiplication orders of a LightNL's aggregation.

    Returns ``(affinity_first, context_first)``: ``(q k^T) v`` costs HW*HW'*(rC + C), and
    ``q (k^T v)`` costs HW'*rC*C + HW*rC*C. The layer computes the cheaper one (ties: the
    linear-in-HW context-first order).
    """
    queries = height * width
    keys = _keys(height, width, stride)
    rc = lightnl_channels(channels, ratio)
    affinity_first = queries * keys * (rc + channels)
    context_first = keys * rc * channels + queries * rc * channels
    return affinity_first, context_first


def lightnl_macs(height: int, width: int, channels: int, ratio: float, stride: int) -> int:
    """MACs of one LightNL: the cheaper aggregation order plus the 3x3 depthwise conv."""
    return min(lightnl_orders(height, width, channels, ratio, stride)) + 9 * height * width * channels


def lightnl_params(channels: int) -> int:
    """3x3 depthwise kernel (no bias) + BN gamma/beta."""
    return 9 * channels + 2 * channels


def conventional_nl_macs(height: int, width: int, channels: int) -> int:
    """MACs of a dot-product non-local block (Wang et al. 2018) at the same place.

    theta/phi/g 1x1 convs C -> C/2, affinity (HW x HW) over C/2, times g, W_z 1x1 conv C/2 -> C.
    """
    positions = height * width
    inner = channels // 2
    projections = 3 * positions * channels * inner
    affinity = positions * positions * inner
    aggregate = positions * positions * inner
    output = positions * inner * channels
    return projections + affinity + aggregate + output


@dataclasses.dataclass(frozen=True)
class BlockCost:
    """MACs and parameters of one (unrolled) block of a plan, split by part."""

    layer: BlockLayer
    expand_macs: int
    depthwise_macs: int
    se_macs: int
    project_macs: int
    nonlocal_macs: int
    params: int
    nonlocal_params: int

    @property
    def macs(self) -> int:
        return (self.expand_macs + self.depthwise_macs + self.se_macs + self.project_macs
                + self.nonlocal_macs)

    # The plan's figures of the block, for the profiler's table.
    @property
    def index(self) -> int:
        return self.layer.index

    @property
    def spec(self) -> BlockSpec:
        return self.layer.block

    @property
    def in_size(self) -> int:
        return self.layer.in_size

    @property
    def out_size(self) -> int:
        return self.layer.out_size

    @property
    def in_channels(self) -> int:
        return self.layer.in_channels

    @property
    def out_channels(self) -> int:
        return self.layer.out_channels


def block_cost(layer: BlockLayer) -> BlockCost:
    """Cost of one MBConv block of a plan (its input size and width-scaled channels); the
    expansion, SE and mixed-kernel widths follow the layers' rules."""
    spec, size, c_in, c_out = layer.block, layer.in_size, layer.in_channels, layer.out_channels
    out_size = layer.out_size
    expanded = layer.expanded_channels
    params = 0
    expand = 0
    if spec.expand_ratio != 1:
        expand = conv_macs(size, size, spec.expand_kernel, c_in, expanded)
        params += spec.expand_kernel ** 2 * c_in * expanded + 2 * expanded
    splits = mixed_kernel_channels(expanded, len(spec.kernel_sizes))
    depthwise = sum(depthwise_macs(out_size, out_size, k, c)
                    for k, c in zip(spec.kernel_sizes, splits, strict=True))
    params += sum(k * k * c for k, c in zip(spec.kernel_sizes, splits, strict=True)) + 2 * expanded
    se = 0
    if spec.has_se:
        reduced = se_channels(c_in, spec.se_ratio)
        se = out_size * out_size * expanded + 2 * expanded * reduced
        params += expanded * reduced + reduced + reduced * expanded + expanded
    project = conv_macs(out_size, out_size, spec.project_kernel, expanded, c_out)
    params += spec.project_kernel ** 2 * expanded * c_out + 2 * c_out
    nl_macs = nl_params = 0
    nonlocal_layer = layer.lightnl
    if nonlocal_layer is not None:
        nl_macs = lightnl_macs(nonlocal_layer.size, nonlocal_layer.size, nonlocal_layer.channels,
                               nonlocal_layer.ratio, nonlocal_layer.stride)
        nl_params = lightnl_params(nonlocal_layer.channels)
    return BlockCost(layer, expand, depthwise, se, project, nl_macs, params + nl_params,
                     nl_params)


def se_channels(c_in: int, se_ratio: float) -> int:
    """Bottleneck width of the SE module: ``round(C_in * se)``, at least 1."""
    return max(1, int(round(c_in * se_ratio)))


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Per-part costs of a whole network. ``macs`` / ``params`` are the totals."""

    stem_macs: int
    stem_params: int
    blocks: tuple[BlockCost, ...]
    head_macs: int
    head_params: int
    classifier_macs: int
    classifier_params: int

    @property
    def macs(self) -> int:
        return (self.stem_macs + sum(b.macs for b in self.blocks) + self.head_macs
                + self.classifier_macs)

    @property
    def params(self) -> int:
        return (self.stem_params + sum(b.params for b in self.blocks) + self.head_params
                + self.classifier_params)


def model_cost(plan: NetworkPlan) -> ModelCost:
    """Analytic cost of the network of a plan (what `autonl_tf.models.build_network` builds)."""
    stem, head = plan.stem, plan.head
    stem_macs = conv_macs(stem.out_size, stem.out_size, stem.kernel_size, stem.in_channels,
                          stem.out_channels)
    stem_params = stem.kernel_size ** 2 * stem.in_channels * stem.out_channels + 2 * stem.out_channels
    size = head.in_size
    head_macs = (conv_macs(size, size, head.kernel_size, head.in_channels, head.out_channels)
                 + size * size * head.out_channels)  # conv + global pool
    head_params = head.kernel_size ** 2 * head.in_channels * head.out_channels + 2 * head.out_channels
    classifier = plan.classifier
    classifier_macs = classifier.channels * classifier.num_classes
    classifier_params = classifier.channels * classifier.num_classes + classifier.num_classes
    return ModelCost(stem_macs, stem_params, tuple(block_cost(b) for b in plan.blocks),
                     head_macs, head_params, classifier_macs, classifier_params)
