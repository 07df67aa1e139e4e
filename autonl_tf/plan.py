"""The network plan: one resolved, per-layer description of a network, produced once.

A `NetworkPlan` is a network at one input size, width multiplier and class count with every
shape worked out: for each layer its kind, input map size, channels (width-scaled and rounded,
`scale_channels`), kernel and stride; for each block the block string it builds, its LightNL
(ratio, stride) and, in a search space's plan, the supernet's choices there (`BlockChoices`).
Everything that needs the network's shapes reads them from here instead of walking stem, blocks
and head on its own:

* `autonl_tf.models.builder.build_network` (the Keras classifier),
* `autonl_tf.search.supernet.Supernet` (one superkernel block per block with choices),
* `autonl_tf.cost.model_cost` (MACs and parameters), the search's cost tables
  (`autonl_tf.search.search_cost`) and the latency table's parts
  (`autonl_tf.search.latency_cost.space_parts`).

Plans come from `plan_network`, through `autonl_tf.models.ModelSpec.plan` (a network) and
`autonl_tf.search.space.SearchSpace.plan` (a supernet: its largest child, with the choices).

The layers, in order: the stem (3x3 stride-2 convolution, BN, activation on the image), the
blocks (MBConv, with a LightNL after the projection where the block string has one; repeats
unrolled), the head (1x1 convolution, BN, activation) and the classifier (global average
pooling, dropout, dense logits). Channel counts of parts inside a block (SE bottleneck, mixed
kernel groups, LightNL queries) follow from these by the formulas of `autonl_tf.cost`.

Needs nothing but the architecture codec: the cost model and the layers build on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from autonl_tf.arch import BlockSpec, expand_repeats

__all__ = [
    "HEAD_FILTERS",
    "STEM_FILTERS",
    "BlockChoices",
    "BlockLayer",
    "ClassifierLayer",
    "ConvLayer",
    "LightNLLayer",
    "NetworkPlan",
    "plan_network",
    "same_output_size",
    "scale_channels",
]

# Channels of the stem and the head before the width multiplier: the architecture codec has no
# token for them, so every network (and every search space) has these.
STEM_FILTERS = 32
HEAD_FILTERS = 1280
STEM_KERNEL, STEM_STRIDE = 3, 2


def scale_channels(filters: float, width_multiplier: float = 1.0, divisor: int = 8) -> int:
    """The channels a layer of ``filters`` channels has at ``width_multiplier``.

    MobileNet's rounding of ``filters * width_multiplier``: the nearest multiple of ``divisor``
    (at least ``divisor``), never more than 10% below the scaled value. The one place where a
    width multiplier touches a channel count.
    """
    scaled = filters * width_multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def same_output_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution of the given stride."""
    return -(-size // stride)


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """The stem or the head: a 'same' convolution, BN and the activation.

    [S, S, in_channels] -> [S / stride, S / stride, out_channels] (S = ``in_size``).
    """

    kind: str  # 'stem' | 'head'
    in_size: int
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    activation: str

    @property
    def out_size(self) -> int:
        return same_output_size(self.in_size, self.stride)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.out_size, self.out_size, self.out_channels)


@dataclasses.dataclass(frozen=True)
class LightNLLayer:
    """A LightNL on a block's output: [size, size, channels] -> the same shape.

    ``ratio``: queries/keys use the first ``ratio * channels`` channels; ``stride``: keys and
    values are the map subsampled by it.
    """

    size: int
    channels: int
    ratio: float
    stride: int


