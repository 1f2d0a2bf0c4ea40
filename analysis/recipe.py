"""The best single recipe: which configuration of KD choices to use everywhere.

A *configuration* is one combination of the factors' levels (e.g. objective × layer mapping ×
student initialisation). A *block* is one unit of comparison in which the configurations compete
on equal terms (a dataset, or dataset × student size × seed budget...). Scores are compared only
within a block, never across blocks, because a metric's level differs by dataset (CoLA's
Matthews correlation and SST-2's accuracy are not on one scale).

Procedure (``best_recipe``):

1. Replicate runs of the same configuration within a block (seeds, or any column that is
   neither a factor nor a block column) are averaged first, so that a configuration run with
   five seeds does not count five times.
2. Within each block the configurations are ranked by score (rank 1 = best; ties get the
   average rank, as in a Friedman test). The percentile rank ``(rank - 1) / (n - 1)`` maps
   ranks to [0, 1] whatever the number ``n`` of configurations in the block (0 = best,
   1 = worst); a block with a single configuration compares nothing and gives no percentile
   rank.
3. Across blocks, per configuration: ``mean_rank`` (raw), ``mean_pct_rank``, ``mean_regret``
   (block best minus its score, in metric units), ``within_1pt`` (fraction of its blocks where
   its regret is at most ``tolerance``; 0.01 is one point when the metric is a fraction in
   [0, 1]) and ``blocks`` (the number of blocks where it was run).
4. The winner is the configuration with the lowest ``mean_pct_rank`` among those run in at
   least ``min_blocks`` blocks (default: half of all blocks, rounded up, at least 1), so that a
   configuration tried in a single block cannot win by luck. ``mean_pct_rank`` rather than the
   raw ``mean_rank`` decides, because raw ranks are not comparable between blocks that ran
   different numbers of configurations (rank 3 of 3 is the worst; rank 3 of 80 is excellent).
   Ties are broken by lower ``mean_regret``, then by more blocks, then by the factors' level
   order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.columns import require_columns

VERSION = "1"

# A regret of exactly ``tolerance`` counts as within it: 0.80 - 0.79 is 0.010000000000000009 in
# binary floating point, and should still read as "within one point".
_FLOAT_SLACK = 1e-9

SUMMARY_COLUMNS = ("mean_rank", "mean_pct_rank", "mean_regret", "within_1pt", "blocks", "eligible")


def _check_args(df: pd.DataFrame, metric: str, factors: Sequence[str], block: Sequence[str]) -> tuple[list, list]:
    factors, block = list(factors), list(block)
    if not factors:
        raise ValueError("need at least one factor")
    if not block:
        raise ValueError("need at least one block column")
    overlap = set(factors) & set(block)
    if overlap:
        raise ValueError(f"columns {sorted(overlap)} are both factors and block columns")
    require_columns(df.columns, [("metric", metric), *(("factor", f) for f in factors),
                                 *(("block", b) for b in block)], error=KeyError)
    return factors, block


def configuration_scores(
    df: pd.DataFrame, metric: str, factors: Sequence[str], block: Sequence[str]
) -> pd.DataFrame:
    """One row per (block, configuration): the metric averaged over replicate runs.

    Rows with a missing metric are dropped (a failed run has no score to rank). Returns the block
    columns, the factor columns, ``metric`` and ``n_runs``.
    """
    factors, block = _check_args(df, metric, factors, block)
    runs = df.dropna(subset=[metric])
    out = (
        runs.groupby([*block, *factors], dropna=False, observed=True, sort=True)[metric]
        .agg(["mean", "size"])
        .rename(columns={"mean": metric, "size": "n_runs"})
        .reset_index()
    )
    return out


def _rank_within_blocks(
    scores: pd.DataFrame, metric: str, block: list[str], higher_is_better: bool
) -> pd.DataFrame:
    """Add rank, pct_rank and regret within each block to a (block, configuration) table."""
    out = scores.copy()
    signed = out[metric] if higher_is_better else -out[metric]
    groups = signed.groupby([out[c] for c in block], dropna=False, observed=True, sort=False)
    out["rank"] = groups.rank(ascending=False, method="average")
    n = groups.transform("size").astype(float)
    # A one-configuration block has no percentile rank: 0/0, left as NaN and skipped in means.
    out["pct_rank"] = (out["rank"] - 1.0) / (n - 1.0).where(n > 1)
    out["regret"] = groups.transform("max") - signed
    return out


def _default_min_blocks(n_blocks: int) -> int:
    return max(1, math.ceil(n_blocks / 2))


def best_recipe(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str],
    block: Sequence[str],
    *,
    tolerance: float = 0.01,
    min_blocks: int | None = None,
    higher_is_better: bool = True,
) -> tuple[dict, pd.DataFrame]:
    """The single configuration that ranks best across blocks (see the module docstring).

    Args:
        df: one row per run, with the ``metric``, ``factors`` and ``block`` columns.
        metric: the score column; higher is better unless ``higher_is_better=False``.
        factors: the columns whose combination is a configuration.
        block: the columns that define a unit of comparison (e.g. ``["dataset"]``).
        tolerance: the regret, in metric units, under which a configuration counts as as good
            as the block best in ``within_1pt`` (0.01 = one point for a fraction in [0, 1]).
        min_blocks: the number of blocks a configuration must have been run in to be eligible;
            default ``ceil(n_blocks / 2)``, at least 1.
        higher_is_better: the metric's direction; regrets are always >= 0.

    Returns:
        ``(recipe, table)``: ``recipe`` maps each factor to the winner's level; ``table`` has one
        row per configuration, the factor columns then ``mean_rank``, ``mean_pct_rank``,
        ``mean_regret`` (metric units), ``within_1pt`` (fraction of its blocks), ``blocks``
        (count) and ``eligible`` (``blocks >= min_blocks``), sorted so that eligible
        configurations come first, by ``mean_pct_rank`` (the winner is the first row).

    Raises:
        KeyError: a column is missing. ValueError: no configuration is eligible, or the table
        has no scored run.
    """
    factors, block = _check_args(df, metric, factors, block)
    scores = configuration_scores(df, metric, factors, block)
    if scores.empty:
        raise ValueError(f"no run has a {metric!r} value")
    ranked = _rank_within_blocks(scores, metric, block, higher_is_better)
    ranked["within"] = (ranked["regret"] <= tolerance + _FLOAT_SLACK).astype(float)

    n_blocks = len(ranked[block].drop_duplicates())
    if min_blocks is None:
        min_blocks = _default_min_blocks(n_blocks)

    table = (
        ranked.groupby(factors, dropna=False, observed=True, sort=True)
        .agg(
            mean_rank=("rank", "mean"),
            mean_pct_rank=("pct_rank", "mean"),
            mean_regret=("regret", "mean"),
            within_1pt=("within", "mean"),
            blocks=("rank", "size"),
        )
        .reset_index()
    )
    table["eligible"] = table["blocks"] >= min_blocks
    # Level order first (stable), then the ranking keys, so that ties resolve deterministically.
    table = table.sort_values(
        ["eligible", "mean_pct_rank", "mean_regret", "blocks"],
        ascending=[False, True, True, False],
        kind="mergesort",
        na_position="last",
    ).reset_index(drop=True)
    if not table["eligible"].any():
        raise ValueError(
            f"no configuration was run in at least min_blocks={min_blocks} of {n_blocks} blocks; "
            "pass a smaller min_blocks"
        )
    winner = table.iloc[0]
    recipe = {f: _python_scalar(winner[f]) for f in factors}
    return recipe, table


def _python_scalar(value):
    return value.item() if isinstance(value, np.generic) else value


def recommended_levels(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str],
    block: Sequence[str],
    *,
    min_blocks: int | None = None,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """For each factor on its own, the level that ranks best when the other factors are tuned.

    Per block and level, a level's score is its *best-tuned* score: the maximum, over the
    configurations with that level, of the replicate-averaged score (replicates are averaged
    before the maximum, so that seed noise does not favour levels run with more seeds). The
    levels of a factor are then ranked within each block as in ``best_recipe`` (percentile rank,
    0 = best) and the level with the lowest mean percentile rank wins, among levels run in at
    least ``min_blocks`` blocks (default: half of the blocks where the factor has at least one
    level, rounded up); ties go to the lower mean regret.

    Returns:
        One row per factor: ``factor``, ``level``, ``mean_pct_rank``, ``blocks`` (the number of
        blocks where the level was run) and ``mean_regret`` (the block's best-tuned score minus
        the level's, in metric units, averaged over its blocks).

    Raises:
        KeyError: a column is missing. ValueError: a factor has no eligible level.
    """
    factors, block = _check_args(df, metric, factors, block)
    scores = configuration_scores(df, metric, factors, block)
    rows = []
    for factor in factors:
        signed = scores[metric] if higher_is_better else -scores[metric]
        best_tuned = (
            signed.groupby([scores[c] for c in [*block, factor]], dropna=False, observed=True, sort=True)
            .max()
            .rename("signed")
            .reset_index()
        )
        ranked = _rank_within_blocks(best_tuned, "signed", block, higher_is_better=True)
        per_level = (
            ranked.groupby(factor, dropna=False, observed=True, sort=True)
            .agg(
                mean_pct_rank=("pct_rank", "mean"),
                blocks=("rank", "size"),
                mean_regret=("regret", "mean"),
            )
            .reset_index()
        )
        n_blocks = len(ranked[block].drop_duplicates())
        needed = _default_min_blocks(n_blocks) if min_blocks is None else min_blocks
        eligible = per_level[per_level["blocks"] >= needed].sort_values(
            ["mean_pct_rank", "mean_regret"], kind="mergesort", na_position="last"
        )
        if eligible.empty:
            raise ValueError(
                f"factor {factor!r}: no level was run in at least min_blocks={needed} blocks"
            )
        top = eligible.iloc[0]
        rows.append(
            {
                "factor": factor,
                "level": _python_scalar(top[factor]),
                "mean_pct_rank": float(top["mean_pct_rank"]),
                "blocks": int(top["blocks"]),
                "mean_regret": float(top["mean_regret"]),
            }
        )
    return pd.DataFrame(rows, columns=["factor", "level", "mean_pct_rank", "blocks", "mean_regret"])
