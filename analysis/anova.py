"""How much each factor of a grid contributes to a metric: plain functions over tidy DataFrames.

Every function takes the table of :func:`analysis.table.load_runs` (one row per cell) or any frame
with the named columns, fits nothing hidden, and returns a DataFrame.

- :func:`fit_ols` / :func:`anova_table`: additive linear model (+ chosen two-way interactions),
  type-II sums of squares, effect sizes partial eta squared and omega squared.
- :func:`mixed_effects`: the same fixed effects with a random intercept per dataset.
- :func:`bootstrap_ci`: per-level means with a seed (cluster) bootstrap interval
  (``analysis.bootstrap``).
- :func:`pairwise`: all pairs of levels, Holm-adjusted Welch t-tests or Tukey HSD.

Column names go into formulas as ``C(Q("name"))``, so names with dots or ``#`` work; tables show
the plain names.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multicomp import pairwise_tukeyhsd
from statsmodels.stats.multitest import multipletests

from analysis.bootstrap import cluster_draws
from analysis.columns import require_columns

_TERM = re.compile(r"C\(Q\((?P<quote>['\"])(?P<name>.*?)(?P=quote)\)\)")


def _term(column: str) -> str:
    return f"C(Q({column!r}))"


def plain_term(term: str) -> str:
    """``"C(Q('objective')):C(Q('seed'))"`` → ``"objective:seed"`` (other text is kept)."""
    return _TERM.sub(lambda m: m.group("name"), term)


def _as_levels(values: pd.Series) -> pd.Series:
    """A factor column as a categorical without unused levels (they would make the design singular)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.remove_unused_categories()
    return values.astype("category")


@dataclass(frozen=True)
class _Design:
    data: pd.DataFrame
    formula: str
    factors: tuple[str, ...]
    blocks: tuple[str, ...]
    interactions: tuple[tuple[str, str], ...]
    dropped: tuple[str, ...]


def _design(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str],
    blocks: Sequence[str],
    interactions: Sequence[tuple[str, str]],
) -> _Design:
    factors, blocks = tuple(factors), tuple(blocks)
    interactions = tuple(tuple(pair) for pair in interactions)
    for pair in interactions:
        if len(pair) != 2:
            raise ValueError(f"An interaction is a pair of columns, got {pair!r}.")
    # Marginality: an interaction's columns also enter as main effects.
    factors += tuple(
        c for pair in interactions for c in pair if c not in factors and c not in blocks
    )
    factors = tuple(dict.fromkeys(factors))
    used = list(dict.fromkeys([*factors, *blocks, *(c for pair in interactions for c in pair)]))
    require_columns(df.columns, [("metric", metric), *(("factor", c) for c in factors),
                                 *(("block", b) for b in blocks)])
    if metric in used:
        raise ValueError(f"Column {metric!r} is both the metric and a factor.")

    data = df[[metric, *used]].reset_index(drop=True)
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    n_missing = int(data.isna().any(axis=1).sum())
    if n_missing:
        warnings.warn(
            f"{n_missing} of {len(data)} rows have a missing {metric!r} or factor value and are "
            "left out of the fit.",
            UserWarning,
            stacklevel=3,
        )
        data = data.dropna()
    for column in used:
        data[column] = _as_levels(data[column])

    if data.empty:
        raise ValueError(f"No rows with a value for {metric!r} and every factor.")
    dropped = tuple(c for c in used if data[c].nunique() < 2)
    if dropped:
        warnings.warn(
            f"Dropping column(s) with a single level: {', '.join(dropped)} (no contrast to estimate).",
            UserWarning,
            stacklevel=3,
        )
    factors = tuple(c for c in factors if c not in dropped)
    blocks = tuple(c for c in blocks if c not in dropped and c not in factors)
    interactions = tuple(p for p in interactions if not set(p) & set(dropped))

    terms = [_term(c) for c in (*factors, *blocks)]
    terms += [f"{_term(a)}:{_term(b)}" for a, b in interactions]
    formula = f"Q({metric!r}) ~ {' + '.join(terms) or '1'}"
    return _Design(data, formula, factors, blocks, interactions, dropped)


