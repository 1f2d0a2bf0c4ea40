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

from analysis.claim_tests import TESTS
from analysis.claims import Claim
from analysis.power import POWER, first_reaching, plan_design, simulated_mde, variance_components


def contrast_units(df: pd.DataFrame, factor: str, a: str, b: str,
                   where: dict[str, Any] | None = None) -> pd.DataFrame:
    """Unit-level values (points) of ``factor`` = ``a`` − ``b``, paired within every combination
    of the other factors as the ``contrast`` claim test pairs them: one row per (dataset, seed).

    Raises:
        ValueError: ``factor`` is not a column, or no unit ran both levels.
    """
    if factor not in df.columns:
        raise ValueError(f"the pilot has no factor {factor!r} (its columns: {', '.join(map(str, df.columns))})")
    params = {"factor": factor, "a": a, "b": b, **({"where": where} if where else {})}
    return claim_units(df, Claim("plan", "-", f"{factor}={a} − {factor}={b}", "pilot", "contrast", params))


#: Claim tests whose verdict rests on a mean of unit values with a natural effect size in points.
PLANNABLE = ("contrast", "best_level", "interaction")


def claim_units(df: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """The unit-level values (points) the claim's test decides on, computed on the pilot ``df``.

    Raises:
        ValueError: a test kind outside ``PLANNABLE``, or a pilot the test cannot use (its reason).
    """
    if claim.test not in PLANNABLE:
        raise ValueError(f"claim {claim.id!r} is a {claim.test} test; study plan sizes {', '.join(PLANNABLE)} "
                         f"claims (use --grid {claim.grid} --contrast FACTOR=A:B for one of its contrasts)")
    finding = TESTS[claim.test](df, claim)
    if finding.units is None:
        raise ValueError(f"claim {claim.id!r} on the pilot: {finding.reason}")
    return finding.units


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
    if len(units) < 2:
        raise ValueError("the pilot has one (dataset, seed) unit: run at least 2 seeds to estimate the noise")
    comps = variance_components(units)
    estimate = float(units["value"].mean())
    source = "given"
    if effect is None:
        effect, source = abs(estimate), "the pilot's own estimate (optimistic: a pilot's estimate is noisy)"
    table = plan_design(effect, comps, rng, power, max_seeds=max_seeds, max_datasets=max_datasets, n_sims=n_sims)
    pilot_mde = simulated_mde(comps, int(comps["n_datasets"]), max(int(comps["n_seeds"]), 1), power, n_sims)
    return Plan(units, comps, effect, source, pilot_mde, table,
                first_reaching(table, "seeds", power), first_reaching(table, "datasets", power))
