"""The claim tests: each reads a grid's tidy table and returns a ``Finding`` with a verdict.

A test reads the grid's tidy table (``analysis.table.load_runs``) and returns the estimate in points
of the metric (score × 100), its interval, the partial η² of the factor (type-II ANOVA with the
grid's other factors and the dataset as terms), and a verdict with its reason. Its parameters are
its schema in ``analysis.claims.PARAMS``.

Verdicts follow one rule per test, stated in the finding's ``rule``: ``reproduced`` when the
interval lies on the paper's side and the test agrees, ``not reproduced`` when both say the other
side, ``inconclusive`` when the interval straddles, ``underpowered`` when the interval is decisive
but the test is not, or the design has fewer than ``analysis.smallsample.MIN_UNITS`` replicate
units, ``not testable`` when the grid's runs lack the factor or the design cannot answer the claim.

Tests of a mean over units (contrast, best_level, interaction, recipe_regret) reduce each
(dataset, seed) unit to one value and use a t-interval with G − 1 df and an exact sign-flip test
over units (``analysis.verdicts``; the percentile bootstrap undercovers at 4 to 8 units). Refitted
statistics (largest_share's η² gap, worst_cost) keep the cluster bootstrap
(``analysis.bootstrap.cluster_bootstrap_ci``, 500 draws, seeded), with the factor's F-test as the
test and the same floor on units. Every finding states its minimum detectable effect (80% power).

Adding a test = a schema in ``analysis.claims.PARAMS`` and one function decorated with
``@test("name")`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from analysis.anova import anova_table
from analysis.bootstrap import cluster_bootstrap_ci
from analysis.claims import Claim, Finding, claim_params
from analysis.cost import block_costs, tuned_cost
from analysis.lodo import grid_lodo
from analysis.power import mde as t_mde
from analysis.smallsample import ALPHA, MIN_UNITS, t_interval
from analysis.verdicts import UnitResult, decide, unit_values
from study.core import contract

UNIT = ("dataset", "seed")  # the replicate unit a bootstrap draw resamples


def _rng() -> np.random.Generator:
    """The seeded generator of a claim test (sign-flip patterns above 16 units)."""
    return np.random.default_rng(0)

TESTS: dict[str, Callable[[pd.DataFrame, Claim], Finding]] = {}


def test(name: str):
    """Register a claim test under ``name`` (a key of ``analysis.claims.PARAMS``):
    ``fn(df, claim) -> Finding``."""

    def register(fn):
        TESTS[name] = fn
        return fn

    return register


# --------------------------------------------------------------------------- helpers


def _points(x):
    return None if x is None else 100.0 * x


def _subset(df: pd.DataFrame, where: dict[str, Any] | None) -> pd.DataFrame:
    for col, value in (where or {}).items():
        values = value if isinstance(value, list) else [value]
        if col not in df.columns and col in contract.FACTOR_DEFAULTS:  # the grid does not vary it
            if str(contract.FACTOR_DEFAULTS[col]) in [str(v) for v in values]:
                continue
            return df.iloc[0:0]
        if col not in df.columns:
            raise KeyError(col)
        df = df[df[col].astype(str).isin([str(v) for v in values])]
    return df


def held_fixed(df: pd.DataFrame, factor: str) -> list[str]:
    """The grid's other factors (and seed, dataset): a comparison holds them fixed."""
    factors = list(df.attrs.get("factors") or [])
    cols = [c for c in ("dataset", "seed", *factors) if c in df.columns and c != factor]
    return list(dict.fromkeys(cols))


def _units(frame: pd.DataFrame) -> pd.Series:
    cols = [c for c in UNIT if c in frame.columns]
    return frame[cols].astype(str).agg("|".join, axis=1) if cols else pd.Series("all", index=frame.index)


def _eta(df: pd.DataFrame, factor: str, metric: str = "score") -> tuple[float | None, float | None]:
    """Partial η² and p of ``factor`` in a type-II ANOVA with the other factors and dataset."""
    others = [c for c in held_fixed(df, factor) if c not in ("seed",) and df[c].nunique() > 1]
    blocks = [c for c in others if c == "dataset"]
    factors = [factor] + [c for c in others if c != "dataset"]
    try:
        table = anova_table(df, metric, factors, blocks=blocks)
    except ValueError:
        return None, None
    if factor not in table.index:
        return None, None
    return float(table.loc[factor, "partial_eta_sq"]), float(table.loc[factor, "p_value"])