def fit_ols(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str],
    blocks: Sequence[str] = (),
    interactions: Sequence[tuple[str, str]] = (),
):
    """Ordinary least squares of ``metric`` on categorical factors, blocks and interactions.

    Model: ``metric ~ C(f1) + ... + C(b1) + ... + C(a):C(b)`` with treatment coding; blocks
    (e.g. ``dataset``) enter exactly like factors and are only labelled differently by
    :func:`anova_table`. A column used in an interaction but not listed as a factor or block is
    added as a factor (marginality). Rows with a missing value are left out (warning). Columns
    with a single level in ``df`` are dropped with a ``UserWarning``, with the interactions that
    use them.

    Returns:
        ``statsmodels`` ``RegressionResultsWrapper``.

    Raises:
        ValueError: a column is missing (the message names it), or the model leaves no residual
            degrees of freedom (as many parameters as rows: add seeds or drop an interaction).
    """
    return _fit(_design(df, metric, factors, blocks, interactions))


def _fit(design: _Design):
    model = smf.ols(design.formula, data=design.data)
    n_obs, rank = model.exog.shape[0], np.linalg.matrix_rank(model.exog)
    if n_obs - rank < 1:
        raise ValueError(
            f"No residual degrees of freedom: {n_obs} rows and {rank} free parameters for "
            f"{design.formula!r}. Add replicates (seeds) or drop an interaction."
        )
    return model.fit()


