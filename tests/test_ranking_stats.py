"""The statistics of benchmarks/search_quality.py on cases with known answers."""

import random

import pytest

from benchmarks.ranking_stats import kendall_tau, variance_components


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
