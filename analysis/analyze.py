"""One call from a tidy table to the study's answers: ANOVA, cost of sub-optimal choices, best
recipe, and the figures, optionally written to a folder.

Used by ``study analyze`` (``study/cli/analysis.py``), ``analysis/notebooks/csv_report.ipynb`` and
``paper_figures/``; ``study recommend``'s ranking is ``analysis.recommend.recommend_for``. Blocks (dataset, student, ...) enter the ANOVA as block terms, the cost
tables as the units a comparison is made within, and the recipe as the units ranks are taken in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis import figures
from analysis.anova import anova_table
from analysis.columns import check_roles, column_list, require_columns
from analysis.cost import COST_COLUMNS, averaged_cost, tuned_cost
from analysis.recipe import best_recipe
from analysis.table import treatment_factors
from study.core.registry import did_you_mean

#: Columns ``study analyze --grid`` treats as factors when the runs record none (older stores);
#: otherwise the grid's own factors, as its runs record them (``analysis.table.grid_factors``).
GRID_FACTOR_CANDIDATES = ("objective", "initialisation", "augmentation", "student")
#: What ``study analyze --grid`` compares within, less any column that is a factor.
GRID_BLOCK = ("dataset", "student")
#: Leading columns of ``cost.csv``, in this order.
COST_CSV_COLUMNS = COST_COLUMNS


def parse_interactions(
    interactions: Sequence[str | Sequence[str]], factors: Sequence[str]
) -> list[tuple[str, str]]:
    """``["A:B", ("A", "C")]`` → ``[("A", "B"), ("A", "C")]``: two-way interactions only.

    Raises:
        ValueError: a term is not a pair, or names a column that is not a factor.
    """
    terms = []
    for term in interactions:
        names = tuple(n.strip() for n in (term.split(":") if isinstance(term, str) else term))
        if len(names) != 2 or not all(names):
            raise ValueError(f"interaction {term!r} is not of the form A:B (two factors)")
        for name in names:
            if name not in factors:
                raise ValueError(
                    f"interaction {':'.join(names)!r} names {name!r}, which is not a factor. "
                    f"Factors: {', '.join(factors)}.{did_you_mean(name, factors)}"
                )
        terms.append(names)
    return terms


def grid_design(
    df: pd.DataFrame,
    candidates: Sequence[str] | None = None,
    block: Sequence[str] = GRID_BLOCK,
) -> tuple[list[str], list[str]]:
    """The factors and block of a grid's tidy table (``analysis.table.load_runs``).

    Factors are the ``candidates`` that take more than one value; the block is ``block`` minus
    the factors, plus ``teacher`` when some dataset was distilled from several teachers.

    Raises:
        ValueError: no candidate varies (nothing to analyse).
    """
    if candidates is None:
        candidates = treatment_factors(df) or list(GRID_FACTOR_CANDIDATES)
    factors = [c for c in candidates if c in df.columns and df[c].nunique(dropna=True) > 1]
    if not factors:
        raise ValueError(
            f"no factor varies in this grid: each of {', '.join(candidates)} has a single level"
        )
    blocks = [b for b in block if b in df.columns and b not in factors]
    if "teacher" in df.columns and "teacher" not in factors:
        # One teacher per dataset is already inside the dataset block; several per dataset
        # are a separate comparison.
        within = df.groupby(blocks, observed=True)["teacher"].nunique() if blocks else None
        if within is not None and (within > 1).any():
            blocks.append("teacher")
    return factors, blocks


def _anova_blocks(df: pd.DataFrame, block: Sequence[str]) -> list[str]:
    """The block columns worth a term: more than one level, and not fixed by the blocks before
    them (a teacher per dataset adds no contrast beyond the dataset and would alias it)."""
    kept: list[str] = []
    for b in block:
        if df[b].nunique(dropna=True) < 2:
            continue
        if kept and (df.groupby(kept, observed=True)[b].nunique() <= 1).all():
            continue
        kept.append(b)
    return kept


def level_counts(df: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """Runs per level of each factor: columns ``factor, level, runs, share`` (share of all runs,
    a fraction). An uneven ``share`` within a factor means raw means by level are confounded."""
    rows = []
    for factor in column_list(factors):
        counts = df[factor].value_counts(sort=False)
        if isinstance(df[factor].dtype, pd.CategoricalDtype):
            counts = counts[counts > 0]
        for level, n in counts.items():
            rows.append({"factor": factor, "level": str(level), "runs": int(n),
                         "share": n / len(df) if len(df) else float("nan")})
    return pd.DataFrame(rows, columns=["factor", "level", "runs", "share"])


def design_summary(
    df: pd.DataFrame, metric: str, factors: Sequence[str] | str, block: Sequence[str] | str
) -> pd.DataFrame:
    """What the design looks like, one row per item (``item``, ``value``): runs, blocks, runs per
    block (min / median / max), configurations run out of those possible, and whether the design
    is complete (every block ran every configuration: the averaged cost needs it)."""
    factors, block = column_list(factors), column_list(block)
    data = df.dropna(subset=[metric])
    per_block = data.groupby(block, observed=True).size() if block else pd.Series([len(data)])
    configs = data.groupby(factors, observed=True).ngroups
    possible = 1
    for f in factors:
        possible *= data[f].nunique()
    cells = data.groupby(block + factors, observed=True).ngroups if block else configs
    rows = [
        ("runs", len(data)),
        ("blocks", len(per_block)),
        ("runs per block (min / median / max)",
         f"{per_block.min()} / {per_block.median():g} / {per_block.max()}"),
        ("configurations run / possible", f"{configs} / {possible}"),
        ("complete design", cells == len(per_block) * possible),
    ]
    return pd.DataFrame([(k, str(v)) for k, v in rows], columns=["item", "value"])


def interaction_pair(factors: Sequence[str]) -> tuple[str, str] | None:
    """The two factors the interaction heat-map crosses: objective × initialisation when both are
    factors, else the first two factors, else None."""
    if "objective" in factors and "initialisation" in factors:
        return "objective", "initialisation"
    return (factors[0], factors[1]) if len(factors) >= 2 else None


def analyze(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str] | str,
    block: Sequence[str] | str,
    out_dir: str | os.PathLike | None = None,
    teacher_col: str | None = None,
    interactions: Sequence[str | Sequence[str]] = (),
    *,
    min_blocks: int | None = None,
) -> dict[str, pd.DataFrame]:
    """Analyse a tidy table of runs: which KD choices matter, and what a wrong one costs.

    Args:
        df: one row per run (``analysis.table.load_runs`` or ``analysis.csvtable.load_csv``).
        metric: the score column, higher is better.
        factors: the KD choices (columns).
        block: the columns a comparison is made within (dataset, student, teacher, ...).
        out_dir: if given, the folder to write ``anova.csv``, ``cost.csv``, ``best.csv``,
            ``levels.csv`` and ``main_effects.png``, ``interaction.png`` (with two factors or
            more), ``cost.png`` into (created if needed).
        teacher_col: a column with the teacher's score, for costs as a fraction of it.
        interactions: factor interactions to add to the ANOVA, as ``"A:B"`` or ``("A", "B")``.
        min_blocks: passed to ``analysis.recipe.best_recipe`` (blocks a configuration must have
            been run in to be recommended; default half of the blocks).

    Returns:
        ``anova`` (``analysis.anova.anova_table``; blocks that vary, and are not fixed by the
        blocks before them, enter as block terms),
        ``cost`` (``analysis.cost.tuned_cost``), ``best`` (``analysis.recipe.best_recipe``'s
        table, best first), ``recipe`` (``factor, level`` of the best configuration),
        ``levels`` (``level_counts``) and, when the design is complete, ``averaged_cost``.

    Raises:
        ValueError: a column is missing or given two roles, an interaction names a non-factor,
            or no configuration was run in ``min_blocks`` blocks.
    """
    factors, block = column_list(factors), column_list(block)
    check_roles(df.columns, metric, factors, block)
    if teacher_col is not None:
        require_columns(df.columns, [("teacher score", teacher_col)])
    terms = parse_interactions(interactions, factors)
    data = df.dropna(subset=[metric])
    if data.empty:
        raise ValueError(f"no run has a {metric!r} value")

    anova_blocks = _anova_blocks(data, block)
    anova = anova_table(data, metric, factors, blocks=anova_blocks, interactions=terms)
    cost = tuned_cost(data, metric, factors, block, teacher_col=teacher_col)
    recipe_block = block
    if not recipe_block:  # one block: every run competes with every other
        data = data.assign(_all="all")
        recipe_block = ["_all"]
    recipe, best = best_recipe(data, metric, factors, recipe_block, min_blocks=min_blocks)
    results = {
        "anova": anova,
        "cost": cost,
        "best": best,
        "recipe": pd.DataFrame({"factor": list(recipe), "level": [str(v) for v in recipe.values()]}),
        "levels": level_counts(data, factors),
    }
    try:
        results["averaged_cost"] = averaged_cost(data, metric, factors, block)
    except ValueError:
        pass  # unbalanced: tuned_cost is the only cost there is

    if out_dir is not None:
        write_outputs(results, data, metric, factors, block, Path(out_dir))
    return results


def write_outputs(
    results: dict[str, pd.DataFrame],
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str],
    block: Sequence[str],
    out_dir: Path,
) -> list[Path]:
    """Write ``analyze``'s tables as CSV and its figures as PNG into ``out_dir``; return the
    paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    anova = results["anova"]
    path = out_dir / "anova.csv"
    anova.to_csv(path, index_label=anova.index.name or "term")
    written.append(path)
    cost = results["cost"]
    lead = list(COST_CSV_COLUMNS)
    path = out_dir / "cost.csv"
    cost[lead + [c for c in cost.columns if c not in lead]].to_csv(path, index=False)
    written.append(path)
    for name in ("best", "recipe", "levels", "averaged_cost"):
        if name in results:
            path = out_dir / f"{name}.csv"
            results[name].to_csv(path, index=False)
            written.append(path)

    figs = {"main_effects": figures.main_effects(df, metric, factors)}
    pair = interaction_pair(factors)
    if pair is not None:
        figs["interaction"] = figures.interaction_heatmap(df, metric, *pair, block=block)
    figs["cost"] = figures.cost_bars(cost)
    for name, fig in figs.items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
