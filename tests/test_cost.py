"""Cost of sub-optimal choices (analysis.cost) on hand-computable tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.cost import averaged_cost, block_costs, tuned_cost


def _row(table: pd.DataFrame, factor: str, level: str) -> pd.Series:
    hit = table[(table["factor"] == factor) & (table["level"] == level)]
    assert len(hit) == 1, f"expected one row for {factor}={level}"
    return hit.iloc[0]


@pytest.fixture
def tiny() -> pd.DataFrame:
    # Blocks d1, d2, d3 (dataset). Factor obj has levels a, b, c; factor init has x, y.
    # d1: a 0.80 / 0.70, b 0.75, c 0.60          -> best 0.80: cost a 0, b .05, c .20
    # d2: a 0.50, b 0.62 / 0.58 (c never run)     -> best 0.62: cost a .12, b 0, c MISSING
    # d3: only level a was run                     -> excluded for obj (one level)
    rows = [
        ("d1", "a", "x", 0.80, 1.0),
        ("d1", "a", "y", 0.70, 1.0),
        ("d1", "b", "x", 0.75, 1.0),
        ("d1", "c", "y", 0.60, 1.0),
        ("d2", "a", "x", 0.50, 0.8),
        ("d2", "b", "x", 0.62, 0.8),
        ("d2", "b", "y", 0.58, 0.8),
        ("d3", "a", "x", 0.90, 0.9),
        ("d3", "a", "y", 0.85, 0.9),
    ]
    df = pd.DataFrame(rows, columns=["dataset", "obj", "init", "score", "teacher"])
    for c in ("dataset", "obj", "init"):
        df[c] = df[c].astype("category")
    return df


def test_tuned_cost_by_hand(tiny):
    table = tuned_cost(tiny, "score", ["obj", "init"], ["dataset"], teacher_col="teacher")
    a, b, c = (_row(table, "obj", lv) for lv in "abc")
    # a: d1 0.00, d2 0.12 (0.62 - 0.50)
    assert a["mean_cost"] == pytest.approx(0.06)
    assert a["worst_cost"] == pytest.approx(0.12)
    assert a["blocks"] == 2 and a["runs"] == 3 and a["blocks_missing"] == 0
    # b: d1 0.05, d2 0.00
    assert b["mean_cost"] == pytest.approx(0.025)
    assert b["worst_cost"] == pytest.approx(0.05)
    assert b["blocks"] == 2 and b["runs"] == 3
    # c: d1 0.20; d2 is missing, not a zero (a zero would give mean 0.10); d3 excluded.
    assert c["mean_cost"] == pytest.approx(0.20)
    assert c["worst_cost"] == pytest.approx(0.20)
    assert c["blocks"] == 1 and c["blocks_missing"] == 1 and c["runs"] == 1
    # as a fraction of the teacher: a = mean(0/1.0, 0.12/0.8) = 0.075, worst 0.15
    assert a["mean_cost_frac"] == pytest.approx(0.075)
    assert a["worst_cost_frac"] == pytest.approx(0.15)
    assert c["mean_cost_frac"] == pytest.approx(0.20)
    # init: d1 x 0.80 y 0.70 -> y .10; d2 x .62 y .58 -> y .04; d3 x .90 y .85 -> y .05
    x, y = _row(table, "init", "x"), _row(table, "init", "y")
    assert x["mean_cost"] == pytest.approx(0.0) and x["blocks"] == 3
    assert y["mean_cost"] == pytest.approx((0.10 + 0.04 + 0.05) / 3)
    assert y["worst_cost"] == pytest.approx(0.10)


def test_tuned_cost_columns_and_no_teacher(tiny):
    table = tuned_cost(tiny, "score", ["obj"], ["dataset"])
    assert list(table.columns[:5]) == ["factor", "level", "mean_cost", "worst_cost", "blocks"]
    assert "mean_cost_frac" not in table.columns
    assert list(table["level"]) == ["a", "b", "c"]


def test_tuned_cost_lower_is_better(tiny):
    flipped = tiny.assign(score=-tiny["score"])
    table = tuned_cost(flipped, "score", ["obj"], ["dataset"], higher_is_better=False)
    assert _row(table, "obj", "a")["mean_cost"] == pytest.approx(0.06)
    assert (table["mean_cost"].dropna() >= 0).all()


def test_tuned_cost_teacher_must_be_constant_in_block(tiny):
    tiny.loc[0, "teacher"] = 0.5
    with pytest.raises(ValueError, match="varies within block"):
        tuned_cost(tiny, "score", ["obj"], ["dataset"], teacher_col="teacher")


def test_tuned_cost_missing_column(tiny):
    with pytest.raises(ValueError, match="'objx'.*Did you mean 'obj'"):
        tuned_cost(tiny, "score", ["objx"], ["dataset"])
    with pytest.raises(ValueError, match="both factor and block"):
        tuned_cost(tiny, "score", ["obj"], ["obj"])


def test_tuned_cost_recovers_planted_effect():
    # Full grid, 6 datasets x 3 levels x 4 other configs x 3 seeds; level b is 0.05 worse in
    # every cell, noise is small against it, so b's tuned cost is close to 0.05 and a/c ~ 0.
    rng = np.random.default_rng(0)
    rows = []
    for d in range(6):
        base = rng.uniform(0.6, 0.9)
        for lv in "abc":
            for other in range(4):
                for seed in range(3):
                    y = base + 0.01 * other - (0.05 if lv == "b" else 0.0) + rng.normal(0, 0.002)
                    rows.append((f"d{d}", lv, f"o{other}", seed, y))
    df = pd.DataFrame(rows, columns=["dataset", "f", "other", "seed", "score"])
    table = tuned_cost(df, "score", ["f"], ["dataset"])
    assert _row(table, "f", "b")["mean_cost"] == pytest.approx(0.05, abs=0.006)
    assert _row(table, "f", "a")["mean_cost"] < 0.006
    assert _row(table, "f", "b")["blocks"] == 6
    averaged = averaged_cost(df, "score", ["f", "other"], ["dataset"])
    assert _row(averaged, "f", "b")["mean_cost"] == pytest.approx(0.05, abs=0.004)


@pytest.fixture
def balanced() -> pd.DataFrame:
    # Two datasets, factors f (p, q) and g (u, v); two seeds per cell, averaged first.
    # cell means:     d1: (p,u) .80 (p,v) .70 (q,u) .76 (q,v) .74
    #                 d2: (p,u) .60 (p,v) .62 (q,u) .50 (q,v) .58
    cells = {
        ("d1", "p", "u"): (0.79, 0.81), ("d1", "p", "v"): (0.70, 0.70),
        ("d1", "q", "u"): (0.76, 0.76), ("d1", "q", "v"): (0.73, 0.75),
        ("d2", "p", "u"): (0.60, 0.60), ("d2", "p", "v"): (0.61, 0.63),
        ("d2", "q", "u"): (0.50, 0.50), ("d2", "q", "v"): (0.58, 0.58),
    }
    rows = [(d, f, g, s, y) for (d, f, g), ys in cells.items() for s, y in enumerate(ys)]
    return pd.DataFrame(rows, columns=["dataset", "f", "g", "seed", "score"])


def test_averaged_cost_by_hand(balanced):
    table = averaged_cost(balanced, "score", ["f", "g"], ["dataset"])
    # f, within (dataset, g): (d1,u) p.80 q.76 -> q .04; (d1,v) p.70 q.74 -> p .04;
    #                         (d2,u) p.60 q.50 -> q .10; (d2,v) p.62 q.58 -> q .04
    p, q = _row(table, "f", "p"), _row(table, "f", "q")
    assert p["mean_cost"] == pytest.approx(0.04 / 4)
    assert p["worst_cost"] == pytest.approx(0.04)
    assert q["mean_cost"] == pytest.approx((0.04 + 0.10 + 0.04) / 4)
    assert q["worst_cost"] == pytest.approx(0.10)
    assert q["cells"] == 4 and q["blocks"] == 2
    # g, within (dataset, f): (d1,p) u.80 v.70 -> v .10; (d1,q) u.76 v.74 -> v .02;
    #                         (d2,p) u.60 v.62 -> u .02; (d2,q) u.50 v.58 -> u .08
    u, v = _row(table, "g", "u"), _row(table, "g", "v")
    assert u["mean_cost"] == pytest.approx((0.02 + 0.08) / 4)
    assert v["mean_cost"] == pytest.approx((0.10 + 0.02) / 4)
    assert v["worst_cost"] == pytest.approx(0.10)


def test_averaged_cost_unbalanced_raises(balanced):
    holey = balanced[~((balanced["dataset"] == "d2") & (balanced["f"] == "q") & (balanced["g"] == "v"))]
    with pytest.raises(ValueError, match=r"not balanced: 1 of 8 .*dataset=d2, f=q, g=v"):
        averaged_cost(holey, "score", ["f", "g"], ["dataset"])


def test_block_costs_are_tuned_costs_before_averaging(tiny):
    per = block_costs(tiny, "score", "obj", block="dataset")
    got = {(str(r.dataset), r.level): round(r.cost, 9) for r in per.itertuples()}
    # d3 ran one level (no row); c was never run in d2 (no row, not a zero cost)
    assert got == {("d1", "a"): 0.0, ("d1", "b"): 0.05, ("d1", "c"): 0.2, ("d2", "a"): 0.12, ("d2", "b"): 0.0}
    means = per.groupby("level")["cost"].mean()
    table = tuned_cost(tiny, "score", "obj", block="dataset")
    for level in ("a", "b", "c"):
        assert means[level] == pytest.approx(_row(table, "obj", level)["mean_cost"])
