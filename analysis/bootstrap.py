"""The cluster bootstrap of the analysis: resample whole replicate units, never single rows.

Runs of one unit (a seed, or a dataset × seed pair) share their data order, initialisation and
evaluation set, so they are not independent; resampling the units with replacement keeps that
dependence inside each draw (Davison & Hinkley 1997, sec. 3.8; percentile intervals as in Efron &
Tibshirani 1993, ch. 13). ``analysis.anova.bootstrap_ci`` (per-level means over seeds) and the
claim tests (``analysis.claim_tests``, any statistic over (dataset, seed) units) both draw here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

N_BOOT = 2000


def cluster_draws(n_units: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Unit indices of ``n_boot`` draws, each ``n_units`` units with replacement.

    Returns an int array of shape (n_boot, n_units); row b is the units of draw b, in draw order.
    """
    return rng.integers(0, n_units, size=(n_boot, n_units))


def cluster_bootstrap_ci(
    units: pd.Series,
    stat: Callable[[np.ndarray], float | None],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval of ``stat(row_indices)`` over cluster-bootstrap draws of ``units``.

    Args:
        units: the replicate unit of each row (any labels); a draw resamples the distinct labels.
        stat: the statistic of the rows of one draw (positions into ``units``, the rows of each
            drawn unit in a row, units in draw order); None or a non-finite value drops the draw.
        n_boot: the number of draws, from ``numpy.random.default_rng(seed)``.

    Returns:
        ``(low, high)``, the 2.5% and 97.5% quantiles of the kept draws; NaN, NaN when none is kept.
    """
    labels = units.to_numpy()
    groups = [np.flatnonzero(labels == u) for u in pd.unique(labels)]
    values = []
    for pick in cluster_draws(len(groups), n_boot, np.random.default_rng(seed)):
        rows = np.concatenate([groups[k] for k in pick])
        with warnings.catch_warnings():  # a draw may hold one dataset: the ANOVA says so each time
            warnings.simplefilter("ignore", UserWarning)
            value = stat(rows)
        if value is not None and np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))
