"""The seed studies' claims, tested on our own grids: an estimate, a 95% interval and a verdict.

Claims are data (``analysis/claims.yaml``): each names the paper, the claim as its abstract states
it, the grid that tests it, a *test* from ``TESTS`` and the test's parameters. A test reads the
grid's tidy table (``analysis.table.load_runs``) and returns a ``Finding``: the estimate in
points of the metric (score × 100), its interval, the partial η² of the factor (type-II ANOVA
with the grid's other factors and the dataset as terms), and a verdict with its reason.

Verdicts follow one rule per test, stated in the finding's ``rule``: ``reproduced`` when the
interval lies on the paper's side, ``not reproduced`` when it lies on the other side,
``inconclusive`` when it straddles (too few seeds or datasets at this scale), ``not testable``
when the grid's runs lack the factor or the design cannot answer the claim (e.g. too few
datasets), ``not run`` when the store holds no finished run of the claim's grid, and
``incomplete`` when the grid stopped part-way (``evaluate``'s ``expected``).

Intervals come from a cluster bootstrap: the replicate units are the (dataset, seed) pairs of the
grid, resampled with replacement (2,000 draws, ``numpy.random.default_rng(0)``), every comparison
made within a unit. Rerunning a grid on CPU gives the same runs, so the same table.

Adding a test = one function decorated with ``@test("name")``; adding a claim = a YAML entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from study.core.errors import StudyConfigError
from study.core.registry import lookup

CLAIMS_FILE = Path(__file__).resolve().parent / "claims.yaml"
UNIT = ("dataset", "seed")  # the replicate unit a bootstrap draw resamples
N_BOOT = 2000
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not testable", "not run", "incomplete")


@dataclass(frozen=True)
class Claim:
    """One claim: ``id``, ``paper``, ``statement`` (as the paper's abstract states it), ``grid``,
    ``test`` (a name in ``TESTS``) and its ``params``."""

    id: str
    paper: str
    statement: str
    grid: str
    test: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    """What a test found. ``estimate``, ``ci_low``, ``ci_high`` in points (score × 100) unless
    ``unit`` says otherwise; ``eta_sq``: partial η² of the factor (None when not computed);
    ``n_units``: replicate units (dataset × seed) the estimate rests on."""

    claim: Claim
    verdict: str
    reason: str
    rule: str = ""
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = "points"
    eta_sq: float | None = None
    p_value: float | None = None
    n_units: int = 0
    n_runs: int = 0
    detail: pd.DataFrame | None = None


TESTS: dict[str, Callable[[pd.DataFrame, Claim], Finding]] = {}


def test(name: str):
    """Register a claim test under ``name``: ``fn(df, claim) -> Finding``."""

    def register(fn):
        TESTS[name] = fn
        return fn

    return register


def load_claims(path: str | Path = CLAIMS_FILE) -> list[Claim]:
    """The claims declared in ``path`` (a YAML list).

    Raises:
        StudyConfigError: a missing file, an entry without a required key, or an unknown test
            (with a did-you-mean).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"claims file {path} does not exist")
    docs = yaml.safe_load(path.read_text())
    if not isinstance(docs, list):
        raise StudyConfigError(f"{path}: expected a YAML list of claims, got {type(docs).__name__}")
    claims = []
    for i, doc in enumerate(docs):
        missing = [k for k in ("id", "paper", "statement", "grid", "test") if k not in (doc or {})]
        if missing:
            raise StudyConfigError(f"{path}: claim {i} lacks {', '.join(missing)}")
        lookup(TESTS, doc["test"], f"claim test (claim {doc['id']!r})")
        claims.append(Claim(doc["id"], doc["paper"], " ".join(str(doc["statement"]).split()), doc["grid"],
                            doc["test"], dict(doc.get("params") or {})))
    return claims


# --------------------------------------------------------------------------- helpers


def _points(x):
    return None if x is None else 100.0 * x


def _subset(df: pd.DataFrame, where: dict[str, Any] | None) -> pd.DataFrame:
    for col, value in (where or {}).items():
        if col not in df.columns:
            raise KeyError(col)
        values = value if isinstance(value, list) else [value]
        df = df[df[col].astype(str).isin([str(v) for v in values])]
    return df