def anova_table(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str],
    blocks: Sequence[str] = (),
    interactions: Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Type-II ANOVA of :func:`fit_ols` with effect sizes.

    For each term: ``sum_sq`` (type-II SS: the SS the term adds to a model holding every other
    term that does not contain it), ``df``, ``F`` = (SS / df) / MS_residual, ``p_value``, and

    - partial eta squared  η²_p = SS_effect / (SS_effect + SS_residual)  (Cohen 1973): the share
      of the variance not explained by the other terms that this term explains;
    - omega squared  ω² = (SS_effect − df_effect · MS_residual) / (SS_total + MS_residual)
      (Hays 1963; Olejnik & Algina 2003, Table 2), a less biased estimate of the share of the
      total variance, with SS_total = Σ (y − ȳ)² over the fitted rows. Under type-II SS the terms
      need not add up to SS_total (unbalanced designs), so the ω² need not add up either.

    Returns:
        DataFrame indexed by the plain term name (index name ``term``; ``"objective"``, ``"objective:initialisation"``,
        ``"Residual"``) with columns ``sum_sq, df, F, p_value, partial_eta_sq, omega_sq, kind``
        (``kind`` in ``factor/block/interaction/residual``). Rows: factors by partial η²
        descending, then blocks, then interactions (each by partial η² descending), Residual last.
        ``.attrs`` holds ``dropped`` (single-level columns left out), ``formula`` and ``n_obs``
        (rows fitted); :func:`fit_ols` with the same arguments gives the fitted model.

    Raises:
        ValueError: as :func:`fit_ols`.
    """
    design = _design(df, metric, factors, blocks, interactions)
    model = _fit(design)
    raw = anova_lm(model, typ=2)

    table = raw.rename(columns={"PR(>F)": "p_value"})[["sum_sq", "df", "F", "p_value"]].copy()
    table.index = [plain_term(str(t)) for t in table.index]
    ss_res = float(table.loc["Residual", "sum_sq"])
    ms_res = ss_res / float(table.loc["Residual", "df"])
    y = design.data[metric].to_numpy(dtype=float)
    ss_total = float(((y - y.mean()) ** 2).sum())

    is_effect = table.index != "Residual"
    table["partial_eta_sq"] = np.where(is_effect, table["sum_sq"] / (table["sum_sq"] + ss_res), np.nan)
    table["omega_sq"] = np.where(
        is_effect, (table["sum_sq"] - table["df"] * ms_res) / (ss_total + ms_res), np.nan
    )
    kinds = {c: "factor" for c in design.factors}
    kinds |= {c: "block" for c in design.blocks}
    kinds |= {f"{a}:{b}": "interaction" for a, b in design.interactions}
    kinds["Residual"] = "residual"
    table["kind"] = [kinds[t] for t in table.index]

    rank = {"factor": 0, "block": 1, "interaction": 2, "residual": 3}
    order = sorted(
        table.index,
        key=lambda t: (rank[kinds[t]], -np.nan_to_num(table.loc[t, "partial_eta_sq"], nan=-1.0)),
    )
    table = table.loc[order]
    table.index.name = "term"
    # attrs are deep-copied by every pandas operation, so they hold small values, not the model
    table.attrs["dropped"] = list(design.dropped)
    table.attrs["formula"] = design.formula
    table.attrs["n_obs"] = int(model.nobs)
    return table


def mixed_effects(
    df: pd.DataFrame, metric: str, factors: Sequence[str], group: str = "dataset"
) -> pd.DataFrame:
    """Linear mixed model: factors as fixed effects, a random intercept per level of ``group``.

    ``metric ~ C(f1) + C(f2) + ...`` with ``(1 | group)``, fitted by REML
    (``statsmodels.formula.api.mixedlm``; Laird & Ware 1982). Each dataset has its own baseline
    score, and the fixed effects are the shifts shared across datasets. ``group`` is removed from
    ``factors`` if listed there; single-level factors are dropped (warning).

    Returns:
        DataFrame indexed by term (``"Intercept"``, ``"objective[T.logit_kd]"``, ...,
        ``"group_var"``) with columns ``coef, std_err, z, p_value, ci_low, ci_high`` (95 % Wald
        intervals) and ``kind`` (``fixed``/``random``). The ``group_var`` row holds the variance
        of the random intercepts (same units as the metric, squared). ``.attrs`` holds
        ``group_var``, ``converged`` (bool) and ``warnings`` (the messages statsmodels raised
        while fitting, e.g. ``ConvergenceWarning``); a ``warnings`` column repeats them joined
        by "; " so they stay visible when the frame is printed.

    Raises:
        ValueError: a column is missing, or ``group`` has fewer than 2 levels.
    """
    require_columns(df.columns, [("group", group)])
    factors = [f for f in factors if f != group]
    df = df.reset_index(drop=True)
    design = _design(df, metric, factors, (), ())
    data = design.data.join(df[[group]])
    data = data[data[group].notna()]
    data[group] = _as_levels(data[group])
    n_groups = data[group].nunique()
    if n_groups < 2:
        raise ValueError(
            f"mixed_effects needs at least 2 levels of {group!r} for a random intercept, got "
            f"{n_groups}. Use anova_table for a single {group}."
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = smf.mixedlm(design.formula, data=data, groups=data[group].astype(str))
        result = model.fit(reml=True)
    messages = list(dict.fromkeys(str(w.message) for w in caught))

    fixed = result.fe_params.index
    ci = result.conf_int().loc[fixed]
    table = pd.DataFrame(
        {
            "coef": result.fe_params,
            "std_err": result.bse_fe,
            "z": result.tvalues.loc[fixed],
            "p_value": result.pvalues.loc[fixed],
            "ci_low": ci.iloc[:, 0],
            "ci_high": ci.iloc[:, 1],
            "kind": "fixed",
        }
    )
    group_var = float(result.cov_re.iloc[0, 0])
    table.loc["group_var"] = [group_var, np.nan, np.nan, np.nan, np.nan, np.nan, "random"]
    table.index = pd.Index([plain_term(str(t)) for t in table.index], name="term")
    table["warnings"] = "; ".join(messages)
    table.attrs["group_var"] = group_var
    table.attrs["converged"] = bool(getattr(result, "converged", True))
    table.attrs["warnings"] = messages
    return table


def _replicate_means(df: pd.DataFrame, metric: str, factor: str, seed_col: str):
    require_columns(df.columns, [("metric", metric), ("factor", factor), ("seed", seed_col)])
    data = df[[metric, factor, seed_col]].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data.dropna()
    data[factor] = _as_levels(data[factor])
    data[seed_col] = _as_levels(data[seed_col])
    return data


def bootstrap_ci(
    df: pd.DataFrame,
    metric: str,
    factor: str,
    seed_col: str = "seed",
    n_boot: int = 2000,
    ci: float = 0.95,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Mean ``metric`` per level of ``factor`` with a seed-cluster percentile bootstrap interval.

    Seeds are the replicates: each bootstrap draw resamples the S seed labels with replacement
    (the same draw for every level, since a seed labels one replicate of the whole grid) and
    takes, per level, the mean over all rows of the drawn seeds, counted with multiplicity. The
    interval is the (1 − ci)/2 and (1 + ci)/2 percentiles of the draws (Efron & Tibshirani 1993,
    ch. 13; resampling clusters rather than rows as in Davison & Hinkley 1997, §3.8; the draws
    are ``analysis.bootstrap.cluster_draws``). A draw in which a level has no rows is ignored
    for that level.

    Args:
        rng: the random stream; default ``np.random.default_rng(0)``, so a report is repeatable.

    Returns:
        DataFrame with columns ``level, mean, ci_low, ci_high, n`` (n = rows of that level), in
        the factor's level order. Same units as ``metric``.

    Raises:
        ValueError: a column is missing, fewer than 2 distinct seeds, ``n_boot`` < 1 or ``ci``
            outside (0, 1).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}.")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}.")
    data = _replicate_means(df, metric, factor, seed_col)
    seeds = list(data[seed_col].cat.categories)
    if len(seeds) < 2:
        raise ValueError(
            f"bootstrap_ci resamples seeds and needs at least 2 distinct {seed_col!r} values, "
            f"got {len(seeds)}."
        )
    rng = np.random.default_rng(0) if rng is None else rng
    levels = list(data[factor].cat.categories)

    grouped = data.groupby([seed_col, factor], observed=False)[metric]
    sums = grouped.sum().unstack(factor).reindex(index=seeds, columns=levels).to_numpy()  # (S, L)
    counts = grouped.count().unstack(factor).reindex(index=seeds, columns=levels).to_numpy()  # (S, L)
    draws = cluster_draws(len(seeds), n_boot, rng)  # (B, S) seed indices
    weights = np.stack([np.bincount(d, minlength=len(seeds)) for d in draws])  # (B, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ sums) / (weights @ counts)  # (B, L)
    alpha = (1 - ci) / 2
    low = np.nanquantile(boot, alpha, axis=0)
    high = np.nanquantile(boot, 1 - alpha, axis=0)
    total_n = counts.sum(axis=0)
    return pd.DataFrame(
        {
            "level": levels,
            "mean": sums.sum(axis=0) / total_n,
            "ci_low": low,
            "ci_high": high,
            "n": total_n.astype(int),
        }
    )


def pairwise(
    df: pd.DataFrame, metric: str, factor: str, method: str = "holm", alpha: float = 0.05
) -> pd.DataFrame:
    """Compare every pair of levels of ``factor`` on ``metric``.

    - ``method="holm"``: Welch's unequal-variance t-test per pair (``scipy.stats.ttest_ind``,
      ``equal_var=False``; Welch 1947), p-values adjusted by Holm's step-down method (Holm 1979;
      ``statsmodels.stats.multitest.multipletests``).
    - ``method="tukey"``: Tukey's HSD (Tukey 1949; ``pairwise_tukeyhsd``), which assumes equal
      variances and gives only family-wise p-values, so ``p_value`` is NaN there.

    Each level's rows are pooled over every other column, so pass one dataset at a time (or a
    metric already corrected for datasets) when datasets differ in baseline.

    Returns:
        DataFrame with columns ``level_a, level_b, diff, p_value, p_adjusted, reject``, one row
        per pair in level order, ``diff`` = mean_b − mean_a (units of ``metric``) and ``reject``
        = ``p_adjusted < alpha``.

    Raises:
        ValueError: unknown method or column, fewer than 2 levels, or a level with fewer than 2
            rows.
    """
    if method not in ("holm", "tukey"):
        raise ValueError(f"Unknown method {method!r}; use 'holm' or 'tukey'.")
    require_columns(df.columns, [("metric", metric), ("factor", factor)])
    data = df[[metric, factor]].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data.dropna()
    data[factor] = _as_levels(data[factor])
    levels = list(data[factor].cat.categories)
    if len(levels) < 2:
        raise ValueError(f"pairwise needs at least 2 levels of {factor!r}, got {len(levels)}.")
    values = {lv: data.loc[data[factor] == lv, metric].to_numpy(dtype=float) for lv in levels}
    small = [str(lv) for lv, v in values.items() if len(v) < 2]
    if small:
        raise ValueError(f"Levels of {factor!r} with fewer than 2 rows: {', '.join(small)}.")
    pairs = list(itertools.combinations(levels, 2))
    diffs = [values[b].mean() - values[a].mean() for a, b in pairs]

    if method == "holm":
        p_values = [stats.ttest_ind(values[b], values[a], equal_var=False).pvalue for a, b in pairs]
        reject, p_adjusted, _, _ = multipletests(p_values, alpha=alpha, method="holm")
    else:
        labels = np.array([str(v) for v in data[factor]])
        result = pairwise_tukeyhsd(data[metric].to_numpy(dtype=float), labels, alpha=alpha)
        # statsmodels orders pairs by its own sorted group labels; map them back to ours.
        groups = [str(g) for g in result.groupsunique]
        tukey_p = {
            frozenset((groups[i], groups[j])): p
            for (i, j), p in zip(itertools.combinations(range(len(groups)), 2), result.pvalues)
        }
        p_values = [np.nan] * len(pairs)
        p_adjusted = np.array([tukey_p[frozenset((str(a), str(b)))] for a, b in pairs])
        reject = p_adjusted < alpha

    return pd.DataFrame(
        {
            "level_a": [a for a, _ in pairs],
            "level_b": [b for _, b in pairs],
            "diff": diffs,
            "p_value": p_values,
            "p_adjusted": p_adjusted,
            "reject": np.asarray(reject, dtype=bool),
        }
    )


def numeric_factors(df: pd.DataFrame, factors: Sequence[str]) -> list[str]:
    """The ``factors`` whose levels are all numbers (temperatures, alpha, MI-alpha's alpha, a
    training-set size...) with at least two distinct values: they can be read as a slope."""
    out = []
    for factor in factors:
        values = pd.to_numeric(df[factor].astype(object), errors="coerce")
        if values.notna().all() and values.nunique() >= 2:
            out.append(factor)
    return out


def slope(
    df: pd.DataFrame,
    metric: str,
    factor: str,
    controls: Sequence[str] = (),
    blocks: Sequence[str] = (),
    ci: float = 0.95,
) -> pd.DataFrame:
    """A numeric factor as a regression term: the change of ``metric`` per unit of ``factor``.

    OLS of ``metric ~ factor + C(controls) + C(blocks)`` with ``factor`` as a number (e.g.
    ``prediction.student_temperature``, ``student_parameters``); the other factors and blocks enter
    as levels. Returns one row: ``factor``, ``slope`` (metric units per unit of the factor),
    ``std_err``, ``ci_low``, ``ci_high`` (the ``ci`` t-interval), ``p_value``, ``n_obs``,
    ``levels`` (distinct values of the factor). A slope assumes the effect is linear over the levels
    tried; compare it with the factor's ANOVA row, which does not.

    Raises:
        ValueError: a missing column, a factor that is not numeric or has one value, or no
            residual degrees of freedom.
    """
    require_columns(df.columns, [("metric", metric), ("factor", factor), *(("control", c) for c in controls),
                                 *(("block", b) for b in blocks)])
    data = df[[metric, factor, *controls, *blocks]].copy()
    data[factor] = pd.to_numeric(data[factor].astype(object), errors="coerce")
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data.dropna()
    if data[factor].nunique() < 2:
        raise ValueError(f"Factor {factor!r} needs at least two numeric values for a slope.")
    others = [c for c in (*controls, *blocks) if c != factor and data[c].nunique() > 1]
    formula = f"Q({metric!r}) ~ Q({factor!r})" + "".join(f" + {_term(c)}" for c in others)
    fit = smf.ols(formula, data=data).fit()
    if fit.df_resid < 1:
        raise ValueError(f"No residual degrees of freedom for a slope of {factor!r}: add seeds or drop controls.")
    name = f"Q({factor!r})"
    low, high = fit.conf_int(alpha=1 - ci).loc[name]
    return pd.DataFrame([{
        "factor": factor, "slope": fit.params[name], "std_err": fit.bse[name], "ci_low": low, "ci_high": high,
        "p_value": fit.pvalues[name], "n_obs": int(fit.nobs), "levels": int(data[factor].nunique()),
    }])