def _anova_p(factor: str, p: float | None) -> str:
    return "" if p is None else f"; type-II ANOVA F-test of {factor}: p {p:.3g}"


def _from_units(claim: Claim, res: UnitResult, reason: str, **kw) -> Finding:
    """A Finding carrying :func:`analysis.verdicts.decide`'s interval, verdict and power."""
    if res.n_units < MIN_UNITS:
        reason += (f"; only {res.n_units} replicate units: below {MIN_UNITS} the exact sign-flip test cannot "
                   "reach p < 0.05, so no verdict")
    elif res.verdict == "underpowered":
        reason += f"; the interval is decisive but the sign-flip test is not (p {res.p_value:.3g})"
    return Finding(claim, res.verdict, reason, res.rule, res.estimate, res.low, res.high, n_units=res.n_units,
                   mde=res.mde, paper_effect=claim_params(claim).paper_effect,
                   detectable=res.detectable, power_note=res.note, units=res.units, **kw)


def _interval(res: UnitResult) -> str:
    return f"95% t-interval {res.low:+.2f} to {res.high:+.2f}, sign-flip p {res.p_value:.3g}"


def _anova_mde(df: pd.DataFrame, factor: str, metric: str = "score") -> float | None:
    """The smallest difference (points) between two levels of ``factor`` that a t-test at the
    ANOVA's residual s.d. detects with 80% power over the G (dataset, seed) units, each unit's
    level mean resting on its runs at that level (Card et al. 2020: MDE from the fitted model)."""
    others = [c for c in held_fixed(df, factor) if c != "seed" and df[c].nunique() > 1]
    try:
        fit = anova_table(df, metric, [factor] + [c for c in others if c != "dataset"],
                          blocks=[c for c in others if c == "dataset"])
    except ValueError:
        return None
    if "Residual" not in fit.index or fit.loc["Residual", "df"] <= 0:
        return None
    resid_sd = float(np.sqrt(fit.loc["Residual", "sum_sq"] / fit.loc["Residual", "df"]))
    g = _units(df).nunique()
    runs_per_unit = len(df) / max(g, 1) / max(df[factor].nunique(), 1)  # runs per level per unit
    return 100 * t_mde(resid_sd * np.sqrt(2 / max(runs_per_unit, 1)), g)


def _not_testable(claim: Claim, reason: str) -> Finding:
    return Finding(claim, "not testable", reason)


# --------------------------------------------------------------------------- tests


@test("contrast")
def contrast(df: pd.DataFrame, claim: Claim) -> Finding:
    """Level ``a`` minus level ``b`` of ``factor``, paired within every combination of the grid's
    other factors, seed and dataset (optionally on a ``where`` subset); ``expect`` positive,
    negative or negligible (within ``margin`` points)."""
    p = claim_params(claim)
    factor, a, b = p.factor, str(p.a), str(p.b)
    if factor not in df.columns:
        return _not_testable(claim, f"grid {claim.grid} has no factor {factor!r}")
    try:
        data = _subset(df, p.where)
    except KeyError as exc:
        return _not_testable(claim, f"grid {claim.grid} has no column {exc.args[0]!r}")
    keys = held_fixed(data, factor)
    data = data.assign(_level=data[factor].astype(str))
    wide = data[data["_level"].isin([a, b])].pivot_table(index=keys, columns="_level", values="score",
                                                            aggfunc="mean", observed=True)
    if a not in wide.columns or b not in wide.columns:
        return _not_testable(claim, f"grid {claim.grid} did not run both {factor}={a} and {factor}={b}")
    wide = wide.dropna(subset=[a, b]).reset_index()
    if wide.empty:
        return _not_testable(claim, f"no matched pairs of {factor}={a} and {factor}={b}")
    diff = (wide[a] - wide[b]).to_numpy()
    res = decide(unit_values(wide, 100 * diff), p.expect, _rng(), p.margin, p.paper_effect)
    eta, pv = _eta(data, factor)
    per = wide.assign(diff=100 * diff).groupby("dataset", observed=True)["diff"].mean().rename("points")
    reason = (f"{factor}={a} − {factor}={b}: {res.estimate:+.2f} points over {len(diff)} matched pairs in "
              f"{res.n_units} units ({_interval(res)})" + _anova_p(factor, pv))
    return _from_units(claim, res, reason, eta_sq=eta, p_value=pv, n_runs=2 * len(diff), detail=per.reset_index())


