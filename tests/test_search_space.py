"""Search space config and the analytic search cost: validation, exact costs, feasible range."""
# bazel: suite=search

import copy
import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from autonl_tf import cost as profiler
from autonl_tf.arch import decode_arch, encode_arch
from autonl_tf.models import resolve_model_spec
from autonl_tf.runner.config import config_module
from autonl_tf.search import (
    ArchNotInSpaceError,
    BlockDecision,
    SearchCost,
    SearchSpaceError,
    TargetError,
    decision_from_gates,
    decisions_for_arch,
    space_from_config,
)
from autonl_tf.search import spaces as search_space_config


def _space_dict(variant="tiny"):
    return search_space_config.get_config(variant).to_dict()


@pytest.mark.parametrize("variant", ["autonl", "single_path", "tiny"])
def test_variants_parse_into_the_single_path_macro(variant):
    space = space_from_config(search_space_config.get_config(variant))
    repeats = 2 if variant == "tiny" else 4
    assert len(space.blocks) == 2 + 5 * repeats
    first, last = space.blocks[0], space.blocks[-1]
    assert (first.output_filters, first.expand_ratios, first.kernel_sizes) == (16, (1,), (3,))
    assert not first.searchable and last.output_filters == 320
    # The 320-channel block: kernel and LightNL searched, expansion 6, never skipped.
    assert (last.kernel_sizes, last.expand_ratios, last.skippable) == ((3, 5), (6,), False)
    assert last.lightnl_ratios == (0.125, 0.25)
    # Non-first blocks of a searchable stage may be skipped; first blocks may not.
    for block in space.searchable_blocks[:-1]:
        assert block.skippable == (block.position > 0)
        assert block.kernel_sizes == (3, 5) and block.expand_ratios == (3, 6)
        assert block.lightnl_ratios == (0.125, 0.25) and block.lightnl_strides == (2, 1)
        if variant == "autonl" and block.output_filters >= 80:
            assert block.se_ratios == (None, 0.25, 0.5)
        elif variant == "autonl":
            assert block.se_ratios == (None,)


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.pop("stages"), "stages"),
    (lambda c: c["stages"][2].pop("filters"), "stages[2].filters"),
    (lambda c: c["stages"][1].update(stride=3), "stages[1].stride"),
    (lambda c: c["stages"][1].update(kernel_sizes=(3, 4)), "stages[1].kernel_sizes"),
    (lambda c: c["stages"][1].update(expand_ratios=(1, 6)), "stages[1].expand_ratios"),
    (lambda c: c["stages"][3].update(se_ratio=[0.5]), "stages[3].se_ratio"),
    (lambda c: c["stages"][3].update(lightnl="yes"), "stages[3].lightnl"),
    (lambda c: c["stages"][3].update(colour=1), "stages[3].colour"),
    (lambda c: c.update(lightnl_strides=(1, 3)), "lightnl_strides"),
    (lambda c: c.update(lightnl_ratios=(0.0, 0.25)), "lightnl_ratios"),
    (lambda c: c.update(activation="gelu"), "activation"),
    (lambda c: c.update(kernels=(3, 5)), "kernels"),
])
def test_malformed_space_names_the_key(mutate, key):
    config = copy.deepcopy(_space_dict())
    mutate(config)
    with pytest.raises(SearchSpaceError, match=key.replace("[", r"\[").replace("]", r"\]")):
        space_from_config(config)


def test_per_block_se_and_lightnl_positions():
    config = _space_dict()
    config["stages"][1].update(se_ratio=[0.25, 0.0], lightnl=[False, True])
    space = space_from_config(config)
    first, second = space.blocks[1], space.blocks[2]
    assert first.se_ratio == 0.25 and second.se_ratio is None
    assert not first.has_lightnl and second.has_lightnl


def _all_decisions(block):
    for keep in ([True, False] if block.skippable else [True]):
        for k, e, se in itertools.product(block.kernel_sizes, block.expand_ratios,
                                          block.se_ratios):
            yield BlockDecision(keep, k, e, se_ratio=se)
            for r, s in itertools.product(block.lightnl_ratios, block.lightnl_strides):
                yield BlockDecision(keep, k, e, r, s, se)


@pytest.mark.parametrize("size, width", [(32, 0.25), (96, 0.5), (224, 1.0)])
def test_expected_cost_is_the_profilers_cost_exactly(size, width):
    space = space_from_config(_space_dict())
    search_cost = SearchCost(space, size, 10, width)
    for seed in range(12):
        decisions = space.random(seed)
        spec = resolve_model_spec(encode_arch(space.child_blocks(decisions)))
        assert spec.blocks == decode_arch(encode_arch(spec.blocks))
        truth = profiler.model_cost(spec.plan(size, 10, width))
        assert search_cost.macs(decisions) == truth.macs
        assert search_cost.params(decisions) == truth.params
        # The same arithmetic on float64 tensors (the supernet's path) is exact too.
        gates = [None if g is None else tf.nest.map_structure(
            lambda v: tf.constant(v, tf.float64), g) for g in search_cost.gates(decisions)]
        assert float(search_cost.expected_macs(gates).numpy()) == truth.macs


