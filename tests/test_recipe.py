"""analysis.recipe on hand-built tables whose ranks, regrets and winners are computed here."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.recipe import best_recipe, configuration_scores, recommended_levels


def _runs(rows):
    return pd.DataFrame(rows, columns=["dataset", "config", "score"])


@pytest.fixture
def three_blocks() -> pd.DataFrame:
    # Dyadic scores, so that the replicate mean of B in d2 ties C exactly in binary floating point.
    return _runs(
        [
            ("d1", "A", 0.80), ("d1", "B", 0.79), ("d1", "C", 0.70),
            ("d2", "A", 0.50), ("d2", "B", 0.5625), ("d2", "B", 0.6875), ("d2", "C", 0.625),
            ("d3", "A", 0.90), ("d3", "B", 0.85), ("d3", "C", 0.88),
        ]
    )


def test_best_recipe_hand_computed(three_blocks):
    recipe, table = best_recipe(three_blocks, "score", ["config"], ["dataset"])
    # d1: A > B > C          ranks 1, 2, 3      pct 0, .5, 1     regrets 0, .01, .10
    # d2: B (mean .625) = C > A  ranks A 3, B 1.5, C 1.5  pct 1, .25, .25  regrets .125, 0, 0
    # d3: A > C > B          ranks A 1, B 3, C 2  pct 0, 1, .5  regrets 0, .05, .02
    expected = {
        "A": dict(mean_rank=(1 + 3 + 1) / 3, mean_pct_rank=(0 + 1 + 0) / 3,
                  mean_regret=(0 + 0.125 + 0) / 3, within_1pt=2 / 3),
        "B": dict(mean_rank=(2 + 1.5 + 3) / 3, mean_pct_rank=(0.5 + 0.25 + 1) / 3,
                  mean_regret=(0.01 + 0 + 0.05) / 3, within_1pt=2 / 3),  # 0.80 - 0.79 is within 0.01
        "C": dict(mean_rank=(3 + 1.5 + 2) / 3, mean_pct_rank=(1 + 0.25 + 0.5) / 3,
                  mean_regret=(0.10 + 0 + 0.02) / 3, within_1pt=1 / 3),
    }
    assert recipe == {"config": "A"}
    # Factor columns first, then the summaries; B and C tie on mean_pct_rank, B has less regret.
    assert list(table.columns) == ["config", "mean_rank", "mean_pct_rank", "mean_regret",
                                   "within_1pt", "blocks", "eligible"]
    assert list(table["config"]) == ["A", "B", "C"]
    for _, row in table.iterrows():
        for key, value in expected[row["config"]].items():
            assert row[key] == pytest.approx(value), (row["config"], key)
        assert row["blocks"] == 3
        assert row["eligible"]


def test_ties_get_the_average_rank(three_blocks):
    d2 = three_blocks[three_blocks["dataset"] == "d2"]
    _, table = best_recipe(d2, "score", ["config"], ["dataset"])
    ranks = dict(zip(table["config"], table["mean_rank"]))
    assert ranks == {"B": 1.5, "C": 1.5, "A": 3.0}


def test_tolerance_is_a_parameter(three_blocks):
    _, table = best_recipe(three_blocks, "score", ["config"], ["dataset"], tolerance=0.05)
    within = dict(zip(table["config"], table["within_1pt"]))
    assert within["B"] == pytest.approx(1.0)  # regrets .01, 0, .05
    assert within["C"] == pytest.approx(2 / 3)  # regrets .10, 0, .02


def test_lower_is_better_flips_the_ranking(three_blocks):
    errors = three_blocks.assign(score=1 - three_blocks["score"])
    recipe, table = best_recipe(errors, "score", ["config"], ["dataset"], higher_is_better=False)
    assert recipe == {"config": "A"}
    assert table.set_index("config").loc["C", "mean_regret"] == pytest.approx((0.10 + 0 + 0.02) / 3)


def test_min_blocks_excludes_a_configuration_run_once(three_blocks):
    lucky = pd.concat([three_blocks, _runs([("d1", "D", 0.99)])], ignore_index=True)
    recipe, table = best_recipe(lucky, "score", ["config"], ["dataset"])
    # D is best in d1 (percentile rank 0), but one block of three is under ceil(3 / 2) = 2.
    assert recipe == {"config": "A"}
    d = table.set_index("config").loc["D"]
    assert d["mean_pct_rank"] == 0.0 and d["blocks"] == 1 and not d["eligible"]
    assert table["config"].iloc[-1] == "D"
    recipe, _ = best_recipe(lucky, "score", ["config"], ["dataset"], min_blocks=1)
    assert recipe == {"config": "D"}


def test_no_eligible_configuration_raises(three_blocks):
    with pytest.raises(ValueError, match="min_blocks"):
        best_recipe(three_blocks, "score", ["config"], ["dataset"], min_blocks=4)


def test_missing_column_raises(three_blocks):
    with pytest.raises(KeyError, match="seed"):
        best_recipe(three_blocks, "score", ["config"], ["seed"])


def test_percentile_rank_evens_out_unequal_block_sizes():
    # X is 2nd of 2 in d1 (the worst) and 2nd of 5 in d2; Y is 1st of 2 in d1 and 4th of 5 in d2.
    # Raw mean ranks: X 2, Y 2.5. Percentile ranks: X (1 + .25) / 2 = .625, Y (0 + .75) / 2 =
    # .375, so Y wins on the scale-free rank although X has the lower raw one.
    runs = _runs(
        [("d1", "X", 0.5), ("d1", "Y", 0.6)]
        + [("d2", c, s) for c, s in [("P", 0.95), ("X", 0.9), ("Q", 0.85), ("Y", 0.8), ("R", 0.7)]]
    )
    recipe, table = best_recipe(runs, "score", ["config"], ["dataset"], min_blocks=2)
    t = table.set_index("config")
    assert t.loc["X", "mean_rank"] == 2.0 and t.loc["Y", "mean_rank"] == 2.5
    assert t.loc["X", "mean_pct_rank"] == pytest.approx(0.625)
    assert t.loc["Y", "mean_pct_rank"] == pytest.approx(0.375)
    assert recipe == {"config": "Y"}


def test_configuration_is_a_combination_of_factors():
    rows = []
    for dataset, bonus in [("d1", 0.0), ("d2", 0.1)]:
        for loss in ["mi", "mse"]:
            for mixup in [False, True]:
                # mi with mixup is best everywhere; replicates (seeds) are averaged first.
                score = 0.7 + bonus + 0.1 * (loss == "mi" and mixup)
                rows += [(dataset, loss, mixup, seed, score + 0.001 * seed) for seed in range(2)]
    runs = pd.DataFrame(rows, columns=["dataset", "loss", "mixup", "seed", "score"])
    scores = configuration_scores(runs, "score", ["loss", "mixup"], ["dataset"])
    assert len(scores) == 8 and (scores["n_runs"] == 2).all()
    recipe, table = best_recipe(runs, "score", ["loss", "mixup"], ["dataset"])
    assert recipe == {"loss": "mi", "mixup": True}
    assert type(recipe["mixup"]) is bool
    assert len(table) == 4 and table.iloc[0]["mean_regret"] == 0.0


def _planted_levels() -> pd.DataFrame:
    rows = []
    for dataset in ["d1", "d2", "d3"]:
        scores = {("kl", "lower"): 0.9, ("kl", "random"): 0.5, ("mse", "lower"): 0.8, ("mse", "random"): 0.79}
        if dataset == "d3":
            scores[("mse", "random")] = 0.95
        rows += [(dataset, obj, init, s) for (obj, init), s in scores.items()]
    return pd.DataFrame(rows, columns=["dataset", "objective", "init", "score"])


def test_recommended_levels_uses_the_best_tuned_score():
    table = recommended_levels(_planted_levels(), "score", ["objective", "init"], ["dataset"])
    assert list(table.columns) == ["factor", "level", "mean_pct_rank", "blocks", "mean_regret"]
    rows = table.set_index("factor")
    # objective: kl's mean over inits (0.7) is below mse's (0.795), but tuned kl (0.9) beats
    # tuned mse (0.8) in d1 and d2; in d3 tuned mse is 0.95. kl: pct (0 + 0 + 1) / 3.
    assert rows.loc["objective", "level"] == "kl"
    assert rows.loc["objective", "mean_pct_rank"] == pytest.approx(1 / 3)
    assert rows.loc["objective", "mean_regret"] == pytest.approx((0 + 0 + 0.05) / 3)
    assert rows.loc["objective", "blocks"] == 3
    # init: lower's tuned 0.9 beats random's 0.79 in d1, d2; random's 0.95 wins d3.
    assert rows.loc["init", "level"] == "lower"
    assert rows.loc["init", "mean_pct_rank"] == pytest.approx(1 / 3)
    assert rows.loc["init", "mean_regret"] == pytest.approx(0.05 / 3)


def test_recommended_levels_needs_min_blocks():
    runs = pd.concat(
        [_planted_levels(), pd.DataFrame([("d1", "new", "lower", 0.99)], columns=["dataset", "objective", "init", "score"])],
        ignore_index=True,
    )
    factors = ["objective", "init"]  # with "objective" alone, init would be averaged as a replicate
    rows = recommended_levels(runs, "score", factors, ["dataset"]).set_index("factor")
    assert rows.loc["objective", "level"] == "kl"  # "new" ran in one block of three
    rows = recommended_levels(runs, "score", factors, ["dataset"], min_blocks=1).set_index("factor")
    assert rows.loc["objective", "level"] == "new"
