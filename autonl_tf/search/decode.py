"""From the supernet to the child: hard decisions, architecture text, weights.

* `current_decisions(supernet)`: the blocks' hard decisions (what the forward pass uses).
* `set_decisions(supernet, decisions)`: moves the thresholds so the supernet takes them (tests,
  warm starts).
* `arch_text(supernet)`: the child's architecture in the codec's format (``arch.txt``).
* `build_child(supernet)`: the child `keras.Model` (`autonl_tf.models.build_model`) with the
  supernet's weights, computing what the supernet computes under these decisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from autonl_tf.arch import encode_arch
from autonl_tf.layers.mbconv import MBConvBlock
from autonl_tf.models.builder import build_model
from autonl_tf.models.spec import ModelSpec
from autonl_tf.search.layers import SuperMBConvBlock
from autonl_tf.search.space import BlockDecision, SearchBlock
from autonl_tf.search.supernet import Supernet

__all__ = ["arch_text", "build_child", "child_spec", "copy_weights_to_child",
           "current_decisions", "decision_from_gates", "set_decisions"]

# Where a threshold goes, relative to its score, to force an indicator on or off.
_MARGIN = 0.5


def _chosen(choices: Sequence, gates: Sequence[float]):
    """The nested choice selected by 0/1 gates: the last one whose gates are all on."""
    index = 0
    for gate in gates:
        if gate < 0.5:
            break
        index += 1
    return choices[index]


def decision_from_gates(block: SearchBlock, gates: dict | None) -> BlockDecision:
    """The hard decision that a block's 0/1 gates select (None: a block without decisions)."""
    if gates is None:  # a block without decisions
        return block.largest()
    value = lambda g: float(np.asarray(g))  # noqa: E731
    lightnl = block.has_lightnl and value(gates["lightnl"]) > 0.5
    return BlockDecision(
        keep=value(gates["keep"]) > 0.5,
        kernel_size=_chosen(block.kernel_sizes, [value(g) for g in gates["kernel"]]),
        expand_ratio=_chosen(block.expand_ratios, [value(g) for g in gates["expand"]]),
        se_ratio=_chosen(block.se_ratios, [value(g) for g in gates["se"]]),
        lightnl_ratio=(_chosen(block.lightnl_ratios, [value(g) for g in gates["lightnl_ratio"]])
                       if lightnl else None),
        lightnl_stride=(_chosen(block.lightnl_strides,
                                [value(g) for g in gates["lightnl_stride"]]) if lightnl else 1))


def current_decisions(supernet: Supernet) -> tuple[BlockDecision, ...]:
    """The hard decisions of every block, as the supernet's forward pass applies them."""
    gates = supernet.block_gates()
    return tuple(decision_from_gates(block, gates.get(layer.name))
                 for block, layer in zip(supernet.space.blocks, supernet.search_blocks,
                                         strict=True))


def set_decisions(supernet: Supernet, decisions: Sequence[BlockDecision]) -> None:
    """Assigns the thresholds so that the supernet's indicators select `decisions`.

    Decisions below an 'off' one keep their current choice (e.g. the kernel of a skipped block):
    they do not change the child.
    """
    supernet.space.check(decisions)
    for layer, block, decision in zip(supernet.search_blocks, supernet.space.blocks, decisions,
                                      strict=True):
        if not isinstance(layer, SuperMBConvBlock):
            continue
        scores = {k: np.asarray(v) if not isinstance(v, list) else [np.asarray(x) for x in v]
                  for k, v in layer.scores().items()}

        def put(variable, score, on: bool):
            variable.assign(float(score) - _MARGIN if on else float(score) + _MARGIN)

        if block.skippable:
            put(layer.threshold_keep, scores["keep"], decision.keep)
        k_index = block.kernel_sizes.index(decision.kernel_size)
        for j, variable in enumerate(layer.threshold_kernel):
            put(variable, scores["kernel"][j], j < k_index)
        e_index = block.expand_ratios.index(decision.expand_ratio)
        for j, variable in enumerate(layer.threshold_expand):
            put(variable, scores["expand"][j], j < e_index)
        se_index = block.se_ratios.index(decision.se_ratio)
        for j, variable in enumerate(layer.threshold_se):
            put(variable, scores["se"][j], j < se_index)
        if block.has_lightnl:
            nl = layer.lightnl
            on = decision.lightnl_ratio is not None
            put(nl.threshold_insert, scores["lightnl"], on)
            r_index = block.lightnl_ratios.index(decision.lightnl_ratio) if on else 0
            for j, variable in enumerate(nl.threshold_ratio):
                put(variable, scores["lightnl_ratio"][j], j < r_index)
            s_index = block.lightnl_strides.index(decision.lightnl_stride) if on else 0
            for j, variable in enumerate(nl.threshold_stride):
                put(variable, scores["lightnl_stride"][j], j < s_index)