def _others(df: pd.DataFrame, factor: str) -> list[str]:
    """The grid's other factors (and seed, dataset): a comparison holds them fixed."""
    factors = list(df.attrs.get("factors") or [])
    cols = [c for c in ("dataset", "seed", *factors) if c in df.columns and c != factor]
    return list(dict.fromkeys(cols))


def _units(frame: pd.DataFrame) -> pd.Series:
    cols = [c for c in UNIT if c in frame.columns]
    return frame[cols].astype(str).agg("|".join, axis=1) if cols else pd.Series("all", index=frame.index)


def _cluster_boot(units: pd.Series, stat: Callable[[np.ndarray], float], n_boot: int = N_BOOT,
                  seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``stat(row_indices)`` over cluster-bootstrap draws of ``units``."""
    import warnings

    rng = np.random.default_rng(seed)
    labels = units.to_numpy()
    groups = {u: np.flatnonzero(labels == u) for u in pd.unique(labels)}
    keys = list(groups)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(keys), size=len(keys))
        rows = np.concatenate([groups[keys[k]] for k in pick])
        with warnings.catch_warnings():  # a draw may hold one dataset: the ANOVA says so each time
            warnings.simplefilter("ignore", UserWarning)
            value = stat(rows)
        if value is not None and np.isfinite(value):
            draws.append(value)
    if not draws:
        return float("nan"), float("nan")
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def _eta(df: pd.DataFrame, factor: str, metric: str = "score") -> tuple[float | None, float | None]:
    """Partial η² and p of ``factor`` in a type-II ANOVA with the other factors and dataset."""
    from analysis.anova import anova_table

    others = [c for c in _others(df, factor) if c not in ("seed",) and df[c].nunique() > 1]
    blocks = [c for c in others if c == "dataset"]
    factors = [factor] + [c for c in others if c != "dataset"]
    try:
        table = anova_table(df, metric, factors, blocks=blocks)
    except ValueError:
        return None, None
    if factor not in table.index:
        return None, None
    return float(table.loc[factor, "partial_eta_sq"]), float(table.loc[factor, "p_value"])


def _not_testable(claim: Claim, reason: str) -> Finding:
    return Finding(claim, "not testable", reason)


def _sided(claim: Claim, low: float, high: float, expect: str, margin: float = 0.0) -> tuple[str, str]:
    """The verdict for an interval [low, high] (points) against the expected sign."""
    if expect == "negligible":
        rule = f"reproduced if the 95% interval lies within ±{margin:g} points, not reproduced if it excludes that band"
        if -margin <= low and high <= margin:
            return "reproduced", rule
        if low > margin or high < -margin:
            return "not reproduced", rule
        return "inconclusive", rule
    sign = 1 if expect == "positive" else -1
    rule = f"reproduced if the 95% interval is above {margin:g} points" if sign > 0 else \
        f"reproduced if the 95% interval is below {-margin:g} points"
    rule += "; not reproduced if it lies wholly on the other side of 0"
    lo, hi = sorted((sign * low, sign * high))
    if lo > margin:
        return "reproduced", rule
    if hi < 0:
        return "not reproduced", rule
    return "inconclusive", rule


# --------------------------------------------------------------------------- tests


@test("contrast")
def contrast(df: pd.DataFrame, claim: Claim) -> Finding:
    """Level ``a`` minus level ``b`` of ``factor``, paired within every combination of the grid's
    other factors, seed and dataset (optionally on a ``where`` subset); ``expect`` positive,
    negative or negligible (within ``margin`` points)."""
    p = claim.params
    factor, a, b = p["factor"], str(p["a"]), str(p["b"])
    if factor not in df.columns:
        return _not_testable(claim, f"grid {claim.grid} has no factor {factor!r}")
    try:
        data = _subset(df, p.get("where"))
    except KeyError as exc:
        return _not_testable(claim, f"grid {claim.grid} has no column {exc.args[0]!r}")
    keys = _others(data, factor)
    data = data.assign(_level=data[factor].astype(str))
    wide = data[data["_level"].isin([a, b])].pivot_table(index=keys, columns="_level", values="score",
                                                            aggfunc="mean", observed=True)
    if a not in wide.columns or b not in wide.columns:
        return _not_testable(claim, f"grid {claim.grid} did not run both {factor}={a} and {factor}={b}")
    wide = wide.dropna(subset=[a, b]).reset_index()
    if wide.empty:
        return _not_testable(claim, f"no matched pairs of {factor}={a} and {factor}={b}")
    diff = (wide[a] - wide[b]).to_numpy()
    low, high = _cluster_boot(_units(wide), lambda rows: diff[rows].mean())
    verdict, rule = _sided(claim, _points(low), _points(high), p.get("expect", "positive"),
                           float(p.get("margin", 0.0)))
    eta, pv = _eta(data, factor)
    per = wide.assign(diff=100 * diff).groupby("dataset", observed=True)["diff"].mean().rename("points")
    est = _points(diff.mean())
    reason = (f"{factor}={a} − {factor}={b}: {est:+.2f} points over {len(diff)} matched pairs "
              f"(95% interval {_points(low):+.2f} to {_points(high):+.2f})")
    return Finding(claim, verdict, reason, rule, est, _points(low), _points(high), eta_sq=eta, p_value=pv,
                   n_units=_units(wide).nunique(), n_runs=2 * len(diff), detail=per.reset_index())


@test("best_level")
def best_level(df: pd.DataFrame, claim: Claim) -> Finding:
    """``level`` of ``factor`` against the best other level: the gap between its mean score and
    the highest other level's mean, each centred within (dataset, seed) units, over units where
    every level ran. A "best of" statistic favours levels tried more often, so only complete
    units count."""
    p = claim.params
    factor, level = p["factor"], str(p["level"])
    if factor not in df.columns:
        return _not_testable(claim, f"grid {claim.grid} has no factor {factor!r}")
    data = _subset(df, p.get("where")).assign(_level=lambda d: d[factor].astype(str))
    levels = sorted(data["_level"].unique())
    if level not in levels or len(levels) < 2:
        return _not_testable(claim, f"grid {claim.grid} did not run {factor}={level} beside another level")
    keys = _others(data, factor)
    wide = data.pivot_table(index=keys, columns="_level", values="score", aggfunc="mean", observed=True)
    wide = wide.dropna().reset_index()
    units = _units(wide)
    scores = wide[levels].to_numpy()  # (rows, levels)
    j = levels.index(level)

    def gap(rows):
        means = scores[rows].mean(axis=0)
        return means[j] - np.delete(means, j).max()

    low, high = _cluster_boot(units, gap)
    est = gap(np.arange(len(wide)))
    means = pd.Series(scores.mean(axis=0) * 100, index=levels).sort_values(ascending=False)
    verdict, _ = _sided(claim, _points(low), _points(high), "positive")
    rule = (f"reproduced if the 95% interval of {level} minus the best other level is above 0; not reproduced "
            "if it is below 0")
    eta, pv = _eta(data, factor)
    ranking = ", ".join(f"{k} {v:.2f}" for k, v in means.items())
    reason = (f"{level} minus the best other level: {_points(est):+.2f} points "
              f"(95% interval {_points(low):+.2f} to {_points(high):+.2f}); mean scores: {ranking}")
    return Finding(claim, verdict, reason, rule, _points(est), _points(low), _points(high), eta_sq=eta,
                   p_value=pv, n_units=units.nunique(), n_runs=int(scores.size),
                   detail=means.rename("mean_points").rename_axis(factor).reset_index())


@test("largest_share")
def largest_share(df: pd.DataFrame, claim: Claim) -> Finding:
    """``factor`` (a name, or a list read as one family: the estimate takes the family's largest)
    explains more variance than every other treatment factor: partial η² of the family minus the
    largest other factor's, with a cluster-bootstrap interval (units resampled, the ANOVA refitted
    per draw). Unit: η² (a fraction), not points."""
    from analysis.anova import anova_table

    p = claim.params
    family = p["factor"] if isinstance(p["factor"], list) else [p["factor"]]
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

    low, high = _cluster_boot(units, gap, n_boot=int(p.get("n_boot", 500)))
    est = gap_of(full)
    rule = ("reproduced if the interval of the largest η² among "
            f"{', '.join(mine)} minus the largest η² among the other factors is above 0; not reproduced if below")
    verdict = "reproduced" if low > 0 else "not reproduced" if high < 0 else "inconclusive"
    listing = ", ".join(f"{k} {v:.2f}" for k, v in full.sort_values(ascending=False).items())
    reason = f"partial η²: {listing}; difference {est:+.2f} (95% interval {low:+.2f} to {high:+.2f})"
    return Finding(claim, verdict, reason, rule, est, low, high, unit="η²", eta_sq=float(full.reindex(mine).max()),
                   n_units=units.nunique(), n_runs=len(data),
                   detail=full.rename("partial_eta_sq").rename_axis("factor").reset_index())


@test("worst_cost")
def worst_cost(df: pd.DataFrame, claim: Claim) -> Finding:
    """The worst-case cost of a sub-optimal choice, in % of the best score: per (dataset, seed)
    unit and per ``factors`` entry, the best score minus the best score with that factor fixed at
    its worst level (``analysis.cost.tuned_cost``, the others tuned), divided by the best score;
    the estimate is the largest over factors of the mean over units. Compared with the paper's
    ``published`` value (%): reproduced when that value lies inside our interval."""
    from analysis.cost import tuned_cost

    p = claim.params
    factors = [f for f in p["factors"] if f in df.columns and df[f].nunique() > 1]
    if not factors:
        return _not_testable(claim, f"grid {claim.grid} varies none of {', '.join(p['factors'])}")
    data = df.reset_index(drop=True)
    block = [c for c in UNIT if c in data.columns]
    units = _units(data)

    def pct(frame):
        frame = frame.assign(_best=frame.groupby(block, observed=True)["score"].transform("max"))
        frame = frame.assign(_rel=frame["score"] / frame["_best"])
        costs = tuned_cost(frame, "_rel", factors, block=block)
        return costs.groupby("factor")["mean_cost"].max() * 100  # worst level, mean over units

    full = pct(data)

    def stat(rows):
        try:
            return float(pct(data.iloc[rows]).max())
        except ValueError:
            return None

    low, high = _cluster_boot(units, stat, n_boot=int(p.get("n_boot", 500)))
    est = float(full.max())
    published = float(p["published"])
    rule = f"reproduced if the published {published:g}% lies inside our 95% interval; otherwise not reproduced (larger or smaller here)"
    verdict = "reproduced" if low - 1e-9 <= published <= high + 1e-9 else "not reproduced"
    listing = ", ".join(f"{k} {v:.2f}%" for k, v in full.sort_values(ascending=False).items())
    reason = (f"worst-level cost (others tuned), mean over units: {listing}; the largest {est:.2f}% "
              f"(95% interval {low:.2f} to {high:.2f}) against the published {published:g}%")
    return Finding(claim, verdict, reason, rule, est, low, high, unit="% of best", n_units=units.nunique(),
                   n_runs=len(data), detail=full.rename("worst_level_cost_pct").rename_axis("factor").reset_index())


@test("recipe_regret")
def recipe_regret(df: pd.DataFrame, claim: Claim) -> Finding:
    """One configuration (``recipe``: factor → level, the others tuned) against the best per
    (dataset, seed) unit: its regret in points, beside the regret of the average configuration.
    Reproduced when the recipe's regret interval lies below ``margin`` points."""
    p = claim.params
    recipe = {k: str(v) for k, v in p["recipe"].items()}
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
    units = _units(per_unit)
    r, avg = per_unit["recipe"].to_numpy(), per_unit["average"].to_numpy()
    low, high = _cluster_boot(units, lambda rows: r[rows].mean())
    margin = float(p.get("margin", 1.0))
    est = _points(r.mean())
    rule = f"reproduced if the recipe's 95% regret interval lies below {margin:g} points; not reproduced if it lies above"
    verdict = "reproduced" if _points(high) < margin else "not reproduced" if _points(low) > margin else "inconclusive"
    reason = (f"regret of {', '.join(f'{k}={v}' for k, v in recipe.items())} (others tuned): {est:.2f} points "
              f"(95% interval {_points(low):.2f} to {_points(high):.2f}); an average configuration's: "
              f"{_points(avg.mean()):.2f}")
    return Finding(claim, verdict, reason, rule, est, _points(low), _points(high), n_units=units.nunique(),
                   n_runs=len(data), detail=per_unit.assign(recipe=100 * r, average=100 * avg))


@test("interaction")
def interaction(df: pd.DataFrame, claim: Claim) -> Finding:
    """Does ``a`` − ``b`` of ``factor`` grow as ``by`` goes from ``high`` to ``low``? The estimate
    is the contrast at ``by=low`` minus the contrast at ``by=high``, paired within every unit and
    combination of the other factors (Distiller: augmentation helps most with small training
    sets). Reproduced when its interval lies above 0."""
    p = claim.params
    factor, a, b, by = p["factor"], str(p["a"]), str(p["b"]), p["by"]
    low_level, high_level = str(p["low"]), str(p["high"])
    for col in (factor, by):
        if col not in df.columns:
            return _not_testable(claim, f"grid {claim.grid} has no factor {col!r}")
    data = df.assign(_level=df[factor].astype(str), _by=df[by].astype(str))
    keys = [k for k in _others(data, factor) if k != by]
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
    units = _units(wide.reset_index())
    low, high = _cluster_boot(units, lambda rows: diff[rows].mean())
    verdict, rule = _sided(claim, _points(low), _points(high), "positive")
    reason = (f"{factor}={a} − {b}: {_points(small.mean()):+.2f} points at {by}={low_level}, "
              f"{_points(large.mean()):+.2f} at {by}={high_level}; difference {_points(diff.mean()):+.2f} "
              f"(95% interval {_points(low):+.2f} to {_points(high):+.2f})")
    return Finding(claim, verdict, reason, rule, _points(diff.mean()), _points(low), _points(high),
                   n_units=units.nunique(), n_runs=4 * len(diff))


@test("recommender")
def recommender(df: pd.DataFrame, claim: Claim) -> Finding:
    """A recommender for a new dataset (AutoDistiller): leave-one-dataset-out regret
    (``analysis.recommend.grid_lodo``, target the score relative to the teacher) of the
    recommender minus that of the best single recipe, in points of the ratio. Reproduced when
    the recommender's mean regret is below both the best single recipe's and a random pick's;
    with fewer than ``min_datasets`` datasets, inconclusive (one training dataset says little)."""
    from analysis.recommend import grid_lodo

    p = claim.params
    try:
        table = grid_lodo(df, seed=0)
    except (ValueError, KeyError) as exc:
        return _not_testable(claim, f"leave-one-dataset-out is not possible here: {' '.join(str(exc).split())}")
    mean = table[table["dataset"] == "mean"].iloc[0]
    rec, recipe, rand = (100 * float(mean[c]) for c in ("regret_recommender", "regret_best_recipe", "regret_random"))
    n = int((table["dataset"] != "mean").sum())
    need = int(p.get("min_datasets", 4))
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
    from analysis.anova import anova_table

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
    reason = f"{claim.params.get('why', 'no verdict')}. Measured: {listing}; mean scores {'; '.join(means)}"
    return Finding(claim, "not testable", reason, n_units=_units(df).nunique(), n_runs=len(df),
                   detail=table.reset_index()[["term", "partial_eta_sq", "p_value", "kind"]])


# --------------------------------------------------------------------------- running and writing


def _named_factors(claim: Claim) -> list[str]:
    """The factors a claim's parameters name (``factor``, ``factors``, the keys of ``recipe``)."""
    p, out = claim.params, []
    for key in ("factor", "factors"):
        value = p.get(key)
        out += value if isinstance(value, list) else [value] if value else []
    out += list(p.get("recipe") or {})
    return list(dict.fromkeys(out))


def inert_factor(df: pd.DataFrame, factor: str, metric: str = "score") -> bool:
    """True when ``factor`` varies in ``df`` but made no difference to any run: wherever the other
    factors (and dataset, seed) are equal, every level gave the same ``metric`` (to 1e-12). This
    happens when two levels resolve to the same training, e.g. a teacher whose best-metric and
    lowest-loss checkpoints are the same epoch. False when no two runs can be compared."""
    if factor not in df.columns or df[factor].nunique() < 2:
        return False
    others = _others(df, factor)
    groups = df.groupby(others, observed=True, dropna=False)[metric] if others else [(None, df[metric])]
    compared = False
    for _, scores in groups:
        if len(scores) < 2:
            continue
        compared = True
        if float(scores.max() - scores.min()) > 1e-12:
            return False
    return compared


def evaluate(claims: list[Claim], tracking_uri: str | None = None,
             loader: Callable[[str, str | None], pd.DataFrame] | None = None,
             expected: dict[str, int] | None = None) -> list[Finding]:
    """Each claim's finding, reading each grid once from ``tracking_uri``. A grid without runs
    gives ``not run`` findings (with the command that runs it), never an error; a grid with
    fewer finished cells than ``expected`` (grid -> its cell count) gives ``incomplete``
    findings: a grid stopped part-way is an unbalanced design, and no verdict is drawn from it."""
    from analysis.table import load_runs, treatment_factors

    loader = loader or load_runs
    tables: dict[str, pd.DataFrame | str] = {}
    out = []
    for claim in claims:
        if claim.grid not in tables:
            try:
                df = loader(claim.grid, tracking_uri)
                if len(df) == 0:
                    raise ValueError("no finished runs")
                df.attrs.setdefault("treatments", treatment_factors(df))
                tables[claim.grid] = df
            except Exception:  # noqa: BLE001 - reported in the finding
                tables[claim.grid] = (f"no finished run of grid {claim.grid} in this store: "
                                      f"run `study run --grid {claim.grid}`")
        df = tables[claim.grid]
        if isinstance(df, str):
            out.append(Finding(claim, "not run", df))
            continue
        want = (expected or {}).get(claim.grid)
        if want is not None and len(df) < want:
            out.append(Finding(claim, "incomplete", f"{len(df)} of the {want} cells of grid {claim.grid} have "
                               f"finished: run `study run --grid {claim.grid}` to finish it (a grid stopped "
                               "part-way is an unbalanced design, so no estimate is drawn from it)",
                               n_runs=len(df)))
            continue
        finding = TESTS[claim.test](df, claim)
        finding.n_runs = finding.n_runs or len(df)
        inert = [f for f in _named_factors(claim) if inert_factor(df, f)]
        if inert:
            finding.reason += (f"; {', '.join(inert)} changed no run: in every cell its levels gave the same score "
                               "(e.g. both teacher checkpoints were the same epoch), so this grid cannot weigh it")
        if finding.verdict in ("reproduced", "not reproduced") and finding.ci_low is not None and finding.n_units < 2:
            finding.verdict = "inconclusive"
            finding.reason += "; one replicate unit only, so the interval means nothing"
        out.append(finding)
    return out


def _fmt(x: float | None, unit: str) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.2f}" if unit in ("points", "η²") else f"{x:.2f}"


