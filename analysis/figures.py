"""Figures of a study, as matplotlib Figures (never shown: the caller saves or embeds them).

Every function takes a tidy table (one row per run) and returns a ``matplotlib.figure.Figure``
drawn with seaborn on the non-interactive Agg backend. Raw means by level are descriptive: on an
unbalanced design (Distiller's, where ~70% of runs use mi) they are confounded with the other
choices, which is what the ANOVA and the cost tables are for.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.columns import observed_levels, require_columns  # noqa: E402

_STYLE = "whitegrid"


def _need(df: pd.DataFrame, *columns: str) -> None:
    require_columns(df.columns, [("", c) for c in columns])


def level_means(df: pd.DataFrame, metric: str, factor: str, ci: float = 0.95) -> pd.DataFrame:
    """Mean of ``metric`` per level of ``factor`` with a t-interval over runs.

    Returns columns ``level, mean, ci_low, ci_high, n`` in level order; the interval is
    ``mean ± t_{(1+ci)/2, n-1} · sd / sqrt(n)`` (NaN for a level with one run). It treats runs as
    independent, which they are not across datasets: read it as descriptive.
    """
    from scipy import stats

    _need(df, metric, factor)
    rows = []
    for lv in observed_levels(df[factor]):
        y = df.loc[df[factor] == lv, metric].dropna().to_numpy(dtype=float)
        n = len(y)
        mean = y.mean() if n else np.nan
        half = stats.t.ppf((1 + ci) / 2, n - 1) * y.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        rows.append({"level": str(lv), "mean": mean, "ci_low": mean - half,
                     "ci_high": mean + half, "n": n})
    return pd.DataFrame(rows)


def main_effects(df: pd.DataFrame, metric: str, factors: Sequence[str]) -> Figure:
    """One panel per factor: the mean ``metric`` per level with its 95% t-interval (see
    ``level_means``) and the number of runs under each level.

    Raises:
        ValueError: a column is missing or ``factors`` is empty.
    """
    factors = list(factors)
    if not factors:
        raise ValueError("main_effects needs at least one factor")
    _need(df, metric, *factors)
    with sns.axes_style(_STYLE):
        fig, axes = plt.subplots(
            1, len(factors), figsize=(3.2 * len(factors) + 0.8, 3.6), sharey=True, squeeze=False
        )
        for ax, factor in zip(axes[0], factors):
            stats_ = level_means(df, metric, factor)
            x = np.arange(len(stats_))
            lower = (stats_["mean"] - stats_["ci_low"]).fillna(0).to_numpy(dtype=float)
            upper = (stats_["ci_high"] - stats_["mean"]).fillna(0).to_numpy(dtype=float)
            means = stats_["mean"].to_numpy(dtype=float)
            ax.errorbar(x, means, yerr=[lower, upper], fmt="o", capsize=4,
                        color=sns.color_palette()[0])
            ax.set_xticks(x, [f"{lv}\n(n={n})" for lv, n in zip(stats_["level"], stats_["n"])])
            ax.set_xlim(-0.5, len(stats_) - 0.5)
            ax.set_title(factor)
            ax.set_xlabel("")
        axes[0][0].set_ylabel(f"mean {metric} (95% CI)")
        fig.suptitle(f"Main effects on {metric} (raw means; confounded if unbalanced)", fontsize=10)
        fig.tight_layout()
    return fig


def interaction_heatmap(
    df: pd.DataFrame,
    metric: str,
    row: str = "objective",
    col: str = "initialisation",
    block: Sequence[str] = (),
) -> Figure:
    """Heat-map of the mean ``metric`` per (``row`` level, ``col`` level) cell, runs annotated.

    With ``block`` columns, scores are first centred on their block mean, so that the map shows
    differences within blocks (a cell run mostly on an easy dataset does not look good for it).
    Empty cells are blank.

    Raises:
        ValueError: a column is missing.
    """
    _need(df, metric, row, col, *block)
    data = df.dropna(subset=[metric]).copy()
    value = metric
    if block:
        value = f"{metric} − block mean"
        block_mean = data.groupby(list(block), observed=True)[metric].transform("mean")
        data[value] = data[metric] - block_mean
    means = data.pivot_table(index=row, columns=col, values=value, aggfunc="mean", observed=True)
    counts = data.pivot_table(index=row, columns=col, values=value, aggfunc="size", observed=True)
    means = means.reindex(index=observed_levels(data[row]), columns=observed_levels(data[col]))
    counts = counts.reindex(index=means.index, columns=means.columns)
    annot = np.array(
        [[f"{m:.3f}\nn={int(n)}" if pd.notna(m) else "" for m, n in zip(mr, nr)]
         for mr, nr in zip(means.to_numpy(dtype=float), counts.fillna(0).to_numpy())],
        dtype=object,
    )
    with sns.axes_style("white"):
        fig, ax = plt.subplots(figsize=(1.4 * means.shape[1] + 2.5, 0.8 * means.shape[0] + 1.6))
        sns.heatmap(means.astype(float), annot=annot, fmt="", cmap="viridis", ax=ax,
                    cbar_kws={"label": f"mean {value}"}, annot_kws={"fontsize": 8})
        ax.set_title(f"{row} × {col}\nmean {value}", fontsize=10)
        fig.tight_layout()
    return fig


def cost_bars(cost_df: pd.DataFrame, value: str = "mean_cost") -> Figure:
    """Horizontal bars of a cost table (``analysis.cost``): one bar per (factor, level) with its
    ``value`` (mean cost), the ``worst_cost`` as a black tick, grouped and coloured by factor.
    Levels with no block (NaN cost) get no bar.

    Raises:
        ValueError: ``cost_df`` lacks factor, level or ``value``.
    """
    _need(cost_df, "factor", "level", value)
    data = cost_df.dropna(subset=[value]).reset_index(drop=True)
    labels = [f"{f} = {lv}" for f, lv in zip(data["factor"], data["level"])]
    factor_names = pd.unique(data["factor"])
    palette = dict(zip(factor_names, sns.color_palette(n_colors=len(factor_names))))
    with sns.axes_style(_STYLE):
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(data) + 1.4))
        y = np.arange(len(data))
        ax.barh(y, data[value], color=[palette[f] for f in data["factor"]])
        if "worst_cost" in data.columns and value != "worst_cost":
            ax.plot(data["worst_cost"], y, "|", color="black", markersize=10, label="worst block")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel(f"{value} (metric units)")
        ax.set_title("Cost of committing to a level")
        fig.tight_layout()
    return fig


def gain_by_size(
    df: pd.DataFrame,
    metric: str,
    size_col: str,
    hue: str,
    block: Sequence[str] = (),
    stat: str = "max",
    baseline=None,
) -> pd.DataFrame:
    """The gain of one ``hue`` level over ``baseline`` per training-set size, within blocks.

    Per block (one combination of ``block`` columns; the size is constant within a dataset) and
    ``hue`` level, runs are summarised by ``stat`` (``"max"``: the best-tuned score, ``"mean"``);
    the gain of a block is the other level's value minus the baseline's, over blocks that ran
    both; per size, the gains are averaged. ``hue`` must have two levels; ``baseline`` defaults
    to the first (``False`` for a bool column).

    Returns:
        One row per size: ``size_col``, ``blocks`` (that ran both levels), ``baseline_value`` and
        ``other_value`` (means over those blocks), ``gain`` (their difference, metric units),
        ``gain_min``, ``gain_max``, ``runs_baseline``, ``runs_other``; ``attrs`` hold ``baseline``
        and ``other``.

    Raises:
        ValueError: a column is missing, ``stat`` is unknown, ``size_col`` is not numeric, or
            ``hue`` does not have exactly two levels.
    """
    _need(df, metric, size_col, hue, *block)
    if stat not in ("mean", "max"):
        raise ValueError(f"stat {stat!r} is not allowed: use 'mean' or 'max'")
    sizes = pd.to_numeric(df[size_col], errors="coerce")
    if sizes.isna().any():
        raise ValueError(f"size column {size_col!r} is not numeric")
    data = df.assign(_size=sizes).dropna(subset=[metric])
    levels = observed_levels(data[hue])
    if len(levels) != 2:
        raise ValueError(f"{hue!r} has {len(levels)} level(s) {levels}: a gain needs exactly two")
    base = levels[0] if baseline is None else baseline
    if base not in levels:
        raise ValueError(f"baseline {base!r} is not a level of {hue!r}: {levels}")
    other = [lv for lv in levels if lv != base][0]
    keys = ["_size", *block]
    per = data.groupby([*keys, hue], observed=True)[metric].agg([stat, "size"]).reset_index()
    wide = per.pivot_table(index=keys, columns=hue, values=[stat, "size"], observed=True)
    wide = wide.dropna(subset=[(stat, base), (stat, other)])
    gain = wide[(stat, other)] - wide[(stat, base)]
    table = pd.DataFrame({
        "baseline_value": wide[(stat, base)], "other_value": wide[(stat, other)], "gain": gain,
        "runs_baseline": wide[("size", base)], "runs_other": wide[("size", other)],
    }).groupby(level="_size").agg(
        blocks=("gain", "size"), baseline_value=("baseline_value", "mean"),
        other_value=("other_value", "mean"), gain=("gain", "mean"), gain_min=("gain", "min"),
        gain_max=("gain", "max"), runs_baseline=("runs_baseline", "sum"),
        runs_other=("runs_other", "sum"),
    )
    table = table.rename_axis(size_col).reset_index()
    table["runs_baseline"] = table["runs_baseline"].astype(int)
    table["runs_other"] = table["runs_other"].astype(int)
    table.attrs.update(baseline=base, other=other, stat=stat)
    return table


def score_vs_train_size(
    df: pd.DataFrame,
    metric: str,
    size_col: str,
    hue: str,
    stat: str = "max",
    baseline=None,
    label: str | None = None,
    block: Sequence[str] = (),
) -> Figure:
    """Augmentation (or any two-level ``hue``) against training-set size, log x.

    Left: per size, the ``stat`` of ``metric`` (``"max"``: best-tuned, ``"mean"``) for each
    ``hue`` level, averaged over the blocks that ran both levels. Right: the gain, the other level
    minus ``baseline`` (default the first level, e.g. ``False`` = not augmented), with the range
    over blocks: whether the gain shrinks as data grows. See ``gain_by_size`` for the numbers.
    With ``label`` (e.g. the task column) each size is annotated with its label(s).

    Raises:
        ValueError: as ``gain_by_size``.
    """
    _need(df, metric, size_col, hue, *block, *([label] if label else []))
    table = gain_by_size(df, metric, size_col, hue, block, stat, baseline)
    base, other = table.attrs["baseline"], table.attrs["other"]
    x = table[size_col].to_numpy(dtype=float)
    with sns.axes_style(_STYLE):
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        colors = sns.color_palette()
        ax.plot(x, table["baseline_value"].to_numpy(dtype=float), "o-", color=colors[0],
                label=f"{hue}={base}")
        ax.plot(x, table["other_value"].to_numpy(dtype=float), "o-", color=colors[1],
                label=f"{hue}={other}")
        ax.set_xscale("log")
        ax.set_xlabel(f"{size_col} (log scale)")
        ax.set_ylabel(f"{stat} {metric}")
        ax.set_title(f"{stat} {metric} by training-set size")
        ax.legend(fontsize=8)
        y = table["gain"].to_numpy(dtype=float)
        err = [y - table["gain_min"].to_numpy(dtype=float),
               table["gain_max"].to_numpy(dtype=float) - y]
        ax2.axhline(0, color="grey", lw=0.8)
        ax2.errorbar(x, y, yerr=err, fmt="o-", color=colors[2], capsize=3)
        ax2.set_xscale("log")
        ax2.set_xlabel(f"{size_col} (log scale)")
        ax2.set_ylabel(f"gain in {stat} {metric}")
        ax2.set_title(f"{hue}={other} minus {hue}={base} (range over blocks)")
        if label:
            sizes = pd.to_numeric(df[size_col], errors="coerce")
            names = df.groupby(sizes)[label].agg(lambda s: "/".join(sorted(map(str, set(s)))))
            for xi, yi in zip(x, y):
                ax2.annotate(names[xi], (xi, yi), textcoords="offset points", xytext=(4, 4),
                             fontsize=8)
        fig.tight_layout()
    return fig