@pytest.mark.parametrize("variant", ["tiny", "autonl"])
def test_every_single_block_choice_matches_the_profiler(variant):
    space = space_from_config(search_space_config.get_config(variant))
    search_cost = SearchCost(space, 64, 10, 0.25)
    base = list(space.largest())
    reference = search_cost.macs(base)
    for block in space.searchable_blocks:
        for decision in _all_decisions(block):
            decisions = list(base)
            decisions[block.index] = decision
            spec = space.child_spec(decisions)
            assert search_cost.macs(decisions) == spec.cost(64, 10, 0.25).macs
    assert reference == space.child_spec(base).cost(64, 10, 0.25).macs


def test_feasible_range_and_bad_targets():
    space = space_from_config(_space_dict())
    search_cost = SearchCost(space, 32, 10, 0.25)
    low, high = search_cost.feasible_range()
    assert low == search_cost.macs(space.smallest())
    assert high == search_cost.macs(space.largest())
    rng = np.random.default_rng(0)
    for seed in rng.integers(0, 1000, 20):
        assert low <= search_cost.macs(space.random(int(seed))) <= high
    search_cost.check_target((low + high) / 2)
    for bad in (low - 1, high + 1, 1.0, 1e12):
        with pytest.raises(TargetError, match=f"feasible range.*{low:,}.*{high:,}"):
            search_cost.check_target(bad)


def test_decisions_outside_the_space_are_rejected():
    space = space_from_config(_space_dict())
    decisions = list(space.largest())
    decisions[1] = BlockDecision(False, 3, 3)  # a first block cannot be skipped
    with pytest.raises(ValueError, match="cannot be skipped"):
        space.child_blocks(decisions)
    decisions[1] = BlockDecision(True, 7, 3)
    with pytest.raises(ValueError, match="kernel 7"):
        space.child_blocks(decisions)


@pytest.mark.parametrize("name", ["autonl_s", "autonl_l"])
def test_published_networks_round_trip_through_the_autonl_indicators(name):
    """AutoNL-S/L are settings of the 'autonl' space: arch -> decisions -> indicator values ->
    decisions -> arch gives the same architecture string back."""
    space = space_from_config(search_space_config.get_config("autonl"))
    spec = resolve_model_spec(name)
    decisions = decisions_for_arch(space, spec.blocks)
    search_cost = SearchCost(space, 224, 1000, 1.0)
    indicators = search_cost.gates(decisions)  # 0/1 values of every indicator, block by block
    values = [v for gates in indicators if gates is not None for v in tf.nest.flatten(gates)]
    assert set(values) <= {0, 1} and len(values) > space.num_decisions  # incl. fixed 'keep's
    decoded = tuple(decision_from_gates(block, gates) for block, gates in
                    zip(space.blocks, indicators, strict=True))
    assert encode_arch(space.child_blocks(decoded)) == spec.arch_string
    # ... and the search's own cost of that setting is the published network's.
    assert search_cost.macs(decoded) == spec.cost(224, 1000, 1.0).macs


def test_an_architecture_outside_the_space_names_the_block():
    space = space_from_config(search_space_config.get_config("autonl"))
    blocks = list(resolve_model_spec("autonl_s").blocks)
    blocks[3] = dataclasses.replace(blocks[3], kernel_sizes=(7,))
    with pytest.raises(ArchNotInSpaceError, match="block 3 .*kernel 7"):
        decisions_for_arch(space, blocks)
    with pytest.raises(ArchNotInSpaceError, match="no place left"):
        decisions_for_arch(space, list(resolve_model_spec("autonl_s").blocks) * 2)


def test_warmup_ends_on_an_evaluation_and_thresholds_rest_until_then():
    from autonl_tf.search.experiment import DecisionPhaseCosine, settle_steps, warmup_steps

    assert warmup_steps(0.625, 1600, 200) == 1000  # Single-Path NAS's share, on an eval step
    assert warmup_steps(0.625, 10009, 1000) == 6000
    assert warmup_steps(0.625, 10009, 0) == 6256
    assert warmup_steps(0.0, 100, 10) == 0
    assert warmup_steps(0.99, 100, 1000) == 99  # never the whole search
    schedule = DecisionPhaseCosine(0.05, warmup_steps=100, total_steps=300)
    rates = [float(schedule(step)) for step in (0, 99, 100, 200, 300)]
    assert rates[:2] == [0.0, 0.0] and rates[2] == pytest.approx(0.05)
    assert rates[3] == pytest.approx(0.025) and rates[4] == pytest.approx(0.0, abs=1e-9)
    # The Lagrangian objective's settling phase (from step 250) starts the cosine again.
    schedule = DecisionPhaseCosine(0.05, warmup_steps=100, total_steps=300, settle_step=250)
    rates = [float(schedule(step)) for step in (99, 100, 175, 249, 250, 275)]
    assert rates[:2] == [0.0, pytest.approx(0.05)] and rates[2] == pytest.approx(0.025)
    assert rates[3] < 1e-4 and rates[4] == pytest.approx(0.05) and rates[5] == pytest.approx(0.025)
    assert settle_steps(0.25, 100, 300) == 250 and settle_steps(0.0, 100, 300) == 300


def test_search_config_has_no_key_the_search_ignores():
    search_config = config_module("search")
    from autonl_tf.runner.config import ConfigError, load_config

    for variant in search_config.VARIANTS:
        config = search_config.get_config(variant)
        for dotted in search_config.UNUSED_KEYS:
            section, key = dotted.split(".")
            assert key not in config[section], dotted
        assert "space_variant" not in config.search
    for dotted in ("model.drop_connect_rate", "train.use_ema", "eval.timeout_s",
                   "search.space_variant", "search.no_such_key"):
        with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")):
            load_config("search:demo", {dotted: 1})
