"""Power, minimum detectable effect and design size for a contrast over (dataset, seed) units.

Card et al. 2020 ("With Little Power Comes Great Responsibility") ask every comparison to state
the effect its design could detect; here a claim test's design is G replicate units (dataset ×
seed), each giving one unit-level value (e.g. the paired difference a − b), tested with a
t-interval on G − 1 df and an exact sign-flip test (``analysis.smallsample``).

- :func:`variance_components`: from a pilot's unit values, the seed-to-seed s.d. within a dataset
  and the s.d. of the contrast between datasets (one-way random-effects ANOVA, method of moments).
- :func:`mde`: the minimum effect a one-sample t-test over G units detects with the given power at
  α (``statsmodels.stats.power.TTestPower``), floored by the sign-flip test's minimum units.
- :func:`units_needed`: the smallest G that detects a given effect.
- :func:`simulated_power` / :func:`plan_design`: power of a (datasets, seeds) design by simulation
  from the pilot's components, with the claim tests' verdict rule (interval and test agree, at
  least ``MIN_UNITS`` units), and the smallest design along seeds and along datasets.
- :func:`simulated_mde`: the design's minimum detectable effect by the same simulation; what
  ``study findings`` and ``study plan`` both state, so the two agree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from statsmodels.stats.power import TTestPower

from analysis.smallsample import ALPHA, MIN_UNITS, sign_flip_test, t_interval

POWER = 0.8


def variance_components(unit_values: pd.DataFrame, value: str = "value") -> dict[str, float]:
    """Seed and dataset s.d. of a contrast from unit-level values.

    Args:
        unit_values: one row per (dataset, seed) unit, columns ``dataset`` and ``value``.

    Returns:
        ``seed_sd`` (pooled within-dataset s.d. across seeds; the s.d. of all values when no
        dataset has two seeds), ``dataset_sd`` (between-dataset s.d. of the contrast, method of
        moments, 0 when negative), ``unit_sd`` (s.d. of all unit values), ``n_datasets``,
        ``n_seeds`` (median seeds per dataset); units of ``value``.
    """
    groups = unit_values.groupby("dataset", observed=True)[value]
    sizes = groups.size()
    within_df = int((sizes - 1).sum())
    all_sd = float(unit_values[value].std(ddof=1)) if len(unit_values) > 1 else 0.0
    seed_var = float((groups.var(ddof=1).fillna(0) * (sizes - 1)).sum() / within_df) if within_df else all_sd ** 2
    n_seeds = float(sizes.median())
    between = float(groups.mean().var(ddof=1)) if len(sizes) > 1 else 0.0
    dataset_var = max(between - seed_var / n_seeds, 0.0)
    return {"seed_sd": math.sqrt(seed_var), "dataset_sd": math.sqrt(dataset_var), "unit_sd": all_sd,
            "n_datasets": float(len(sizes)), "n_seeds": n_seeds}


def mde(unit_sd: float, n_units: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true mean a two-sided one-sample t-test over ``n_units`` unit values of s.d.
    ``unit_sd`` detects with ``power`` at ``alpha`` (unit of ``unit_sd``). Infinite below
    ``MIN_UNITS`` units (the sign-flip test a verdict also needs cannot reject there); 0 when
    ``unit_sd`` is 0."""
    if n_units < MIN_UNITS or not np.isfinite(unit_sd):
        return float("inf")
    if unit_sd == 0:
        return 0.0
    d = TTestPower().solve_power(effect_size=None, nobs=n_units, alpha=alpha, power=power)
    return float(d * unit_sd)


def units_needed(effect: float, unit_sd: float, power: float = POWER, alpha: float = ALPHA,
                 most: int = 10_000) -> int:
    """The fewest units (at least ``MIN_UNITS``) whose t-test detects ``effect`` with ``power``;
    ``most`` when even that many do not (a zero effect)."""
    if unit_sd == 0:
        return MIN_UNITS
    if effect == 0:
        return most
    nobs = np.arange(MIN_UNITS, most + 1)
    d = abs(effect) / unit_sd
    got = TTestPower().power(effect_size=d, nobs=nobs, alpha=alpha)
    got = np.where(np.isnan(got) & (d * np.sqrt(nobs) > 8), 1.0, got)  # statsmodels' nct gives nan far out
    reached = np.nan_to_num(got) >= power
    return int(nobs[np.argmax(reached)]) if reached.any() else most