@test("best_level")
def best_level(df: pd.DataFrame, claim: Claim) -> Finding:
    """``level`` of ``factor`` against the best other level: the gap between its mean score and
    the highest other level's mean, each centred within (dataset, seed) units, over units where
    every level ran. A "best of" statistic favours levels tried more often, so only complete
    units count."""
    p = claim_params(claim)
    factor, level = p.factor, str(p.level)
    if factor not in df.columns:
        return _not_testable(claim, f"grid {claim.grid} has no factor {factor!r}")
    data = _subset(df, p.where).assign(_level=lambda d: d[factor].astype(str))
    levels = sorted(data["_level"].unique())
    if level not in levels or len(levels) < 2:
        return _not_testable(claim, f"grid {claim.grid} did not run {factor}={level} beside another level")
    keys = held_fixed(data, factor)
    wide = data.pivot_table(index=keys, columns="_level", values="score", aggfunc="mean", observed=True)
    wide = wide.dropna().reset_index()
    scores = wide[levels].to_numpy()  # (rows, levels)
    j = levels.index(level)
    overall = scores.mean(axis=0)
    rival = int(np.argmax(np.where(np.arange(len(levels)) == j, -np.inf, overall)))
    res = decide(unit_values(wide, 100 * (scores[:, j] - scores[:, rival])), "positive", _rng(),
                 paper_effect=p.paper_effect)
    means = pd.Series(overall * 100, index=levels).sort_values(ascending=False)
    eta, pv = _eta(data, factor)
    ranking = ", ".join(f"{k} {v:.2f}" for k, v in means.items())
    reason = (f"{level} minus the best other level ({levels[rival]}, chosen on all units): {res.estimate:+.2f} "
              f"points in {res.n_units} units ({_interval(res)}); mean scores: {ranking}" + _anova_p(factor, pv))
    return _from_units(claim, res, reason, eta_sq=eta, p_value=pv, n_runs=int(scores.size),
                       detail=means.rename("mean_points").rename_axis(factor).reset_index())


@test("largest_share")
def largest_share(df: pd.DataFrame, claim: Claim) -> Finding:
    """``factor`` (a name, or a list read as one family: the estimate takes the family's largest)
    explains more variance than every other treatment factor: partial η² of the family minus the
    largest other factor's, with a cluster-bootstrap interval (units resampled, the ANOVA refitted
    per draw). Unit: η² (a fraction), not points."""
    p = claim_params(claim)
    family = p.factor if isinstance(p.factor, list) else [p.factor]
    factors = [f for f in (df.attrs.get("treatments") or []) if f in df.columns and df[f].nunique() > 1]
    mine = [f for f in family if f in factors]
    rest = [f for f in factors if f not in family]
    if not mine:
        return _not_testable(claim, f"grid {claim.grid} does not vary {', '.join(family)}")
    if not rest:
        return _not_testable(claim, f"grid {claim.grid} varies only {', '.join(mine)}: no other factor "
                                    "to compare with")
    blocks = ["dataset"] if df["dataset"].nunique() > 1 else []
    data = df.reset_index(drop=True)
    units = _units(data)

    def shares(frame):
        table = anova_table(frame, "score", factors, blocks=blocks)
        return table.loc[[f for f in factors if f in table.index], "partial_eta_sq"]

    def gap_of(s):
        ours, others = s.reindex(mine).dropna(), s.reindex(rest).dropna()
        if ours.empty or others.empty:
            return None
        return float(ours.max() - others.max())

    full = shares(data)

    def gap(rows):
        try:
            return gap_of(shares(data.iloc[rows]))
        except (ValueError, np.linalg.LinAlgError):
            return None

    low, high = cluster_bootstrap_ci(units, gap, n_boot=p.n_boot)
    est = gap_of(full)
    rule = ("reproduced if the interval of the largest η² among "
            f"{', '.join(mine)} minus the largest η² among the other factors is above 0; not reproduced if below")
    verdict = "reproduced" if low > 0 else "not reproduced" if high < 0 else "inconclusive"
    ftest = anova_table(data, "score", factors, blocks=blocks)["p_value"]
    top = str(full.reindex(mine).idxmax() if verdict != "not reproduced" else full.reindex(rest).idxmax())
    g = units.nunique()
    rule += (f"; the decisive factor's F-test must reject at α = {ALPHA:g} too (else underpowered), "
             f"on at least {MIN_UNITS} units")
    listing = ", ".join(f"{k} {v:.2f}" for k, v in full.sort_values(ascending=False).items())
    reason = (f"partial η²: {listing}; difference {est:+.2f} (95% cluster-bootstrap interval {low:+.2f} to "
              f"{high:+.2f}); F-test of {top}: p {ftest[top]:.3g}")
    if verdict != "inconclusive" and (g < MIN_UNITS or ftest[top] >= ALPHA):
        verdict = "underpowered"
        reason += (f"; only {g} units (a percentile bootstrap over so few undercovers)" if g < MIN_UNITS
                   else "; the interval and the F-test disagree")
    floor = _anova_mde(data, top)
    note = "" if floor is None else f"detects a difference of {floor:.2f} points between two levels of {top}"
    return Finding(claim, verdict, reason, rule, est, low, high, unit="η²", eta_sq=float(full.reindex(mine).max()),
                   p_value=float(ftest[top]), n_units=g, n_runs=len(data), mde=floor,
                   mde_unit=f"points ({top})", power_note=note,
                   detail=full.rename("partial_eta_sq").rename_axis("factor").reset_index())