def summary_table(findings: list[Finding]) -> pd.DataFrame:
    """One row per finding: claim, paper, grid, estimate, interval, unit, η², verdict."""
    rows = []
    for f in findings:
        interval = "–" if f.ci_low is None else f"[{_fmt(f.ci_low, f.unit)}, {_fmt(f.ci_high, f.unit)}]"
        rows.append({"claim": f.claim.id, "paper": f.claim.paper, "grid": f.claim.grid,
                     "estimate": _fmt(f.estimate, f.unit), "95% interval": interval, "unit": f.unit,
                     "partial η²": "–" if f.eta_sq is None else f"{f.eta_sq:.2f}", "verdict": f.verdict})
    return pd.DataFrame(rows)


def to_markdown(findings: list[Finding], command: str = "study findings") -> str:
    """The findings as a Markdown document: a summary table, then one section per claim with the
    grid's command, the estimate and interval, the verdict and its rule, and the per-level detail."""
    lines = ["# What the studies' claims look like when rerun", "",
             f"Generated by `{command}` from the MLflow store; every number below comes from the runs "
             "the commands shown produce (CPU runs are deterministic, so a rerun gives the same table). "
             "Intervals: 95% cluster bootstrap over (dataset, seed) units, 2,000 draws "
             "(500 for refitted statistics), seeded. Points = score × 100.", "",
             summary_table(findings).to_markdown(index=False), ""]
    for f in findings:
        c = f.claim
        lines += [f"## {c.id}: {c.paper}", "", f"> {c.statement}", "",
                  f"- Grid: `{c.grid}` — `study run --grid {c.grid}`, then `study findings`.",
                  f"- Test: `{c.test}` {', '.join(f'{k}={v}' for k, v in c.params.items())}.",
                  f"- Finding: {f.reason}.",
                  f"- Verdict: **{f.verdict}**" + (f" ({f.rule})." if f.rule else "."),
                  f"- Runs: {f.n_runs}; replicate units: {f.n_units}."
                  + ("" if f.eta_sq is None else f" Partial η² of the factor: {f.eta_sq:.2f}"
                     + ("" if f.p_value is None else f" (p {f.p_value:.3g})") + "."), ""]
        if f.detail is not None and len(f.detail):
            lines += [f.detail.round(3).to_markdown(index=False), ""]
    return "\n".join(lines)