def simulated_power(effect: float, seed_sd: float, dataset_sd: float, n_datasets: int, n_seeds: int,
                    rng: np.random.Generator, n_sims: int = 400, alpha: float = ALPHA) -> float:
    """Power of a design of ``n_datasets`` × ``n_seeds`` units by simulation: unit value =
    ``effect`` + dataset effect N(0, ``dataset_sd``) + seed noise N(0, ``seed_sd``); a draw
    counts when the claim tests would say reproduced: at least ``MIN_UNITS`` units, the
    t-interval on the claimed side of 0 and the sign-flip test at p < ``alpha``."""
    g = n_datasets * n_seeds
    if g < MIN_UNITS:
        return 0.0
    sign = 1.0 if effect >= 0 else -1.0
    hits = 0
    for _ in range(n_sims):
        values = (effect + np.repeat(rng.normal(0, dataset_sd, n_datasets), n_seeds)
                  + rng.normal(0, seed_sd, g))
        low, high = t_interval(values, alpha)
        side = low > 0 if sign > 0 else high < 0
        hits += bool(side and sign_flip_test(values, rng, n_perm=2000) < alpha)
    return hits / n_sims


def expected_width(components: dict[str, float], n_datasets: int, n_seeds: int, n_sims: int = 300,
                   seed: int = 0, alpha: float = ALPHA) -> float:
    """The median width (unit of the components) of the (1 − ``alpha``) t-interval over the
    ``n_datasets`` × ``n_seeds`` unit values a design gives, by simulation from ``components``
    (``seed_sd``, ``dataset_sd``; the effect does not change the width). NaN below 2 units."""
    g = n_datasets * n_seeds
    if g < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    widths = []
    for _ in range(n_sims):
        values = (np.repeat(rng.normal(0, components["dataset_sd"], n_datasets), n_seeds)
                  + rng.normal(0, components["seed_sd"], g))
        low, high = t_interval(values, alpha)
        widths.append(high - low)
    return float(np.median(widths))


def simulated_mde(components: dict[str, float], n_datasets: int, n_seeds: int, power: float = POWER,
                  n_sims: int = 300, seed: int = 0) -> float:
    """The smallest effect a design of ``n_datasets`` × ``n_seeds`` units detects with ``power``
    under the verdict rule, by bisection on :func:`simulated_power` from ``components``
    (``variance_components``: ``seed_sd``, ``dataset_sd``), the same random draws at every effect
    (an rng seeded ``seed`` each time), to 1%. Unlike :func:`mde` it keeps the contrast's spread
    between datasets, which more seeds on the same datasets do not average away. Infinite below
    ``MIN_UNITS`` units or when no effect up to 1000 times the unit s.d. is detected; 0 without noise."""
    if n_datasets * n_seeds < MIN_UNITS:
        return float("inf")
    sd = math.hypot(components["seed_sd"], components["dataset_sd"])
    if sd == 0:
        return 0.0

    def reaches(effect: float) -> bool:
        got = simulated_power(effect, components["seed_sd"], components["dataset_sd"], n_datasets, n_seeds,
                              np.random.default_rng(seed), n_sims)
        return got >= power

    low, high = 0.0, mde(sd, n_datasets * n_seeds, power)
    while not reaches(high):
        low, high = high, 2 * high
        if high > 1000 * sd:
            return float("inf")
    while high - low > 0.01 * high:
        mid = (low + high) / 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def plan_design(effect: float, components: dict[str, float], rng: np.random.Generator,
                power: float = POWER, max_seeds: int = 20, max_datasets: int = 20,
                n_sims: int = 400) -> pd.DataFrame:
    """Simulated power along two routes from the pilot: more seeds on the pilot's datasets, and
    more datasets at the pilot's seeds (Card et al. 2020, sec. 3: power by simulation).

    Returns:
        rows ``route`` (seeds or datasets), ``n_datasets``, ``n_seeds``, ``units``, ``power``, up
        to and including the first design reaching ``power`` on each route.
    """
    d0, s0 = int(components["n_datasets"]), max(int(components["n_seeds"]), 1)
    rows = []
    for route, designs in (("seeds", [(d0, s) for s in range(s0, max_seeds + 1)]),
                           ("datasets", [(d, s0) for d in range(d0, max_datasets + 1)])):
        for d, s in designs:
            p = simulated_power(effect, components["seed_sd"], components["dataset_sd"], d, s, rng, n_sims)
            rows.append({"route": route, "n_datasets": d, "n_seeds": s, "units": d * s, "power": p})
            if p >= power:
                break
    return pd.DataFrame(rows)


def first_reaching(table: pd.DataFrame, route: str, power: float = POWER) -> pd.Series | None:
    """The first row of ``plan_design``'s ``route`` reaching ``power``, or None."""
    rows = table[(table["route"] == route) & (table["power"] >= power)]
    return None if rows.empty else rows.iloc[0]
