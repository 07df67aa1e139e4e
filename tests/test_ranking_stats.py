"""The statistics of benchmarks/search_quality.py on cases with known answers."""

import random
import statistics

import pytest

from benchmarks.ranking_stats import (
    fraction_reaching,
    kendall_tau,
    one_std_bar,
    variance_components,
    who_reaches,
)


def _runs(table: list[list[float]]) -> list[dict]:
    return [{"child": child, "top1": top1} for child, row in enumerate(table) for top1 in row]


def test_kendall_tau_of_same_reversed_and_one_swap():
    x = [0.1, 0.4, 0.2, 0.9, 0.5]
    assert kendall_tau(x, [2 * v for v in x]) == pytest.approx(1.0)
    assert kendall_tau(x, [-v for v in x]) == pytest.approx(-1.0)
    # One adjacent swap among 5: 9 concordant pairs, 1 discordant.
    assert kendall_tau([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == pytest.approx(0.8)


def test_no_seed_noise_leaves_all_the_variance_to_the_architecture():
    components = variance_components(_runs([[0.8, 0.8], [0.9, 0.9], [0.7, 0.7]]))
    assert components["seed_std"] == 0.0
    assert components["architecture_std"] == pytest.approx(0.1)
    assert components["architecture_share"] == 1.0


def test_equal_children_leave_none_to_the_architecture():
    components = variance_components(_runs([[0.8, 0.9], [0.9, 0.8], [0.85, 0.85]]))
    assert components["architecture_std"] == 0.0
    assert components["architecture_share"] == 0.0
    assert components["seed_std"] > 0.0


def test_components_recover_known_spreads():
    rng = random.Random(0)
    table = []
    for _ in range(3000):
        mean = rng.gauss(0.85, 0.03)
        table.append([mean + rng.gauss(0.0, 0.07) for _ in range(4)])
    components = variance_components(_runs(table))
    assert components["seed_std"] == pytest.approx(0.07, rel=0.1)
    assert components["architecture_std"] == pytest.approx(0.03, rel=0.1)
    assert components["architecture_share"] == pytest.approx(0.03**2 / (0.03**2 + 0.07**2),
                                                             abs=0.03)


def test_too_few_or_unbalanced_runs_give_nothing():
    assert variance_components(_runs([[0.8, 0.9]])) == {}
    assert variance_components(_runs([[0.8], [0.9]])) == {}
    assert variance_components(_runs([[0.8, 0.9], [0.9]])) == {}


def test_fraction_reaching_is_the_normal_tail():
    assert fraction_reaching(0.0, 0.02) == pytest.approx(0.5)
    assert fraction_reaching(0.02, 0.02) == pytest.approx(0.158655, abs=1e-6)  # 1 std
    assert fraction_reaching(0.04, 0.02) == pytest.approx(0.022750, abs=1e-6)  # 2 stds
    assert fraction_reaching(0.01, 0.0) == 0.0  # no architecture spread: nothing above the mean


def test_one_std_bar_of_a_population_ruled_by_the_architecture_and_by_the_seed():
    rng = random.Random(1)
    ruled_by_arch = _runs([[m + rng.gauss(0, 0.002) for _ in range(2)]
                           for m in (0.70, 0.75, 0.80, 0.85, 0.90)])
    ruled_by_seed = _runs([[0.8 + rng.gauss(0, 0.06) for _ in range(2)] for _ in range(5)])
    for runs, reachable in ((ruled_by_arch, True), (ruled_by_seed, False)):
        values = [r["top1"] for r in runs]
        group = {"top1_mean": sum(values) / len(values),
                 "top1_std": statistics.stdev(values),
                 "variance_components": variance_components(runs)}
        bar = one_std_bar(group)
        assert bar["top1"] == pytest.approx(group["top1_mean"] + group["top1_std"])
        if reachable:  # the bar is about one architecture std up: a sixth of the space
            assert bar["architecture_stds"] == pytest.approx(1.0, abs=0.1)
            assert 0.1 < bar["fraction_of_space"] < 0.25
            assert who_reaches(bar).startswith("one child in ")
        else:
            assert bar["fraction_of_space"] < 0.05


def test_a_bar_above_100_percent_is_out_of_every_networks_reach():
    runs = _runs([[0.99, 0.80], [0.97, 0.99], [0.98, 0.99]])
    group = {"top1_mean": 0.953, "top1_std": 0.07, "variance_components": variance_components(runs)}
    bar = one_std_bar(group)
    assert bar["top1"] > 1.0 and bar["fraction_of_space"] == 0.0
    assert who_reaches(bar) == "no network (the bar is above 100%)"
    assert who_reaches({"top1": 0.9, "architecture_stds": 30.0, "fraction_of_space": 1e-9}) == (
        "fewer than one child in a million")
    assert who_reaches({"top1": 0.9, "architecture_stds": None, "fraction_of_space": 0.0}) == (
        "no child (the architecture explains none of the spread)")
    # Without variance components, the bar alone.
    assert one_std_bar({"top1_mean": 0.9, "top1_std": 0.01}) == {"top1": pytest.approx(0.91)}
