"""Sizing a grid for one contrast from a pilot's runs (what ``study plan`` computes).

Card et al. 2020 ("With Little Power Comes Great Responsibility"): estimate the variance from a
pilot, then simulate the planned test at candidate sizes. The pilot is a grid's tidy table
(``analysis.table.load_runs``); the contrast is ``factor`` = ``a`` minus ``b``, paired within
every combination of the other factors and reduced to one value per (dataset, seed) unit as the
claim tests do; the power is that of their verdict rule (``analysis.power.simulated_power``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.claim_tests import _subset, held_fixed
from analysis.power import POWER, first_reaching, mde, plan_design, variance_components
from analysis.verdicts import unit_values


def contrast_units(df: pd.DataFrame, factor: str, a: str, b: str,
                   where: dict[str, Any] | None = None) -> pd.DataFrame:
    """Unit-level values (points) of ``factor`` = ``a`` − ``b``: one row per (dataset, seed).

    Raises:
        ValueError: ``factor`` is not a column, or no unit ran both levels.
    """
    if factor not in df.columns:
        raise ValueError(f"the pilot has no factor {factor!r} (its columns: {', '.join(map(str, df.columns))})")
    data = _subset(df, where).assign(_level=lambda d: d[factor].astype(str))
    keys = held_fixed(data, factor)
    wide = data[data["_level"].isin([a, b])].pivot_table(index=keys, columns="_level", values="score",
                                                            aggfunc="mean", observed=True)
    if a not in wide.columns or b not in wide.columns:
        raise ValueError(f"the pilot did not run both {factor}={a} and {factor}={b}")
    wide = wide.dropna(subset=[a, b]).reset_index()
    if wide.empty:
        raise ValueError(f"no unit of the pilot ran both {factor}={a} and {factor}={b}")
    return unit_values(wide, 100 * (wide[a] - wide[b]).to_numpy())


def factor_of(df: pd.DataFrame, a: str, b: str) -> str:
    """The one factor of ``df`` (``attrs["factors"]``) that has both levels ``a`` and ``b``.

    Raises:
        ValueError: none, or more than one.
    """
    factors = [f for f in (df.attrs.get("factors") or df.columns) if f in df.columns]
    hits = [f for f in factors if {a, b} <= set(df[f].astype(str))]
    if len(hits) != 1:
        raise ValueError(f"{len(hits)} factors of the pilot have levels {a!r} and {b!r}"
                         + (f" ({', '.join(hits)}): write --contrast FACTOR=A:B" if hits else ""))
    return hits[0]


@dataclass
class Plan:
    """A pilot's variance components, the effect planned for, and the simulated designs."""

    units: pd.DataFrame
    components: dict[str, float]
    effect: float
    effect_source: str
    pilot_mde: float
    table: pd.DataFrame
    seeds: pd.Series | None
    datasets: pd.Series | None


def plan_contrast(units: pd.DataFrame, effect: float | None, rng: np.random.Generator,
                  power: float = POWER, n_sims: int = 300, max_seeds: int = 20,
                  max_datasets: int = 20) -> Plan:
    """Simulated power of more seeds or more datasets for the contrast of ``units``
    (``contrast_units``) at ``effect`` points (None: the pilot's own estimate, optimistic)."""
    comps = variance_components(units)
    estimate = float(units["value"].mean())
    source = "given"
    if effect is None:
        effect, source = abs(estimate), "the pilot's own estimate (optimistic: a pilot's estimate is noisy)"
    table = plan_design(effect, comps, rng, power, max_seeds=max_seeds, max_datasets=max_datasets, n_sims=n_sims)
    return Plan(units, comps, effect, source, mde(comps["unit_sd"], len(units), power), table,
                first_reaching(table, "seeds", power), first_reaching(table, "datasets", power))
