"""What a sub-optimal KD choice costs, in points of the metric.

Sultan et al. (2024) ask how much a practitioner loses by committing to one KD choice rather than
the best; an ANOVA's share of variance does not answer that. Two measures, both computed within
blocks (a dataset × student pair by default), so that an easy dataset does not masquerade as a
good choice:

- ``tuned_cost``: committing to a level while every other choice is still tuned. Works on any
  design, balanced or not (a published hyper-parameter search such as Distiller's).
- ``averaged_cost``: committing to a level with the other choices at each of their levels in
  turn. Needs a complete (balanced) grid.

Scores are assumed higher-is-better unless ``higher_is_better=False``; costs are then still
reported as non-negative losses. Units: those of the metric (a fraction in [0, 1] for accuracy,
so 0.01 is one point).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.columns import check_roles, column_list, observed_levels, require_columns

DEFAULT_BLOCK = ("dataset", "student")
#: Leading columns of every cost table, in this order (``cost.csv`` keeps them first).
COST_COLUMNS = ("factor", "level", "mean_cost", "worst_cost", "blocks")


def _check(df: pd.DataFrame, metric: str, factors: list[str], block: list[str],
           teacher_col: str | None = None) -> None:
    check_roles(df.columns, metric, factors, block)
    if teacher_col is not None:
        require_columns(df.columns, [("teacher score", teacher_col)])


def _blocks(data: pd.DataFrame, block: list[str]):
    if not block:
        yield (), data
        return
    yield from data.groupby(block, observed=True, sort=True)


def tuned_cost(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str] | str,
    block: Sequence[str] | str = DEFAULT_BLOCK,
    teacher_col: str | None = None,
    *,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """The cost of committing to each level of each factor when everything else is tuned.

    For a block b (one combination of the ``block`` columns), factor F and level l::

        tuned_cost_b(F=l) = max_{runs r in b} y_r  -  max_{runs r in b with F=l} y_r

    A block counts for F only if at least two levels of F were run in it. Among those blocks, one
    where l was never run is *missing* for l (counted in ``blocks_missing``), never a zero cost.
    Per level, ``mean_cost`` and ``worst_cost`` are the mean and the maximum of tuned_cost_b over
    the blocks that count. The question is Sultan et al.'s (2024); this formula is this package's
    reading of it for unbalanced searches.

    Caveat: the measure favours levels that were run more often: each extra run of l in a block
    is one more chance to tune the other choices, so a level run 50 times looks cheaper than one
    run twice even if they are equally good. ``runs`` (runs at l in the counted blocks) is shown
    beside the costs for that reason; compare levels with similar ``runs``, or use
    ``averaged_cost`` on a balanced grid.

    Args:
        df: one row per run.
        metric: the score column (higher is better unless ``higher_is_better=False``).
        factors: the choices to cost (columns of ``df``).
        block: the columns a comparison is made within; empty for one block.
        teacher_col: a column with the teacher's score (constant within a block); if given, the
            costs are also divided by it per block and averaged (``mean_cost_frac``) or maximised
            (``worst_cost_frac``): the cost as a fraction of the teacher's score.

    Returns:
        One row per (factor, level) with columns ``factor, level, mean_cost, worst_cost, blocks,
        runs, blocks_missing`` and, with ``teacher_col``, ``mean_cost_frac, worst_cost_frac``.
        ``blocks`` is the number of blocks the cost is averaged over (0 gives NaN costs). Costs
        are in the metric's units and never negative.

    Raises:
        ValueError: a named column is missing, a column is both factor and block, or the
            teacher score varies within a block (add the teacher to the block).
    """
    factors, block = column_list(factors), column_list(block)
    _check(df, metric, factors, block, teacher_col)
    data = df[df[metric].notna()].copy()
    sign = 1.0 if higher_is_better else -1.0
    data["_y"] = sign * data[metric].astype(float)
    teacher_by_block = _teacher_scores(data, block, teacher_col) if teacher_col is not None else {}
    rows = [row for factor in factors for row in _factor_costs(data, factor, block, teacher_by_block)]
    if teacher_col is None:
        rows = [{k: v for k, v in row.items() if not k.endswith("_frac")} for row in rows]
    out = pd.DataFrame(rows)
    out["level"] = out["level"].astype(str)
    return out


def _teacher_scores(data: pd.DataFrame, block: list[str], teacher_col: str) -> dict:
    """The teacher's score of each block (NaN where none is logged)."""
    scores = {}
    for key, g in _blocks(data, block):
        t = g[teacher_col].astype(float).dropna()
        if len(t) and (t.max() - t.min()) > 1e-9:
            raise ValueError(
                f"teacher score {teacher_col!r} varies within block {key}: "
                f"{t.min():.4g} to {t.max():.4g}; add the teacher to the block"
            )
        scores[key] = float(t.iloc[0]) if len(t) else np.nan
    return scores


def _level_bests(data: pd.DataFrame, factor: str, block: list[str]):
    """(block key, its rows, the best ``_y`` per level of ``factor``) for each block that ran at
    least two levels of it: the blocks a tuned cost counts."""
    for key, g in _blocks(data, block):
        best_by_level = g.groupby(factor, observed=True)["_y"].max()
        if len(best_by_level) >= 2:
            yield key, g, best_by_level