@test("worst_cost")
def worst_cost(df: pd.DataFrame, claim: Claim) -> Finding:
    """The worst-case cost of a sub-optimal choice, in % of the best score: per (dataset, seed)
    unit and per ``factors`` entry, the best score minus the best score with that factor fixed at
    its worst level (``analysis.cost.tuned_cost``, the others tuned), divided by the best score;
    the estimate is the largest over factors of the mean over units, its interval the t-interval
    (G − 1 df) of that factor's per-unit costs at its worst level (the factor and level chosen on
    the data, so a little optimistic). Compared with the paper's ``published`` value (%):
    reproduced when that value lies inside our interval, on at least ``MIN_UNITS`` units."""
    p = claim_params(claim)
    factors = [f for f in p.factors if f in df.columns and df[f].nunique() > 1]
    if not factors:
        return _not_testable(claim, f"grid {claim.grid} varies none of {', '.join(p.factors)}")
    data = df.reset_index(drop=True)
    block = [c for c in UNIT if c in data.columns]
    best = data.groupby(block, observed=True)["score"].transform("max") if block else data["score"].max()
    rel = data.assign(_rel=data["score"] / best)
    costs = tuned_cost(rel, "_rel", factors, block=block)
    full = costs.groupby("factor")["mean_cost"].max() * 100  # worst level, mean over units
    worst = str(full.idxmax())
    level = costs[costs["factor"] == worst].sort_values("mean_cost").iloc[-1]["level"]
    per_unit = block_costs(rel, "_rel", worst, block)
    per_unit = 100 * per_unit.loc[per_unit["level"] == level, "cost"]  # % of best, one value per unit
    est = float(full.max())
    low, high = t_interval(per_unit.to_numpy()) if len(per_unit) > 1 else (est, est)
    published = p.published
    rule = (f"reproduced if the published {published:g}% lies inside our 95% t-interval over units (G − 1 df) "
            f"of the worst factor's worst-level cost; otherwise not reproduced (larger or smaller here)")
    verdict = "reproduced" if low - 1e-9 <= published <= high + 1e-9 else "not reproduced"
    listing = ", ".join(f"{k} {v:.2f}%" for k, v in full.sort_values(ascending=False).items())
    reason = (f"worst-level cost (others tuned), mean over units: {listing}; the largest {est:.2f}% "
              f"({worst} = {level}; 95% t-interval {low:.2f} to {high:.2f} over {len(per_unit)} units) "
              f"against the published {published:g}%")
    g = len(per_unit)
    rule += f"; at least {MIN_UNITS} units (else underpowered)"
    if g < MIN_UNITS:
        verdict = "underpowered"
        reason += f"; only {g} units"
    floor = _anova_mde(data, worst)
    floor = None if floor is None else floor / (100 * float(data["score"].max())) * 100  # points -> % of best
    detectable = None if floor is None else bool(published >= floor)
    return Finding(claim, verdict, reason, rule, est, low, high, unit="% of best", n_units=g,
                   n_runs=len(data), mde=floor, mde_unit=f"% of best ({worst})", paper_effect=published,
                   detectable=detectable,
                   detail=full.rename("worst_level_cost_pct").rename_axis("factor").reset_index())


