"""The claim tests (analysis/claim_tests.py) on tables with known effects, the shipped claims
(analysis/claims.py) against the shipped grids and their parameter schemas, and `study findings`
end to end on an empty store."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import claim_tests, claims, findings
from analysis.claims import Claim
from study.core.errors import StudyConfigError
from study.grid import load_grid


def table(effects: dict[str, dict[str, float]], datasets=("sst2", "mrpc"), seeds=(0, 1, 2),
          noise: float = 0.0, base: dict[str, float] | None = None) -> pd.DataFrame:
    """A tidy table crossing ``effects`` (factor -> level -> additive effect on the score)
    with datasets and seeds; ``noise``: seeded normal noise of that s.d. per run."""
    rng = np.random.default_rng(1)
    base = base or {"sst2": 0.80, "mrpc": 0.70}
    factors = list(effects)
    rows = []
    for ds, seed, *levels in itertools.product(datasets, seeds, *[list(effects[f]) for f in factors]):
        score = base[ds] + sum(effects[f][lv] for f, lv in zip(factors, levels)) + rng.normal(0, noise)
        rows.append({"dataset": ds, "seed": seed, **dict(zip(factors, levels)), "score": score})
    df = pd.DataFrame(rows)
    df.attrs["factors"] = ["dataset", *factors, "seed"]
    df.attrs["treatments"] = factors
    return df


def claim(test: str, **params) -> Claim:
    return Claim("c", "paper", "statement", "g", test, params)


def test_contrast_exact_effect_and_verdicts():
    df = table({"init": {"lower": 0.03, "upper": 0.0}, "objective": {"kd": 0.0, "att": 0.01}})
    f = claim_tests.contrast(df, claim("contrast", factor="init", a="lower", b="upper"))
    assert f.estimate == pytest.approx(3.0) and f.ci_low == pytest.approx(3.0) and f.ci_high == pytest.approx(3.0)
    assert f.verdict == "reproduced" and f.n_units == 6 and f.n_runs == 24
    f = claim_tests.contrast(df, claim("contrast", factor="init", a="upper", b="lower"))
    assert f.verdict == "not reproduced" and f.estimate == pytest.approx(-3.0)
    # within a subset, negligible within a 5-point band: reproduced; within a 1-point band: not
    f = claim_tests.contrast(df, claim("contrast", factor="init", a="lower", b="upper", where={"objective": "att"},
                                    expect="negligible", margin=5.0))
    assert f.verdict == "reproduced" and f.n_runs == 12
    f = claim_tests.contrast(df, claim("contrast", factor="init", a="lower", b="upper", expect="negligible", margin=1.0))
    assert f.verdict == "not reproduced"


def test_contrast_noise_gives_an_interval_and_inconclusive():
    df = table({"init": {"lower": 0.0, "upper": 0.0}}, noise=0.02)
    f = claim_tests.contrast(df, claim("contrast", factor="init", a="lower", b="upper"))
    assert f.ci_low < f.estimate < f.ci_high and f.ci_low < 0 < f.ci_high
    assert f.verdict == "inconclusive"
    again = claim_tests.contrast(df, claim("contrast", factor="init", a="lower", b="upper"))
    assert (again.ci_low, again.ci_high) == (f.ci_low, f.ci_high)  # seeded bootstrap


def test_best_level_gap_to_runner_up():
    df = table({"loss": {"mse": 0.01, "pkd": 0.02, "mi_alpha": -0.04}})
    f = claim_tests.best_level(df, claim("best_level", factor="loss", level="mi_alpha"))
    assert f.estimate == pytest.approx(-6.0) and f.verdict == "not reproduced"
    f = claim_tests.best_level(df, claim("best_level", factor="loss", level="pkd"))
    assert f.estimate == pytest.approx(1.0) and f.verdict == "reproduced"
    assert list(f.detail["loss"]) == ["pkd", "mse", "mi_alpha"]


def test_largest_share_family_against_other_factors():
    df = table({"loss": {"a": 0.0, "b": 0.05}, "mapping": {"skip": 0.0, "upper": 0.001},
                "distance": {"ce": 0.0, "mse": 0.002}}, noise=0.005)
    f = claim_tests.largest_share(df, claim("largest_share", factor=["loss", "mapping"], n_boot=100))
    assert f.verdict == "reproduced" and f.eta_sq > 0.9 and f.unit == "η²"
    f = claim_tests.largest_share(df, claim("largest_share", factor="mapping", n_boot=100))
    assert f.verdict == "not reproduced" and f.estimate < 0
    only = table({"loss": {"a": 0.0, "b": 0.05}})
    assert claim_tests.largest_share(only, claim("largest_share", factor="loss")).verdict == "not testable"


def test_worst_cost_in_percent_of_best():
    # the best configuration scores base + 0.02 (alpha 1) ; alpha 0.5 loses 0.02 of it
    df = table({"alpha": {"0.5": 0.0, "1.0": 0.02}, "distance": {"kl": 0.0, "mse": 0.0}}, base={"sst2": 0.78, "mrpc": 0.78})
    f = claim_tests.worst_cost(df, claim("worst_cost", factors=["alpha", "distance"], published=2.5, n_boot=50))
    assert f.estimate == pytest.approx(2.5)  # 0.02 / 0.80
    assert f.verdict == "reproduced"  # the interval [2.5, 2.5] holds 2.5
    f = claim_tests.worst_cost(df, claim("worst_cost", factors=["alpha", "distance"], published=4.3, n_boot=50))
    assert f.verdict == "not reproduced"


def test_worst_cost_interval_is_a_t_interval_over_units():
    """With noise, the interval is the t-interval (G − 1 df) of the worst level's per-unit cost in
    % of that unit's best, not a percentile bootstrap (which undercovers at few units)."""
    from scipy import stats

    df = table({"alpha": {"0.5": 0.0, "1.0": 0.02}, "distance": {"kl": 0.0, "mse": 0.0}}, noise=0.01,
               seeds=range(4))
    f = claim_tests.worst_cost(df, claim("worst_cost", factors=["alpha", "distance"], published=2.5))
    costs = []
    for _, unit in df.groupby(["dataset", "seed"]):
        costs.append(100 * (1 - unit.loc[unit["alpha"] == "0.5", "score"].max() / unit["score"].max()))
    low, high = stats.t.interval(0.95, len(costs) - 1, loc=np.mean(costs), scale=stats.sem(costs))
    assert f.n_units == 8 and f.estimate == pytest.approx(np.mean(costs))
    assert (f.ci_low, f.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert "alpha = 0.5" in f.reason and "t-interval" in f.rule


def test_recipe_regret_against_the_best_per_unit():
    df = table({"ckpt": {"best": 0.0, "low": 0.01}, "tau": {"1": 0.0, "2": -0.03}})
    f = claim_tests.recipe_regret(df, claim("recipe_regret", recipe={"ckpt": "low", "tau": 1}, margin=1.0))
    assert f.estimate == pytest.approx(0.0) and f.verdict == "reproduced"
    f = claim_tests.recipe_regret(df, claim("recipe_regret", recipe={"ckpt": "best", "tau": 2}, margin=1.0))
    assert f.estimate == pytest.approx(4.0) and f.verdict == "not reproduced"


def _aug_table(seeds):
    rows = []
    for ds, seed, aug, n in itertools.product(["a", "b"], seeds, ["none", "eda"], [1000, 4000]):
        gain = {1000: 0.03, 4000: 0.01}[n] if aug == "eda" else 0.0
        rows.append({"dataset": ds, "seed": seed, "augmentation": aug, "n": n, "score": 0.7 + gain})
    df = pd.DataFrame(rows)
    df.attrs["factors"] = ["dataset", "augmentation", "n", "seed"]
    return df


def test_interaction_gain_larger_on_small_data():
    c = claim("interaction", factor="augmentation", a="eda", b="none", by="n", low=1000, high=4000)
    f = claim_tests.interaction(_aug_table([0, 1, 2]), c)
    assert f.estimate == pytest.approx(2.0) and f.verdict == "reproduced" and f.n_units == 6
    # 2 datasets x 2 seeds: 4 units, below MIN_UNITS: the same exact effect is only underpowered
    f = claim_tests.interaction(_aug_table([0, 1]), c)
    assert f.estimate == pytest.approx(2.0) and f.verdict == "underpowered" and "only 4 replicate units" in f.reason


def test_missing_factor_and_unreadable_grid_are_not_testable():
    df = table({"init": {"lower": 0.0, "upper": 0.0}})
    assert claim_tests.contrast(df, claim("contrast", factor="nope", a="x", b="y")).verdict == "not testable"

    def loader(grid, uri):
        raise ValueError(f"No runs were found for grid {grid!r}. Run it first.")

    out = findings.evaluate([Claim("c", "p", "s", "g1", "contrast", {"factor": "init", "a": "lower", "b": "upper"})],
                            loader=loader)
    assert out[0].verdict == "not run" and "study run --grid g1" in out[0].reason


def test_a_grid_stopped_part_way_gives_no_verdict():
    df = table({"init": {"lower": 0.03, "upper": 0.0}})
    c = Claim("c", "p", "s", "g", "contrast", {"factor": "init", "a": "lower", "b": "upper"})
    whole = findings.evaluate([c], loader=lambda g, u: df, expected={"g": len(df)})
    assert whole[0].verdict == "reproduced"
    part = findings.evaluate([c], loader=lambda g, u: df, expected={"g": len(df) + 3})
    assert part[0].verdict == "incomplete" and part[0].estimate is None
    assert f"{len(df)} of the {len(df) + 3} cells" in part[0].reason and "study run --grid g" in part[0].reason


def test_one_unit_is_never_a_verdict():
    df = table({"init": {"lower": 0.03, "upper": 0.0}}, datasets=("sst2",), seeds=(0,))
    out = findings.evaluate([Claim("c", "p", "s", "g", "contrast", {"factor": "init", "a": "lower", "b": "upper"})],
                            loader=lambda g, u: df)
    assert out[0].verdict == "underpowered" and "only 1 replicate units" in out[0].reason


def test_bad_claims_file(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("- {id: x, paper: p, statement: s, grid: g, test: contrats}\n")
    with pytest.raises(StudyConfigError, match="contrast"):
        claims.load_claims(bad)
    bad.write_text("- {id: x, paper: p, grid: g, test: contrast}\n")
    with pytest.raises(StudyConfigError, match="lacks statement"):
        claims.load_claims(bad)


def test_shipped_claims_name_shipped_grids_and_their_factors():
    for c in claims.load_claims():
        grid = load_grid(c.grid)
        named = []
        for key in ("factor", "by"):
            value = c.params.get(key)
            named += value if isinstance(value, list) else [value] if value else []
        named += list(c.params.get("factors", [])) + list(c.params.get("recipe", {}))
        named += list(c.params.get("where", {}) or {})
        for name in named:
            assert name in grid.factors, f"claim {c.id}: {name!r} is not a factor of {c.grid} ({grid.factors})"


def test_cli_on_an_empty_store(tmp_path):
    out = tmp_path / "findings.md"
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    proc = subprocess.run([sys.executable, "-m", "study.cli", "findings", "--out", str(out), "--tracking-uri", uri],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.count("**not run**") == len(claims.load_claims())
    assert "study run --grid wang2023-cpu" in text


def test_a_factor_that_changed_no_run_is_named():
    # Both checkpoint levels give the same training (same epoch): identical scores in every cell.
    df = table({"ckpt": {"best": 0.0, "low": 0.0}, "tau": {"1": 0.0, "2": -0.03}}, noise=0.01)
    df.loc[df["ckpt"] == "low", "score"] = df.loc[df["ckpt"] == "best", "score"].to_numpy()
    assert findings.inert_factor(df, "ckpt") and not findings.inert_factor(df, "tau")
    c = Claim("c", "p", "s", "g", "recipe_regret", {"recipe": {"ckpt": "low", "tau": 1}, "margin": 1.0})
    out = findings.evaluate([c], loader=lambda g, u: df)
    assert "ckpt changed no run" in out[0].reason and "tau changed" not in out[0].reason
    # Noise between the levels: a real (if small) difference, not flagged.
    noisy = table({"ckpt": {"best": 0.0, "low": 0.0}, "tau": {"1": 0.0, "2": -0.03}}, noise=0.01)
    assert not findings.inert_factor(noisy, "ckpt")
    assert "changed no run" not in findings.evaluate([c], loader=lambda g, u: noisy)[0].reason


def test_every_test_kind_has_a_schema_and_an_implementation():
    assert set(claim_tests.TESTS) == set(claims.PARAMS)


@pytest.mark.parametrize("params, expected", [
    ("{factor: init, a: lower, b: upper, expect: postive}",
     r"claim 'x' \(test contrast\) params.expect: .*'positive', 'negative' or 'negligible'.*got 'postive'"),
    ("{factor: init, a: lower, b: upper, margn: 1.0}",
     r"Unknown key 'margn' in claim 'x' \(test contrast\) params. Allowed: paper_effect, factor, a, b, where, expect,"
     r" margin."
     r" Did you mean 'margin'\?"),
    ("{factor: init, a: lower, b: upper, margin: wide}", r"claim 'x' \(test contrast\) params.margin: .*got 'wide'"),
    ("{factor: init, a: lower}", r"claim 'x' \(test contrast\) params needs 'b' \(required keys: factor, a, b\)"),
])
def test_bad_claim_parameters_are_refused_in_one_line(tmp_path, params, expected):
    bad = tmp_path / "claims.yaml"
    bad.write_text(f"- {{id: x, paper: p, statement: s, grid: g, test: contrast, params: {params}}}\n")
    with pytest.raises(StudyConfigError, match=expected) as info:
        claims.load_claims(bad)
    assert "\n" not in str(info.value)


def test_other_kinds_check_their_parameters(tmp_path):
    bad = tmp_path / "claims.yaml"
    for test, params, expected in [
        ("worst_cost", "{factors: [], published: 4.3}", "params.factors"),
        ("recommender", "{min_datasets: 1}", "params.min_datasets"),
        ("largest_share", "{factor: loss, n_boot: 0}", "params.n_boot"),
        ("describe", "{reason: x}", "Unknown key 'reason'"),
    ]:
        bad.write_text(f"- {{id: x, paper: p, statement: s, grid: g, test: {test}, params: {params}}}\n")
        with pytest.raises(StudyConfigError, match=expected):
            claims.load_claims(bad)


def test_four_units_never_give_a_verdict_from_a_bootstrap():
    # the distiller-cpu shape: 2 datasets x 2 seeds; the family explains more, but on 4 units only
    df = table({"loss": {"a": 0.0, "b": 0.01}, "mapping": {"skip": 0.0, "upper": 0.0},
                "distance": {"ce": 0.0, "mse": 0.002}}, seeds=(0, 1), noise=0.01)
    f = claim_tests.largest_share(df, claim("largest_share", factor=["loss", "mapping"], n_boot=100))
    assert f.n_units == 4 and f.verdict in ("underpowered", "inconclusive") and f.mde is not None


def test_power_and_seed_noise_reach_the_markdown():
    df = table({"init": {"lower": 0.01, "upper": 0.0}}, seeds=range(10), noise=0.02)
    c = Claim("c", "p", "s", "g", "contrast", {"factor": "init", "a": "lower", "b": "upper", "paper_effect": 17.8})
    f = findings.evaluate([c], loader=lambda g, u: df)[0]
    assert f.mde is not None and f.mde > 0 and f.paper_effect == 17.8 and f.detectable is (17.8 >= f.mde)
    assert set(f.seed_sd) == {"sst2", "mrpc"} and 0 < f.seed_share <= 1
    assert all(1.2 < sd < 3.0 for sd in f.seed_sd.values())  # noise 0.02 -> about 2 points
    text = findings.to_markdown([f])
    for col in ("MDE", "paper effect", "detectable", "seed SD", "units"):
        assert col in text.splitlines()[4]
    assert "minimum detectable effect" in text and "Seed noise" in text
    if f.verdict in ("inconclusive", "underpowered"):
        assert "needs " in f.power_note and "80% power" in f.power_note
