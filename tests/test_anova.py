"""analysis.anova on hand-computable tables and on synthetic grids with planted effects."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import anova

OBJECTIVE_EFFECT = {"logit_kd": 0.0, "hidden_mse": 0.03, "attention_kl": 0.06}


def planted_grid(seed: int = 0, n_seeds: int = 4, noise: float = 0.005) -> pd.DataFrame:
    """score = 0.8 + effect(objective) + N(0, noise²); initialisation has no effect."""
    rng = np.random.default_rng(seed)
    rows = [
        {
            "dataset": "sst2",
            "objective": objective,
            "initialisation": initialisation,
            "augmentation": "none",
            "seed": str(s),
            "score": 0.8 + effect + rng.normal(0, noise),
        }
        for objective, effect in OBJECTIVE_EFFECT.items()
        for initialisation in ("random", "teacher_lower")
        for s in range(n_seeds)
    ]
    return pd.DataFrame(rows)


# A balanced 2 x 2 design with 2 replicates per cell, small enough to do by hand.
HAND = pd.DataFrame(
    {
        "A": ["a1", "a1", "a1", "a1", "a2", "a2", "a2", "a2"],
        "B": ["b1", "b1", "b2", "b2", "b1", "b1", "b2", "b2"],
        "y": [1.0, 3.0, 4.0, 6.0, 5.0, 9.0, 8.0, 10.0],
    }
)


def test_hand_computed_two_by_two_additive():
    grand = (1 + 3 + 4 + 6 + 5 + 9 + 8 + 10) / 8  # 5.75
    mean_a1, mean_a2 = (1 + 3 + 4 + 6) / 4, (5 + 9 + 8 + 10) / 4  # 3.5, 8
    mean_b1, mean_b2 = (1 + 3 + 5 + 9) / 4, (4 + 6 + 8 + 10) / 4  # 4.5, 7
    ss_a = 4 * ((mean_a1 - grand) ** 2 + (mean_a2 - grand) ** 2)  # 40.5
    ss_b = 4 * ((mean_b1 - grand) ** 2 + (mean_b2 - grand) ** 2)  # 12.5
    ss_total = sum((y - grand) ** 2 for y in HAND["y"])  # 67.5
    ss_res = ss_total - ss_a - ss_b  # balanced, so the sums of squares are orthogonal: 14.5
    ms_res = ss_res / (8 - 3)  # 2.9

    table = anova.anova_table(HAND, "y", ["B", "A"])

    assert list(table.index) == ["A", "B", "Residual"]  # sorted by partial eta squared
    assert list(table.columns) == ["sum_sq", "df", "F", "p_value", "partial_eta_sq", "omega_sq", "kind"]
    assert table.loc["A", "sum_sq"] == pytest.approx(40.5)
    assert table.loc["A", "sum_sq"] == pytest.approx(ss_a)
    assert table.loc["B", "sum_sq"] == pytest.approx(ss_b)
    assert table.loc["Residual", "sum_sq"] == pytest.approx(ss_res)
    assert table.loc["Residual", "df"] == 5
    assert table.loc["A", "F"] == pytest.approx(ss_a / ms_res)
    assert table.loc["A", "p_value"] == pytest.approx(stats.f.sf(ss_a / ms_res, 1, 5))
    assert table.loc["A", "partial_eta_sq"] == pytest.approx(ss_a / (ss_a + ss_res))  # 0.736
    assert table.loc["B", "partial_eta_sq"] == pytest.approx(ss_b / (ss_b + ss_res))
    assert table.loc["A", "omega_sq"] == pytest.approx((ss_a - ms_res) / (ss_total + ms_res))  # 0.534
    assert table.loc["B", "omega_sq"] == pytest.approx((12.5 - 2.9) / (67.5 + 2.9))
    assert np.isnan(table.loc["Residual", "partial_eta_sq"])
    assert list(table["kind"]) == ["factor", "factor", "residual"]


def test_hand_computed_interaction_and_blocks():
    # cell means 2, 5, 7, 9; interaction residuals ±0.25 in each of 4 cells of 2 rows
    ss_ab = 2 * 4 * 0.25**2  # 0.5
    ss_within = (1 + 1) + (1 + 1) + (4 + 4) + (1 + 1)  # 14
    table = anova.anova_table(HAND, "y", ["A"], blocks=["B"], interactions=[("A", "B")])
    assert list(table.index) == ["A", "B", "A:B", "Residual"]
    assert list(table["kind"]) == ["factor", "block", "interaction", "residual"]
    assert table.loc["A:B", "sum_sq"] == pytest.approx(ss_ab)
    assert table.loc["Residual", "sum_sq"] == pytest.approx(ss_within)
    assert table.loc["Residual", "df"] == 4
    assert table.loc["A:B", "partial_eta_sq"] == pytest.approx(0.5 / 14.5)


def test_planted_objective_effect_and_null_initialisation():
    df = planted_grid(seed=0)
    table = anova.anova_table(df, "score", ["initialisation", "objective"])
    assert list(table.index) == ["objective", "initialisation", "Residual"]
    assert table.loc["objective", "partial_eta_sq"] > 0.95
    assert table.loc["objective", "p_value"] < 1e-6
    assert table.loc["initialisation", "p_value"] > 0.01
    assert table.loc["Residual", "df"] == 24 - 1 - 2 - 1


def test_single_level_factor_is_dropped_with_a_warning():
    df = planted_grid(seed=0)
    with pytest.warns(UserWarning, match="augmentation"):
        table = anova.anova_table(df, "score", ["objective", "augmentation"], blocks=["dataset"])
    assert list(table.index) == ["objective", "Residual"]
    assert table.attrs["dropped"] == ["augmentation", "dataset"]


def test_column_names_with_dots_and_hashes():
    df = planted_grid(seed=0).rename(columns={"objective": "objective.name", "seed": "#seed"})
    table = anova.anova_table(df, "score", ["objective.name", "#seed"])
    assert set(table.index) == {"objective.name", "#seed", "Residual"}
    model = anova.fit_ols(df, "score", ["objective.name"])
    assert model.df_resid == 24 - 3


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="'objectiv'.*Did you mean 'objective'"):
        anova.fit_ols(planted_grid(), "score", ["objectiv"])
    with pytest.raises(ValueError, match="'accuracy'"):
        anova.anova_table(planted_grid(), "accuracy", ["objective"])


def test_no_residual_degrees_of_freedom():
    one_replicate = HAND.drop_duplicates(subset=["A", "B"])
    with pytest.raises(ValueError, match="No residual degrees of freedom"):
        anova.fit_ols(one_replicate, "y", ["A", "B"], interactions=[("A", "B")])


def test_mixed_effects_recovers_planted_effect_across_datasets():
    rng = np.random.default_rng(2)
    baselines = {f"task{i}": 0.7 + rng.normal(0, 0.1) for i in range(6)}
    rows = [
        {
            "dataset": dataset,
            "objective": objective,
            "seed": str(s),
            "score": base + (0.05 if objective == "attention_kl" else 0.0) + rng.normal(0, 0.01),
        }
        for dataset, base in baselines.items()
        for objective in ("attention_kl", "logit_kd")
        for s in range(3)
    ]
    df = pd.DataFrame(rows)
    fit = anova.mixed_effects(df, "score", ["objective", "dataset"])
    effect = fit.loc["objective[T.logit_kd]"]
    assert effect["coef"] == pytest.approx(-0.05, abs=0.01)
    assert effect["ci_low"] < -0.05 < effect["ci_high"]
    assert effect["p_value"] < 1e-6
    assert fit.loc["group_var", "kind"] == "random"
    # the spread of the planted baselines, estimated from 6 datasets: same order of magnitude
    planted_var = np.var(list(baselines.values()), ddof=1)
    assert planted_var / 3 < fit.attrs["group_var"] < planted_var * 3
    assert set(fit.columns) >= {"coef", "std_err", "z", "p_value", "ci_low", "ci_high"}
    assert isinstance(fit.attrs["warnings"], list)


def test_mixed_effects_reports_fit_warnings_instead_of_raising_them(recwarn):
    # No baseline difference between datasets: the random-intercept variance sits on the boundary
    # (zero), and statsmodels warns; the warning is kept with the result, not emitted.
    rng = np.random.default_rng(0)
    rows = [
        {"dataset": f"task{d}", "objective": objective, "score": 0.7 + effect + rng.normal(0, 0.01)}
        for d in range(4)
        for objective, effect in (("attention_kl", 0.05), ("logit_kd", 0.0))
        for _ in range(3)
    ]
    fit = anova.mixed_effects(pd.DataFrame(rows), "score", ["objective"])
    assert any("boundary" in message for message in fit.attrs["warnings"])
    assert fit["warnings"].str.contains("boundary").all()
    assert len(recwarn) == 0


def test_mixed_effects_needs_two_groups():
    with pytest.raises(ValueError, match="at least 2 levels of 'dataset'"):
        anova.mixed_effects(planted_grid(), "score", ["objective"])


def test_bootstrap_ci_by_hand():
    # Two seeds with level means 1 and 3: a draw of 2 seeds gives 1, 2 or 3 with probabilities
    # 1/4, 1/2, 1/4, so the 95 % percentile interval is [1, 3] and the mean is 2.
    df = pd.DataFrame({"level": ["x", "x"], "seed": ["0", "1"], "y": [1.0, 3.0]})
    ci = anova.bootstrap_ci(df, "y", "level", n_boot=4000, rng=np.random.default_rng(0))
    assert ci.loc[0, "mean"] == 2.0
    assert (ci.loc[0, "ci_low"], ci.loc[0, "ci_high"]) == (1.0, 3.0)
    assert ci.loc[0, "n"] == 2


def test_bootstrap_ci_contains_planted_means_and_is_deterministic():
    df = planted_grid(seed=0, n_seeds=6)
    first = anova.bootstrap_ci(df, "score", "objective", rng=np.random.default_rng(7))
    again = anova.bootstrap_ci(df, "score", "objective", rng=np.random.default_rng(7))
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["level", "mean", "ci_low", "ci_high", "n"]
    by_level = first.set_index("level")
    for objective, effect in OBJECTIVE_EFFECT.items():
        low, high = by_level.loc[objective, ["ci_low", "ci_high"]]
        assert low < 0.8 + effect < high
        assert by_level.loc[objective, "n"] == 12
        assert high - low < 0.02  # noise sd 0.005 over 12 rows: the interval is narrow


def test_bootstrap_ci_needs_two_seeds():
    df = planted_grid()
    with pytest.raises(ValueError, match="at least 2 distinct 'seed'"):
        anova.bootstrap_ci(df[df["seed"] == "0"], "score", "objective")


def three_levels(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    means = {"a": 0.80, "b": 0.80, "c": 0.85}
    return pd.DataFrame(
        [{"objective": k, "score": m + rng.normal(0, 0.005)} for k, m in means.items() for _ in range(5)]
    )


def test_pairwise_holm_flags_only_the_different_pairs():
    df = three_levels()
    result = anova.pairwise(df, "score", "objective", method="holm")
    assert list(result.columns) == ["level_a", "level_b", "diff", "p_value", "p_adjusted", "reject"]
    by_pair = result.set_index(["level_a", "level_b"])
    assert not by_pair.loc[("a", "b"), "reject"]
    assert by_pair.loc[("a", "c"), "reject"]
    assert by_pair.loc[("b", "c"), "reject"]
    assert by_pair.loc[("a", "c"), "diff"] == pytest.approx(0.05, abs=0.01)  # mean_c - mean_a

    # Holm by hand: sort the raw p-values, multiply the k-th smallest by (m - k + 1), keep monotone.
    groups = {k: g["score"].to_numpy() for k, g in df.groupby("objective")}
    raw = {
        (a, b): stats.ttest_ind(groups[b], groups[a], equal_var=False).pvalue
        for a, b in itertools.combinations("abc", 2)
    }
    running, holm = 0.0, {}
    for k, (pair, p) in enumerate(sorted(raw.items(), key=lambda item: item[1])):
        running = max(running, min(1.0, (3 - k) * p))
        holm[pair] = running
    for pair in raw:
        assert by_pair.loc[pair, "p_value"] == pytest.approx(raw[pair])
        assert by_pair.loc[pair, "p_adjusted"] == pytest.approx(holm[pair])


def test_pairwise_tukey():
    df = three_levels()
    tukey = anova.pairwise(df, "score", "objective", method="tukey")
    holm = anova.pairwise(df, "score", "objective", method="holm")
    np.testing.assert_allclose(tukey["diff"], holm["diff"])
    assert tukey["p_value"].isna().all()
    assert list(tukey["reject"]) == [False, True, True]
    assert (tukey["p_adjusted"].between(0, 1)).all()


def test_pairwise_rejects_unknown_method():
    with pytest.raises(ValueError, match="Unknown method 'bonferroni'"):
        anova.pairwise(three_levels(), "score", "objective", method="bonferroni")


def test_slope_recovers_a_planted_linear_effect():
    rng = np.random.default_rng(0)
    rows = []
    for dataset, base in (("a", 0.6), ("b", 0.8)):
        for temp in (1.0, 2.0, 4.0):
            for seed in range(4):
                rows.append({"dataset": dataset, "prediction.student_temperature": str(temp), "seed": seed,
                             "score": base + 0.02 * temp + rng.normal(0, 0.002)})
    df = pd.DataFrame(rows)
    assert anova.numeric_factors(df, ["prediction.student_temperature", "dataset"]) == ["prediction.student_temperature"]
    row = anova.slope(df, "score", "prediction.student_temperature", blocks=["dataset"]).iloc[0]
    assert row["slope"] == pytest.approx(0.02, abs=0.001)
    assert row["ci_low"] < 0.02 < row["ci_high"] and row["p_value"] < 1e-10
    assert (row["n_obs"], row["levels"]) == (24, 3)
    with pytest.raises(ValueError, match="two numeric values"):
        anova.slope(df[df["prediction.student_temperature"] == "1.0"], "score", "prediction.student_temperature")