@dataclasses.dataclass(frozen=True)
class BlockChoices:
    """The supernet's options at one block, each ordered from the cheapest to the most
    expensive (the block's `BlockLayer.block` is the most expensive of all). ``se_ratios`` may
    start with None (no SE); empty ``lightnl_ratios``: no LightNL candidate here."""

    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    se_ratios: tuple[float | None, ...]
    skippable: bool
    lightnl_ratios: tuple[float, ...] = ()
    lightnl_strides: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class BlockLayer:
    """One MBConv block (repeats unrolled) at its place in the network.

    [in_size, in_size, in_channels] -> [out_size, out_size, out_channels]. ``block`` is the
    block string it builds (``repeats`` 1; channels in it are before the width multiplier),
    ``activation`` the block's own (``sw``: swish, else the network's). ``choices``: the
    supernet's options at this block (a search space's plan), None where it has none.
    """

    index: int
    block: BlockSpec
    in_size: int
    in_channels: int
    out_channels: int
    activation: str
    choices: BlockChoices | None = None

    kind = "mbconv"

    @property
    def stride(self) -> int:
        return self.block.stride

    @property
    def out_size(self) -> int:
        return same_output_size(self.in_size, self.stride)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.out_size, self.out_size, self.out_channels)

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        return self.block.kernel_sizes

    @property
    def expand_ratio(self) -> int:
        return self.block.expand_ratio

    @property
    def expanded_channels(self) -> int:
        """Channels of the inverted bottleneck (the depthwise convolution's)."""
        return self.in_channels * self.block.expand_ratio

    @property
    def se_ratio(self) -> float | None:
        return self.block.se_ratio if self.block.has_se else None

    @property
    def lightnl(self) -> LightNLLayer | None:
        """The LightNL after the projection, None without one."""
        if not self.block.has_nonlocal:
            return None
        return LightNLLayer(self.out_size, self.out_channels, self.block.nonlocal_ratio,
                            self.block.nonlocal_stride)

    def choose(self, block: BlockSpec) -> BlockLayer:
        """Another block at this place (a choice of the supernet's): same input, stride and
        channels, e.g. another kernel, expansion, SE or LightNL."""
        if (block.stride, block.input_filters, block.output_filters) != (
                self.block.stride, self.block.input_filters, self.block.output_filters):
            raise ValueError(f"block {self.index}: {block} does not fit the place of "
                             f"{self.block} (stride and channels differ)")
        return dataclasses.replace(self, block=dataclasses.replace(block, repeats=1))


@dataclasses.dataclass(frozen=True)
class ClassifierLayer:
    """Global average pooling, dropout and the dense logits: [size, size, channels] ->
    [num_classes]."""

    in_size: int
    channels: int
    num_classes: int

    @property
    def output_shape(self) -> tuple[int]:
        return (self.num_classes,)


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
    """A whole network, every layer resolved (see the module docstring)."""

    name: str
    image_size: int
    num_classes: int
    width_multiplier: float
    depth_divisor: int
    activation: str
    stem: ConvLayer
    blocks: tuple[BlockLayer, ...]
    head: ConvLayer
    classifier: ClassifierLayer

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each layer's output shape without the batch dimension, under the names the Keras
        builder gives the layers: 'stem', 'block_<i>', 'head', 'logits'."""
        shapes: dict[str, tuple[int, ...]] = {"stem": self.stem.output_shape}
        shapes.update({f"block_{b.index}": b.output_shape for b in self.blocks})
        shapes["head"] = self.head.output_shape
        shapes["logits"] = self.classifier.output_shape
        return shapes


def plan_network(
    blocks: Sequence[BlockSpec],
    *,
    name: str = "network",
    activation: str = "swish",
    stem_filters: int = STEM_FILTERS,
    head_filters: int = HEAD_FILTERS,
    image_size: int = 224,
    num_classes: int = 1000,
    width_multiplier: float = 1.0,
    depth_divisor: int = 8,
    choices: Sequence[BlockChoices | None] | None = None,
) -> NetworkPlan:
    """The plan of a network of ``blocks`` (block strings; repeats are unrolled here).

    Args:
      activation: the stem's, the head's and that of every block without ``sw``.
      choices: a supernet's options, one per unrolled block (None where a block has none).
    """
    rows = expand_repeats(blocks)
    if choices is not None and len(choices) != len(rows):
        raise ValueError(f"{len(choices)} block choices for {len(rows)} blocks")

    def scaled(filters: int) -> int:
        return scale_channels(filters, width_multiplier, depth_divisor)

    stem = ConvLayer("stem", image_size, 3, scaled(stem_filters), STEM_KERNEL, STEM_STRIDE,
                     activation)
    size, channels = stem.out_size, stem.out_channels
    layers = []
    for index, row in enumerate(rows):
        layer = BlockLayer(index, row, size, channels, scaled(row.output_filters),
                           "swish" if row.swish else activation,
                           None if choices is None else choices[index])
        layers.append(layer)
        size, channels = layer.out_size, layer.out_channels
    head = ConvLayer("head", size, channels, scaled(head_filters), 1, 1, activation)
    return NetworkPlan(name, image_size, num_classes, width_multiplier, depth_divisor,
                       activation, stem, tuple(layers), head,
                       ClassifierLayer(head.out_size, head.out_channels, num_classes))