def child_spec(supernet: Supernet, decisions: Sequence[BlockDecision] | None = None,
               name: str = "searched") -> ModelSpec:
    decisions = current_decisions(supernet) if decisions is None else decisions
    return supernet.space.child_spec(decisions, name)


def arch_text(supernet: Supernet, decisions: Sequence[BlockDecision] | None = None) -> str:
    """The child's architecture, one block string per line (``train_main.py --arch`` input)."""
    return encode_arch(child_spec(supernet, decisions).blocks)


def _slice_block_weights(source: SuperMBConvBlock | MBConvBlock, target: MBConvBlock) -> None:
    """Copies a (super)block's weights into a child block: the child's channels and kernel are
    the first channels and the centre of the supernet's."""
    expanded = target.expanded_filters
    if target.expand_conv is not None:
        target.expand_conv.kernel.assign(source.expand_conv.kernel[..., :expanded])
        _copy_bn(source.expand_bn, target.expand_bn, expanded)
    (big,) = source.depthwise_convs
    (small,) = target.depthwise_convs
    k_big, k_small = big.kernel.shape[0], small.kernel.shape[0]
    pad = (k_big - k_small) // 2
    small.kernel.assign(big.kernel[pad:pad + k_small, pad:pad + k_small, :expanded, :])
    _copy_bn(source.depthwise_bn, target.depthwise_bn, expanded)
    if target.se_reduce is not None:  # a smaller SE is the first bottleneck channels
        squeezed = target.se_filters
        target.se_reduce.kernel.assign(source.se_reduce.kernel[:, :, :expanded, :squeezed])
        target.se_reduce.bias.assign(source.se_reduce.bias[:squeezed])
        target.se_expand.kernel.assign(source.se_expand.kernel[:, :, :squeezed, :expanded])
        target.se_expand.bias.assign(source.se_expand.bias[:expanded])
    target.project_conv.kernel.assign(source.project_conv.kernel[:, :, :expanded, :])
    _copy_bn(source.project_bn, target.project_bn, None)
    if target.lightnl is not None:
        target.lightnl.depthwise.kernel.assign(source.lightnl.depthwise.kernel)
        _copy_bn(source.lightnl.bn, target.lightnl.bn, None)


def _copy_bn(source, target, channels: int | None) -> None:
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        value = getattr(source, name)
        getattr(target, name).assign(value if channels is None else value[:channels])


def copy_weights_to_child(supernet: Supernet, child: keras.Model,
                          decisions: Sequence[BlockDecision]) -> None:
    """Copies the supernet's weights into `child` (built by `build_model` from `decisions`)."""
    for name in ("stem_conv", "stem_bn", "head_conv", "head_bn", "logits"):
        child.get_layer(name).set_weights(getattr(supernet, name).get_weights())
    child_index = 0
    for layer, decision in zip(supernet.search_blocks, decisions, strict=True):
        if not decision.keep:
            continue
        _slice_block_weights(layer, child.get_layer(f"block_{child_index}"))
        child_index += 1


def build_child(supernet: Supernet, decisions: Sequence[BlockDecision] | None = None,
                dropout_rate: float | None = None) -> keras.Model:
    """The decoded child (built as ``train_main.py --arch`` builds it) with the supernet's weights."""
    decisions = current_decisions(supernet) if decisions is None else decisions
    child = build_model(child_spec(supernet, decisions), num_classes=supernet.num_classes,
                        image_size=supernet.image_size,
                        width_multiplier=supernet.width_multiplier,
                        dropout_rate=(supernet.dropout_rate if dropout_rate is None
                                      else dropout_rate),
                        bn_momentum=supernet.bn_momentum, bn_epsilon=supernet.bn_epsilon,
                        depth_divisor=supernet.depth_divisor)
    copy_weights_to_child(supernet, child, decisions)
    return child
