"""Verdicts from unit-level values: interval and test must agree, on enough units.

A claim test (``analysis.claim_tests``) reduces each (dataset, seed) unit to one value in points
(e.g. the paired difference a − b averaged within the unit). :func:`decide` then draws the verdict
with ``analysis.smallsample``: the t-interval on the G unit values (G − 1 df) and the exact
sign-flip test over units. ``reproduced`` / ``not reproduced`` need the interval on one side AND
the test rejecting the boundary at α = 0.05 AND at least ``MIN_UNITS`` units; a decisive interval
without the rest, or fewer units, is ``underpowered``. It also gives the minimum detectable effect
(``analysis.power.simulated_mde``, 80% power) and, for a verdict short of one, the seeds or datasets
that would detect the paper's effect (or, lacking one, the effect observed), both simulated from the
units' seed and dataset variance exactly as ``study plan`` does, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.power import POWER, first_reaching, mde, plan_design, simulated_mde, variance_components
from analysis.smallsample import ALPHA, MIN_UNITS, sign_flip_test, t_interval

UNIT = ("dataset", "seed")
PLAN_SIMS = 300  # simulated draws per design, as `study plan`
PLAN_MAX = 20  # the most seeds or datasets a power note considers, as `study plan`


@dataclass
class UnitResult:
    """What :func:`decide` found; numbers in the unit of the values (points)."""

    estimate: float
    low: float
    high: float
    p_value: float
    verdict: str
    rule: str
    n_units: int
    unit_sd: float
    mde: float
    detectable: bool | None
    note: str
    units: pd.DataFrame | None = None


def unit_values(frame: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
    """``values`` (one per row of ``frame``) averaged within (dataset, seed) units.

    Returns:
        one row per unit: the unit columns ``frame`` has (``dataset``, ``seed``) and ``value``.
    """
    cols = [c for c in UNIT if c in frame.columns]
    data = frame[cols].astype(str).assign(value=np.asarray(values, dtype=float))
    if not cols:
        return pd.DataFrame({"dataset": ["all"], "value": [float(data["value"].mean())]})
    out = data.groupby(cols, observed=True, sort=True)["value"].mean().reset_index()
    return out if "dataset" in out.columns else out.assign(dataset="all")


def _plan(effect: float, comps: dict[str, float], power: float = POWER) -> pd.DataFrame:
    """``analysis.power.plan_design`` of ``effect`` from ``comps`` exactly as ``study plan`` runs it
    (rng seeded 0, ``PLAN_SIMS`` draws, up to ``PLAN_MAX``); its first row is the units' own design."""
    return plan_design(abs(effect), comps, np.random.default_rng(0), power, max_seeds=PLAN_MAX,
                       max_datasets=PLAN_MAX, n_sims=PLAN_SIMS)


def power_note(effect: float, units: pd.DataFrame, what: str, power: float = POWER,
               table: pd.DataFrame | None = None) -> str:
    """"needs about N seeds (on D datasets) or M datasets (at S seeds) to detect X points with 80%
    power" for ``units``' design (``dataset`` and ``value`` columns, one row per unit), by the same
    simulation as ``study plan`` (``table``, else ``_plan`` from the units' seed and dataset
    variance): more seeds do not average away a contrast that differs between datasets, more
    datasets do. "" when the effect or the noise is not finite, or the effect is 0."""
    values = units["value"].to_numpy(dtype=float)
    if len(values) < 2 or not np.isfinite(values).all() or effect == 0 or not np.isfinite(effect):
        return ""
    comps = variance_components(units)
    table = _plan(effect, comps, power) if table is None else table
    n_ds, n_seeds = int(comps["n_datasets"]), max(int(comps["n_seeds"]), 1)
    seeds, datasets = first_reaching(table, "seeds", power), first_reaching(table, "datasets", power)
    by_seeds = (f"about {int(seeds['n_seeds'])} seeds (on {n_ds} datasets)" if seeds is not None
                else f"more than {PLAN_MAX} seeds (on {n_ds} datasets)")
    by_datasets = (f"{int(datasets['n_datasets'])} datasets (at {n_seeds} seeds)" if datasets is not None
                   else f"more than {PLAN_MAX} datasets (at {n_seeds} seeds)")
    return (f"needs {by_seeds} or {by_datasets} to detect {abs(effect):.2f} points ({what}) with {power:.0%} "
            f"power (simulated from this design's seed s.d. {comps['seed_sd']:.2f} and dataset s.d. "
            f"{comps['dataset_sd']:.2f}, as `study plan`)")