@test("recipe_regret")
def recipe_regret(df: pd.DataFrame, claim: Claim) -> Finding:
    """One configuration (``recipe``: factor → level, the others tuned) against the best per
    (dataset, seed) unit: its regret in points, beside the regret of the average configuration.
    Reproduced when the recipe's regret interval lies below ``margin`` points."""
    p = claim_params(claim)
    recipe = {k: str(v) for k, v in p.recipe.items()}
    missing = [k for k in recipe if k not in df.columns]
    if missing:
        return _not_testable(claim, f"grid {claim.grid} has no factor {', '.join(missing)}")
    data = df.reset_index(drop=True)
    block = [c for c in UNIT if c in data.columns]
    best = data.groupby(block, observed=True)["score"].transform("max")
    is_recipe = np.logical_and.reduce([data[k].astype(str) == v for k, v in recipe.items()])
    if not is_recipe.any():
        return _not_testable(claim, f"grid {claim.grid} never ran the recipe {recipe}")
    data = data.assign(_regret=best - data["score"], _recipe=is_recipe)
    per_unit = data.groupby(block, observed=True).agg(
        recipe=("_regret", lambda s: s[data.loc[s.index, "_recipe"]].min()),
        average=("_regret", "mean")).reset_index()
    r, avg = per_unit["recipe"].to_numpy(), per_unit["average"].to_numpy()
    margin = p.margin
    # the margin minus the regret, expected positive: reproduced when the regret is below the margin
    res = decide(unit_values(per_unit, margin - 100 * r), "positive", _rng(), paper_effect=p.paper_effect)
    res.estimate, res.low, res.high = margin - res.estimate, margin - res.high, margin - res.low
    res.rule = (f"reproduced if the recipe's 95% t-interval of regret (G − 1 df) lies below {margin:g} points and "
                f"an exact sign-flip test over units rejects {margin:g} at α = {ALPHA:g}; not reproduced if it "
                f"lies above and the test rejects; at least {MIN_UNITS} units")
    reason = (f"regret of {', '.join(f'{k}={v}' for k, v in recipe.items())} (others tuned): {res.estimate:.2f} "
              f"points in {res.n_units} units (95% t-interval {res.low:.2f} to {res.high:.2f}, sign-flip p "
              f"{res.p_value:.3g}); an average configuration's: {_points(avg.mean()):.2f}")
    return _from_units(claim, res, reason, n_runs=len(data), detail=per_unit.assign(recipe=100 * r, average=100 * avg))


