"""Coverage by simulation of the claim tests' interval (t on unit means, G - 1 df) against the
percentile cluster bootstrap, at 4, 8 and 16 clusters; the sign-flip test's size; power helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import power, smallsample
from analysis.verdicts import decide

SIMS = 1500


@pytest.mark.parametrize("g", [4, 8, 16])
def test_t_interval_covers_about_95_percent(g):
    cov = smallsample.coverage("t", g, np.random.default_rng(g), n_sims=SIMS)
    assert 0.93 <= cov <= 0.97, cov  # binomial s.e. at 1,500 draws: 0.6 points


def test_percentile_bootstrap_falls_short_at_4_clusters():
    cov = {g: smallsample.coverage("percentile", g, np.random.default_rng(g), n_sims=600, n_boot=400)
           for g in (4, 16)}
    assert cov[4] < 0.86, cov  # about 0.80 measured: far below 95%
    assert cov[16] > cov[4] + 0.05, cov


def test_sign_flip_is_exact_and_cannot_reject_below_min_units():
    rng = np.random.default_rng(0)
    assert smallsample.sign_flip_test(np.full(4, 3.0), rng) == pytest.approx(2 / 16)
    assert smallsample.sign_flip_test(np.full(6, 3.0), rng) == pytest.approx(2 / 64)
    for g, sims in ((8, 400), (16, 150)):
        size = np.mean([smallsample.sign_flip_test(rng.normal(size=g), rng) < 0.05 for _ in range(sims)])
        assert size <= 0.08, (g, size)  # exact: at most 5% in expectation


def test_decide_needs_interval_test_and_units():
    rng = np.random.default_rng(0)
    units = pd.DataFrame({"dataset": ["a", "a", "b", "b"], "value": [3.0, 3.1, 2.9, 3.0]})
    assert decide(units, "positive", rng).verdict == "underpowered"  # 4 units: interval decisive, no test
    six = pd.DataFrame({"dataset": list("aaabbb"), "value": [3.0, 3.1, 2.9, 3.0, 3.2, 2.8]})
    res = decide(six, "positive", rng, paper_effect=17.8)
    assert res.verdict == "reproduced" and res.detectable and 0 < res.mde < 1
    noisy = six.assign(value=[3.0, -2.0, 1.0, -1.0, 2.0, -2.5])
    res = decide(noisy, "positive", rng, paper_effect=1.0)
    assert res.verdict == "inconclusive" and not res.detectable
    assert res.note.startswith("needs ") and "1.00 points (the paper's effect)" in res.note


def test_mde_and_units_needed_agree():
    assert power.mde(1.0, 4) == float("inf")
    m = power.mde(2.0, 12)
    assert power.units_needed(m, 2.0) in (12, 13)
    comps = power.variance_components(pd.DataFrame({"dataset": list("aabb"), "value": [0.0, 2.0, 1.0, 3.0]}))
    assert comps["seed_sd"] == pytest.approx(np.sqrt(2.0)) and comps["n_datasets"] == 2


def test_simulated_power_grows_with_units():
    comps = {"seed_sd": 1.0, "dataset_sd": 0.0, "n_datasets": 2, "n_seeds": 2}
    plan = power.plan_design(1.0, comps, np.random.default_rng(0), n_sims=150, max_seeds=12)
    seeds = plan[plan["route"] == "seeds"]
    assert seeds["power"].iloc[0] == 0.0 and seeds["power"].iloc[-1] >= 0.8
    first = power.first_reaching(plan, "seeds")
    assert first is not None and 5 <= first["units"] <= 14  # t-test: about 10 units for d = 1


def test_simulated_mde_matches_the_t_test_without_dataset_spread_and_grows_with_it():
    flat = {"seed_sd": 2.0, "dataset_sd": 0.0}
    sim = power.simulated_mde(flat, 3, 4)
    assert sim == pytest.approx(power.mde(2.0, 12), rel=0.15)  # the verdict rule is the t-test, plus sign-flip
    spread = power.simulated_mde({"seed_sd": 2.0, "dataset_sd": 4.0}, 3, 4)
    assert spread > power.mde(float(np.hypot(2.0, 4.0)), 12) > sim  # dataset spread is not averaged by seeds
    assert power.simulated_mde(flat, 1, 4) == float("inf")  # fewer units than a verdict needs


def test_findings_and_study_plan_size_a_contrast_alike():
    """The power note of a finding and `study plan` on the same units: one simulation from the
    seed and dataset variance, so they name the same seeds, datasets and minimum effect (they did
    not when findings used a t-test on all units as if they were independent)."""
    from analysis.planning import plan_contrast

    # +12.7 points on one dataset, about 0 on the other, 3 seeds each (lu2022-cpu's shape)
    units = pd.DataFrame({"dataset": list("aaabbb"), "value": [17.7, 6.2, 14.2, 0.5, -1.3, 0.1]})
    res = decide(units, "positive", np.random.default_rng(1), paper_effect=None)
    plan = plan_contrast(units, None, np.random.default_rng(0))
    assert res.verdict == "inconclusive"
    assert res.mde == pytest.approx(plan.pilot_mde)
    seeds = "more than 20 seeds" if plan.seeds is None else f"about {int(plan.seeds['n_seeds'])} seeds"
    datasets = ("more than 20 datasets" if plan.datasets is None
                else f"{int(plan.datasets['n_datasets'])} datasets")
    assert f"needs {seeds} (on 2 datasets) or {datasets} (at 3 seeds)" in res.note, res.note
    assert plan.datasets is not None and plan.datasets["n_datasets"] > 2
    # the t-test on 6 units as if independent asks far fewer seeds than the simulation
    assert power.units_needed(float(units["value"].mean()), float(units["value"].std())) / 2 < (
        21 if plan.seeds is None else plan.seeds["n_seeds"])


def test_expected_width_is_the_t_interval_width_and_grows_with_dataset_spread():
    from scipy import stats

    flat = power.expected_width({"seed_sd": 2.0, "dataset_sd": 0.0}, 3, 4, n_sims=2000)
    assert flat == pytest.approx(2 * stats.t.ppf(0.975, 11) * 2.0 / np.sqrt(12), rel=0.08)
    assert power.expected_width({"seed_sd": 2.0, "dataset_sd": 4.0}, 3, 4) > flat
    assert np.isnan(power.expected_width({"seed_sd": 1.0, "dataset_sd": 0.0}, 1, 1))
