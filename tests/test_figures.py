"""Figures (analysis.figures): each returns a Figure whose axes hold the data asked for."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from analysis.figures import (
    cost_bars,
    gain_by_size,
    interaction_heatmap,
    level_means,
    main_effects,
    score_vs_train_size,
)


@pytest.fixture
def runs() -> pd.DataFrame:
    # 2 datasets x 3 objectives x 2 initialisations x 2 seeds; (attention, random) never run.
    rows = []
    for d, base in (("sst2", 0.9), ("rte", 0.6)):
        for i, obj in enumerate(("logit", "hidden", "attention")):
            for j, init in enumerate(("random", "teacher_lower")):
                if (obj, init) == ("attention", "random"):
                    continue
                for seed in (0, 1):
                    rows.append((d, obj, init, seed, base + 0.01 * i + 0.02 * j + 0.001 * seed))
    df = pd.DataFrame(rows, columns=["dataset", "objective", "initialisation", "seed", "score"])
    for c in ("dataset", "objective", "initialisation"):
        df[c] = df[c].astype("category")
    return df


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_level_means_by_hand():
    df = pd.DataFrame({"f": ["a", "a", "a", "b"], "y": [1.0, 2.0, 3.0, 5.0]})
    table = level_means(df, "y", "f")
    a = table.iloc[0]
    assert (a["level"], a["mean"], a["n"]) == ("a", 2.0, 3)
    # t_{0.975, 2} = 4.3027, sd = 1, n = 3
    assert a["ci_high"] - a["mean"] == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert np.isnan(table.iloc[1]["ci_low"])  # one run: no interval


def test_main_effects_one_panel_per_factor(runs):
    fig = main_effects(runs, "score", ["objective", "initialisation"])
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["objective", "initialisation"]
    ticks = [t.get_text().split("\n")[0] for t in axes[0].get_xticklabels()]
    assert ticks == ["attention", "hidden", "logit"]
    # the plotted means are the level means
    points = axes[1].lines[0].get_ydata()
    expected = runs.groupby("initialisation", observed=True)["score"].mean().to_numpy()
    np.testing.assert_allclose(points, expected)


def test_interaction_heatmap_cells(runs):
    fig = interaction_heatmap(runs, "score")  # default objective x initialisation
    mesh = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0]
    values = mesh.get_array()
    assert values.size == 3 * 2
    assert int(np.ma.count_masked(values)) == 1  # (attention, random) was never run
    assert fig.axes[0].get_ylabel() == "objective"


def test_interaction_heatmap_block_centred(runs):
    fig = interaction_heatmap(runs, "score", block=["dataset"])
    values = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0].get_array()
    # centred within dataset: the dataset offset (0.3) is gone, cells are within a few points of 0
    assert np.nanmax(np.abs(values.compressed())) < 0.05


def test_cost_bars_one_bar_per_costed_level():
    cost = pd.DataFrame({
        "factor": ["objective", "objective", "objective", "init"],
        "level": ["logit", "hidden", "attention", "random"],
        "mean_cost": [0.0, 0.02, np.nan, 0.01],
        "worst_cost": [0.0, 0.05, np.nan, 0.03],
        "blocks": [2, 2, 0, 2],
    })
    fig = cost_bars(cost)
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    assert widths == [0.0, 0.02, 0.01]  # no bar for the level without a block
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "objective = logit", "objective = hidden", "init = random"
    ]


@pytest.fixture
def sizes() -> pd.DataFrame:
    # Three datasets of growing size, two students (blocks) each; augmentation helps less as
    # data grows. Student s2 did not run augmentation on task c (that block has one level).
    rows = [
        ("a", 100, "s1", False, 0.60), ("a", 100, "s1", True, 0.70), ("a", 100, "s1", True, 0.66),
        ("a", 100, "s2", False, 0.50), ("a", 100, "s2", True, 0.56),
        ("b", 1000, "s1", False, 0.80), ("b", 1000, "s1", True, 0.84),
        ("b", 1000, "s2", False, 0.70), ("b", 1000, "s2", True, 0.72),
        ("c", 10000, "s1", False, 0.90), ("c", 10000, "s1", True, 0.90),
        ("c", 10000, "s2", False, 0.85),
    ]
    return pd.DataFrame(rows, columns=["task", "size", "student", "aug", "score"])


def test_gain_by_size_by_hand(sizes):
    table = gain_by_size(sizes, "score", "size", "aug", block=["task", "student"], stat="max")
    assert (table.attrs["baseline"], table.attrs["other"]) == (False, True)
    # a: s1 best aug .70 - .60 = .10, s2 .56 - .50 = .06 -> mean .08
    # b: s1 .04, s2 .02 -> .03;  c: only s1 ran both -> 0
    np.testing.assert_allclose(table["gain"], [0.08, 0.03, 0.0], atol=1e-12)
    assert table["blocks"].tolist() == [2, 2, 1]
    assert table["runs_other"].tolist() == [3, 2, 1]
    mean = gain_by_size(sizes, "score", "size", "aug", block=["task", "student"], stat="mean")
    assert mean["gain"].iloc[0] == pytest.approx(((0.68 - 0.60) + 0.06) / 2)


def test_score_vs_train_size_log_x_and_gain(sizes):
    fig = score_vs_train_size(sizes, "score", "size", "aug", label="task",
                              block=["task", "student"])
    left, right = fig.axes[0], fig.axes[1]
    assert left.get_xscale() == "log" and right.get_xscale() == "log"
    gain = right.containers[0].lines[0]
    np.testing.assert_allclose(gain.get_xdata(), [100, 1000, 10000])
    np.testing.assert_allclose(gain.get_ydata(), [0.08, 0.03, 0.0], atol=1e-12)
    assert [t.get_text() for t in right.texts] == ["a", "b", "c"]
    assert len(left.get_lines()) == 2  # one line per augmentation level


def test_gain_needs_two_levels(sizes):
    with pytest.raises(ValueError, match="exactly two"):
        gain_by_size(sizes, "score", "size", "task")  # three levels


def test_figures_name_a_missing_column(runs):
    with pytest.raises(ValueError, match="'objectiv'.*Did you mean 'objective'"):
        main_effects(runs, "score", ["objectiv"])
