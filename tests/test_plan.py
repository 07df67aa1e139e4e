"""One network plan: the builder, the supernet and the cost model read the same `NetworkPlan`.

For AutoNL-S, AutoNL-L and a child the supernet decodes (as a search writes it to arch.txt),
all children of the 'autonl' search space: the plan's MACs are the profiler's (the profiler
command's and TensorFlow's graph profiler on the Keras model), and the plan's per-layer output
shapes are those of the Keras model and of the supernet running that child.
"""
# bazel: suite=models

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from autonl_tf import cost, plan
from autonl_tf.arch import expand_repeats
from autonl_tf.models import ModelSpec, build_network, resolve_model_spec
from autonl_tf.profile import profile_dict
from autonl_tf.search import (
    SearchCost,
    Supernet,
    arch_text,
    current_decisions,
    decisions_for_arch,
    set_decisions,
    space_from_config,
)
from autonl_tf.search import spaces as search_spaces
from autonl_tf.search.layers import SuperMBConvBlock
from tests.support.graph_profile import analytic_macs_as_profiled, graph_profiler_macs

# Small enough for a CPU test, odd enough to matter: 64 px leaves a 2x2 last stage, width 0.5
# rounds channel counts (e.g. 40 * 0.5 = 20 -> 24), 10 classes.
IMAGE_SIZE, NUM_CLASSES, WIDTH = 64, 10, 0.5
SEARCHED_SEED = 3  # random decisions of the space with skipped blocks and LightNLs (checked)


def test_scale_channels_is_mobilenet_rounding():
    assert plan.scale_channels(32, 1.0) == 32
    assert plan.scale_channels(40, 0.5) == 24  # 20 -> nearest multiple of 8 is 24 (ties up)
    assert plan.scale_channels(1280, 0.35) == 448
    assert plan.scale_channels(16, 0.25) == 8  # never below the divisor
    assert plan.scale_channels(116, 0.5) == 56  # 58 -> 56, within 10%
    assert plan.scale_channels(20, 1.0, divisor=16) == 32  # 20 -> 16 is 20% below: up
    # Never more than 10% below the scaled value.
    for filters in range(8, 400, 4):
        for width in (0.25, 0.35, 0.5, 0.75, 1.0, 1.4):
            scaled = plan.scale_channels(filters, width)
            assert scaled % 8 == 0 and scaled >= 0.9 * filters * width


def test_the_plan_follows_the_blocks_and_their_strides():
    spec = resolve_model_spec("autonl_s")
    network = spec.plan(224, 1000, 1.0)
    rows = expand_repeats(spec.blocks)
    assert len(network.blocks) == len(rows)
    assert network.stem.output_shape == (112, 112, 32)
    size = 112
    for layer, row in zip(network.blocks, rows, strict=True):
        assert layer.in_size == size and layer.block == dataclasses.replace(row, repeats=1)
        size = -(-size // row.stride)
        assert layer.out_size == size
    assert network.head.output_shape == (7, 7, 1280)
    assert network.classifier.output_shape == (1000,)
    assert [b.lightnl is not None for b in network.blocks] == [r.has_nonlocal for r in rows]


@pytest.fixture(scope="module")
def supernet():
    """The 'autonl' space's supernet (it contains AutoNL-S and AutoNL-L), built once."""
    keras.utils.set_random_seed(0)
    space = space_from_config(search_spaces.get_config("autonl"))
    network = Supernet(space, num_classes=NUM_CLASSES, image_size=IMAGE_SIZE,
                       width_multiplier=WIDTH)
    network(tf.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3)), training=False)
    return network


def _searched(supernet) -> ModelSpec:
    """The child of random decisions, as a search writes it (arch.txt -> the codec)."""
    decisions = supernet.space.random(SEARCHED_SEED)
    assert not all(d.keep for d in decisions), "pick a seed whose child skips a block"
    assert any(d.lightnl_ratio for d in decisions), "pick a seed whose child has a LightNL"
    set_decisions(supernet, decisions)
    return resolve_model_spec(arch_text(supernet))


def _supernet_child_shapes(supernet, decisions) -> dict[str, tuple[int, ...]]:
    """Output shapes (no batch) of the supernet's layers running the child of ``decisions``,
    named as the child's plan names its layers (a skipped block has no layer in the child)."""
    set_decisions(supernet, decisions)
    assert current_decisions(supernet) == tuple(decisions)
    gates = supernet.block_gates()
    images = tf.constant(np.random.default_rng(0).normal(
        size=(1, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32))
    x = supernet.stem_activation(supernet.stem_bn(supernet.stem_conv(images)))
    shapes = {"stem": tuple(x.shape[1:])}
    child_index = 0
    for layer, decision in zip(supernet.search_blocks, decisions, strict=True):
        if isinstance(layer, SuperMBConvBlock):
            y = layer(x, gates=gates[layer.name], training=False)
        else:
            y = layer(x, training=False)
        if decision.keep:
            shapes[f"block_{child_index}"] = tuple(y.shape[1:])
            child_index += 1
        else:  # a skipped block passes its input on unchanged
            np.testing.assert_array_equal(y.numpy(), x.numpy())
        x = y
    x = supernet.head_activation(supernet.head_bn(supernet.head_conv(x)))
    shapes["head"] = tuple(x.shape[1:])
    shapes["logits"] = tuple(supernet.logits(supernet.avg_pool(x)).shape[1:])
    return shapes


def _keras_shapes(model) -> dict[str, tuple[int, ...]]:
    names = {"stem": "stem_activation", "head": "head_activation"}
    shapes = {}
    for layer in model.layers:
        if layer.name.startswith("block_") or layer.name == "logits":
            shapes[layer.name] = tuple(layer.output.shape[1:])
    for key, name in names.items():
        shapes[key] = tuple(model.get_layer(name).output.shape[1:])
    return shapes


@pytest.mark.slow  # three networks traced and profiled, one supernet: ~40 CPU-s
@pytest.mark.parametrize("which", ["autonl_s", "autonl_l", "searched"])
def test_builder_supernet_and_cost_model_read_the_same_plan(supernet, which):
    spec = _searched(supernet) if which == "searched" else resolve_model_spec(which)
    network = spec.plan(IMAGE_SIZE, NUM_CLASSES, WIDTH)
    planned = cost.model_cost(network)

    # MACs: the plan's are the profiler command's and TensorFlow's graph profiler's.
    assert profile_dict(spec, IMAGE_SIZE, NUM_CLASSES, WIDTH, compare_nl=False)["macs"] \
        == planned.macs
    model = build_network(network, dropout_rate=0.0)
    measured = graph_profiler_macs(model, IMAGE_SIZE)
    assert sum(measured.values()) == analytic_macs_as_profiled(planned, measured)

    # Per-layer output shapes: the plan's, the Keras model's, the supernet's child's.
    expected = network.output_shapes()
    assert _keras_shapes(model) == expected
    decisions = decisions_for_arch(supernet.space, spec.blocks)
    assert _supernet_child_shapes(supernet, decisions) == expected

    # The supernet's expected cost of this child is the plan's MACs too, and the supernet is
    # built from its space's plan: the largest child, block by block.
    assert SearchCost(supernet.space, IMAGE_SIZE, NUM_CLASSES, WIDTH).macs(decisions) \
        == planned.macs
    largest = supernet.space.child_spec(supernet.space.largest()).plan(
        IMAGE_SIZE, NUM_CLASSES, WIDTH)
    assert [b.output_shape for b in supernet.plan.blocks] == \
        [b.output_shape for b in largest.blocks]