@test("interaction")
def interaction(df: pd.DataFrame, claim: Claim) -> Finding:
    """Does ``a`` − ``b`` of ``factor`` grow as ``by`` goes from ``high`` to ``low``? The estimate
    is the contrast at ``by=low`` minus the contrast at ``by=high``, paired within every unit and
    combination of the other factors (Distiller: augmentation helps most with small training
    sets). Reproduced when its interval lies above 0."""
    p = claim_params(claim)
    factor, a, b, by = p.factor, str(p.a), str(p.b), p.by
    low_level, high_level = str(p.low), str(p.high)
    for col in (factor, by):
        if col not in df.columns:
            return _not_testable(claim, f"grid {claim.grid} has no factor {col!r}")
    data = df.assign(_level=df[factor].astype(str), _by=df[by].astype(str))
    keys = [k for k in held_fixed(data, factor) if k != by]
    wide = data.pivot_table(index=keys, columns=["_by", "_level"], values="score", aggfunc="mean",
                            observed=True)
    need = [(low_level, a), (low_level, b), (high_level, a), (high_level, b)]
    if any(n not in wide.columns for n in need):
        return _not_testable(claim, f"grid {claim.grid} does not cross {factor} ({a}, {b}) with {by} "
                                    f"({low_level}, {high_level})")
    wide = wide[need].dropna()
    if wide.empty:
        return _not_testable(claim, "no unit ran all four combinations")
    small = (wide[need[0]] - wide[need[1]]).to_numpy()
    large = (wide[need[2]] - wide[need[3]]).to_numpy()
    diff = small - large
    res = decide(unit_values(wide.reset_index(), 100 * diff), "positive", _rng(), paper_effect=p.paper_effect)
    reason = (f"{factor}={a} − {b}: {_points(small.mean()):+.2f} points at {by}={low_level}, "
              f"{_points(large.mean()):+.2f} at {by}={high_level}; difference {res.estimate:+.2f} "
              f"in {res.n_units} units ({_interval(res)})")
    return _from_units(claim, res, reason, n_runs=4 * len(diff))


@test("recommender")
def recommender(df: pd.DataFrame, claim: Claim) -> Finding:
    """A recommender for a new dataset (AutoDistiller): leave-one-dataset-out regret
    (``analysis.recommend.grid_lodo``, target the score relative to the teacher) of the
    recommender minus that of the best single recipe, in points of the ratio. Reproduced when
    the recommender's mean regret is below both the best single recipe's and a random pick's;
    with fewer than ``min_datasets`` datasets, inconclusive (one training dataset says little)."""
    p = claim_params(claim)
    try:
        table = grid_lodo(df, seed=0)
    except (ValueError, KeyError) as exc:
        return _not_testable(claim, f"leave-one-dataset-out is not possible here: {' '.join(str(exc).split())}")
    mean = table[table["dataset"] == "mean"].iloc[0]
    rec, recipe, rand = (100 * float(mean[c]) for c in ("regret_recommender", "regret_best_recipe", "regret_random"))
    n = int((table["dataset"] != "mean").sum())
    need = p.min_datasets
    rule = (f"reproduced if the recommender's mean regret is below both the best single recipe's and a random "
            f"pick's, on at least {need} held-out datasets")
    if n < need:
        verdict = "inconclusive"
    else:
        verdict = "reproduced" if rec < recipe and rec < rand else "not reproduced"
    reason = (f"mean regret over {n} held-out datasets, in ratio points: recommender {rec:.2f}, "
              f"best single recipe {recipe:.2f}, random pick {rand:.2f}")
    detail = table[["dataset", "regret_recommender", "regret_best_recipe", "regret_random"]].copy()
    for c in detail.columns[1:]:
        detail[c] = 100 * detail[c].astype(float)
    return Finding(claim, verdict, reason, rule, rec - recipe, None, None, unit="ratio points",
                   n_units=n, n_runs=len(df), detail=detail)


@test("describe")
def describe(df: pd.DataFrame, claim: Claim) -> Finding:
    """No testable statement (e.g. a guideline whose content the abstract does not give): the
    grid's type-II ANOVA over its treatment factors, reported without a verdict."""
    factors = [f for f in (df.attrs.get("treatments") or []) if f in df.columns and df[f].nunique() > 1]
    if not factors:
        return _not_testable(claim, f"grid {claim.grid} varies no treatment factor")
    blocks = ["dataset"] if df["dataset"].nunique() > 1 else []
    table = anova_table(df, "score", factors, blocks=blocks)
    rows = table[table["kind"] == "factor"]
    listing = ", ".join(f"{t} η² {r.partial_eta_sq:.2f} (p {r.p_value:.2g})" for t, r in rows.iterrows())
    means = []
    for f in factors:
        m = (100 * df.groupby(f, observed=True)["score"].mean()).round(2)
        means.append(f"{f}: " + ", ".join(f"{k} {v:.2f}" for k, v in m.items()))
    reason = f"{claim_params(claim).why}. Measured: {listing}; mean scores {'; '.join(means)}"
    return Finding(claim, "not testable", reason, n_units=_units(df).nunique(), n_runs=len(df),
                   detail=table.reset_index()[["term", "partial_eta_sq", "p_value", "kind"]])
