"""Statistics of benchmarks/search_quality.py: how a supernet's ranking agrees with retrained
accuracy (Kendall's tau), and how much of the retrained accuracy's spread belongs to the
architecture rather than to the retraining seed (a one-way analysis of variance).

Pure Python, no flags: tests/test_ranking_stats.py checks both on known cases.
"""

from __future__ import annotations

import math
import statistics


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b of two equally long lists (ties counted as neither)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx * dy > 0:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else 0.0


def runs_by_child(runs: list[dict]) -> dict[int, list[float]]:
    """{child index: its runs' top-1, in run order} of runs {"child": int, "top1": float}."""
    by_child: dict[int, list[float]] = {}
    for run in runs:
        by_child.setdefault(run["child"], []).append(run["top1"])
    return by_child


def variance_components(runs: list[dict]) -> dict:
    """How much of the run-to-run spread of the retrained top-1 is the architecture's: a one-way
    random-effects analysis of variance over children (groups) and retraining seeds (balanced).

    Returns seed_std (spread between seeds of one child), architecture_std (spread of the
    children's true means, the part a search can act on) and architecture_share (its share of
    the variance of one run), or {} with fewer than two children or two seeds each."""
    groups = list(runs_by_child(runs).values())
    seeds = len(groups[0]) if groups else 0
    if len(groups) < 2 or seeds < 2 or any(len(g) != seeds for g in groups):
        return {}
    within = statistics.fmean(statistics.variance(g) for g in groups)
    between = seeds * statistics.variance([statistics.fmean(g) for g in groups])
    architecture = max(0.0, (between - within) / seeds)
    return {"seed_std": math.sqrt(within), "architecture_std": math.sqrt(architecture),
            "architecture_share": architecture / (architecture + within) if within else 1.0}


def fraction_reaching(gap: float, architecture_std: float) -> float:
    """The share of a space whose architecture effect is at least ``gap`` above the space's
    mean, the effects being normal with ``architecture_std`` (variance_components): what even
    a search that knew every child's true mean could find above such a bar."""
    if architecture_std <= 0.0:
        return 0.0 if gap > 0.0 else 1.0
    return 0.5 * math.erfc(gap / (architecture_std * math.sqrt(2.0)))


def one_std_bar(random_group: dict) -> dict:
    """What "searched >= random mean + one std" asks of this population: the bar (top-1, always)
    and, given variance components, how far above the random mean it lies in the architecture's
    standard deviations (None when the architecture has none) and the share of the space whose
    true mean reaches it, with normal architecture effects (0 for a bar above 100%)."""
    gap = random_group["top1_std"]
    bar = {"top1": random_group["top1_mean"] + gap}
    components = random_group.get("variance_components")
    if components:
        arch = components["architecture_std"]
        bar["architecture_stds"] = gap / arch if arch else None
        bar["fraction_of_space"] = 0.0 if bar["top1"] > 1.0 else fraction_reaching(gap, arch)
    return bar


def who_reaches(bar: dict) -> str:
    """Who reaches a one_std_bar: 'one child in 250', 'no network (above 100%)', ..."""
    if bar["top1"] > 1.0:
        return "no network (the bar is above 100%)"
    fraction = bar["fraction_of_space"]
    if bar["architecture_stds"] is None:
        return "no child (the architecture explains none of the spread)"
    if fraction < 1e-6:
        return "fewer than one child in a million"
    return f"one child in {1 / fraction:,.0f}"