def _note(units: pd.DataFrame, observed: float, paper_effect: float | None) -> str:
    """The power note of a verdict short of one: for the paper's effect when the units' own design
    would miss it (simulated power below ``POWER``), else for the effect observed here."""
    if len(units) >= 2 and paper_effect is not None and np.isfinite(units["value"].to_numpy(dtype=float)).all():
        table = _plan(paper_effect, variance_components(units))
        if table["power"].iloc[0] < POWER:  # the first row is this design
            return power_note(paper_effect, units, "the paper's effect", table=table)
    return power_note(observed, units, "the effect observed here")


def _sides(x: np.ndarray, low: float, high: float, expect: str, margin: float,
           rng: np.random.Generator) -> tuple[str, float, str]:
    """(verdict by interval and test, the test's p, the rule) before the unit-count floor."""
    a = f"α = {ALPHA:g}"
    if expect == "negligible":
        rule = (f"reproduced if the 95% t-interval lies within ±{margin:g} points and sign-flip tests reject "
                f"both ±{margin:g} at {a}; not reproduced if it excludes that band and the test rejects its edge")
        p_hi, p_lo = sign_flip_test(x, rng, margin), sign_flip_test(x, rng, -margin)
        if -margin <= low and high <= margin:
            p = max(p_hi, p_lo)
            return ("reproduced" if p < ALPHA else "underpowered"), p, rule
        if low > margin or high < -margin:
            p = p_hi if low > margin else p_lo
            return ("not reproduced" if p < ALPHA else "underpowered"), p, rule
        return "inconclusive", min(p_hi, p_lo), rule
    sign = 1.0 if expect == "positive" else -1.0
    side = "above" if sign > 0 else "below"
    rule = (f"reproduced if the 95% t-interval over units (G − 1 df) is {side} {sign * margin:g} points and an "
            f"exact sign-flip test over units rejects it at {a}; not reproduced if the interval lies wholly on "
            f"the other side of 0 and the test rejects 0; at least {MIN_UNITS} units")
    lo, hi = sorted((sign * low, sign * high))
    if lo > margin:
        p = sign_flip_test(x, rng, sign * margin)
        return ("reproduced" if p < ALPHA else "underpowered"), p, rule
    p = sign_flip_test(x, rng, 0.0)
    if hi < 0:
        return ("not reproduced" if p < ALPHA else "underpowered"), p, rule
    return "inconclusive", p, rule


def decide(units: pd.DataFrame, expect: str, rng: np.random.Generator, margin: float = 0.0,
           paper_effect: float | None = None) -> UnitResult:
    """The verdict on the mean of ``units["value"]`` (points, one row per unit, with ``dataset``).

    Args:
        expect: ``positive``, ``negative`` (sign of the mean beyond ``margin``) or ``negligible``
            (within ±``margin``).
        paper_effect: the effect the paper claims (points, its magnitude), or None.

    Returns:
        a :class:`UnitResult`; ``verdict`` one of reproduced, not reproduced, inconclusive,
        underpowered (a decisive interval without the test, or fewer than ``MIN_UNITS`` units).
    """
    x = units["value"].to_numpy(dtype=float)
    g = len(x)
    low, high = t_interval(x)
    if g < 2:
        low = high = float(x.mean()) if g else float("nan")
    verdict, p, rule = _sides(x, low, high, expect, margin, rng)
    sd = float(x.std(ddof=1)) if g > 1 else float("nan")
    if g < MIN_UNITS:
        verdict = "underpowered"
    if g >= 2:
        comps = variance_components(units)
        floor = simulated_mde(comps, int(comps["n_datasets"]), max(int(comps["n_seeds"]), 1), n_sims=PLAN_SIMS)
    else:
        floor = mde(sd, g)
    detectable = None if paper_effect is None else bool(abs(paper_effect) >= floor)
    note = ""
    if verdict in ("inconclusive", "underpowered"):
        observed = float(x.mean()) - (margin if expect == "positive" else -margin if expect == "negative" else 0.0)
        note = _note(units, observed, paper_effect)
    return UnitResult(float(x.mean()) if g else float("nan"), low, high, p, verdict, rule, g, sd, floor,
                      detectable, note, units)