def block_costs(df: pd.DataFrame, metric: str, factor: str, block: Sequence[str] | str = DEFAULT_BLOCK,
                *, higher_is_better: bool = True) -> pd.DataFrame:
    """``tuned_cost``'s per-block costs of one factor, before they are averaged: one row per block
    that counts and level run in it, with the block's columns, ``level`` (str) and ``cost`` (the
    metric's units, never negative). For an interval over blocks, where ``tuned_cost`` gives the
    mean and the maximum.

    Raises:
        ValueError: as ``tuned_cost``.
    """
    block = column_list(block)
    _check(df, metric, [factor], block)
    data = df[df[metric].notna()].copy()
    data["_y"] = (1.0 if higher_is_better else -1.0) * data[metric].astype(float)
    rows = []
    for key, _, best_by_level in _level_bests(data, factor, block):
        keys = dict(zip(block, key if isinstance(key, tuple) else (key,)))
        best = best_by_level.max()
        rows += [{**keys, "level": str(lv), "cost": float(best - y)} for lv, y in best_by_level.items()]
    return pd.DataFrame(rows, columns=[*block, "level", "cost"])


def _factor_costs(data: pd.DataFrame, factor: str, block: list[str], teacher_by_block: dict) -> list[dict]:
    """``tuned_cost``'s rows of one factor: per level, its costs over the blocks that count."""
    levels = observed_levels(data[factor])
    costs: dict = {lv: [] for lv in levels}
    fracs: dict = {lv: [] for lv in levels}
    runs = dict.fromkeys(levels, 0)
    missing = dict.fromkeys(levels, 0)
    for key, g, best_by_level in _level_bests(data, factor, block):
        best = best_by_level.max()
        count = g[factor].value_counts()
        teacher = teacher_by_block.get(key, np.nan)
        for lv in levels:
            if lv not in best_by_level.index:
                missing[lv] += 1
                continue
            cost = float(best - best_by_level[lv])
            costs[lv].append(cost)
            fracs[lv].append(cost / teacher if teacher and np.isfinite(teacher) else np.nan)
            runs[lv] += int(count[lv])
    rows = []
    for lv in levels:
        c = np.asarray(costs[lv], dtype=float)
        f = np.asarray(fracs[lv], dtype=float)
        finite = f[np.isfinite(f)]
        rows.append({
            "factor": factor,
            "level": lv,
            "mean_cost": c.mean() if len(c) else np.nan,
            "worst_cost": c.max() if len(c) else np.nan,
            "blocks": len(c),
            "runs": runs[lv],
            "blocks_missing": missing[lv],
            "mean_cost_frac": finite.mean() if len(finite) else np.nan,
            "worst_cost_frac": finite.max() if len(finite) else np.nan,
        })
    return rows


def averaged_cost(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str] | str,
    block: Sequence[str] | str = DEFAULT_BLOCK,
    *,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """The cost of each level averaged over the other factors' levels, for a complete grid.

    Replicates (seeds, or any column not named) are averaged first into cell means
    ``m(b, c, l)`` for block b, combination c of the other factors' levels and level l of F. Then::

        averaged_cost(F=l) = mean_{b, c} [ max_{l'} m(b, c, l') - m(b, c, l) ]

    and ``worst_cost`` is the maximum of the bracket. Unlike ``tuned_cost`` this does not favour
    levels run more often, but it needs every combination of block × factor levels to have at
    least one run (replicate counts may differ). The question is Sultan et al.'s (2024).

    Returns:
        Columns ``factor, level, mean_cost, worst_cost, blocks, cells``: ``blocks`` the number of
        blocks, ``cells`` the number of (block, other-factor combination) pairs averaged over.
        Costs are in the metric's units and never negative.

    Raises:
        ValueError: a named column is missing, or the design is not complete (the message gives
            the number of missing combinations and the first few).
    """
    factors, block = column_list(factors), column_list(block)
    _check(df, metric, factors, block)
    data = df[df[metric].notna()].copy()
    sign = 1.0 if higher_is_better else -1.0
    data["_y"] = sign * data[metric].astype(float)
    for col in block + factors:
        if isinstance(data[col].dtype, pd.CategoricalDtype):
            data[col] = data[col].cat.remove_unused_categories()

    means = data.groupby(block + factors, observed=True)["_y"].mean()
    if block:
        block_keys = list(data.groupby(block, observed=True).groups)
        block_keys = [k if isinstance(k, tuple) else (k,) for k in block_keys]
    else:
        block_keys = [()]
    levels = [observed_levels(data[f]) for f in factors]
    expected = [b + combo for b in block_keys for combo in itertools.product(*levels)]
    have = set(means.index if isinstance(means.index, pd.MultiIndex)
               else [(k,) for k in means.index])
    absent = [k for k in expected if k not in have]
    if absent:
        names = block + factors
        shown = "; ".join(
            ", ".join(f"{n}={v}" for n, v in zip(names, k)) for k in absent[:3]
        )
        raise ValueError(
            f"the design is not balanced: {len(absent)} of {len(expected)} combinations of "
            f"{', '.join(names)} have no run (e.g. {shown}); use tuned_cost instead"
        )

    rows = []
    for factor in factors:
        if means.index.nlevels == 1:  # a single factor and no block: one cell
            cells = means.to_frame().T
        else:
            cells = means.unstack(factor)  # (block × other factors) × levels of F
        gap = cells.max(axis=1).to_numpy()[:, None] - cells.to_numpy()
        n_blocks = len(block_keys)
        for j, lv in enumerate(cells.columns):
            g = gap[:, j]
            rows.append({
                "factor": factor,
                "level": str(lv),
                "mean_cost": float(g.mean()),
                "worst_cost": float(g.max()),
                "blocks": n_blocks,
                "cells": len(g),
            })
    return pd.DataFrame(rows)
