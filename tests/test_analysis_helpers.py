"""The analysis package's shared helpers: the column check and the cluster bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import cluster_bootstrap_ci, cluster_draws
from analysis.columns import check_roles, column_list, observed_levels, require_columns


def test_require_columns_names_role_column_and_closest():
    with pytest.raises(ValueError, match=r"^factor column 'objectiv' is not in the table\. Available columns: "
                                         r"objective, score\. Did you mean 'objective'\?$"):
        require_columns(["objective", "score"], [("metric", "score"), ("factor", "objectiv")])
    with pytest.raises(KeyError, match="column 'x' is not in runs.csv"):
        require_columns(["a"], [("", "x")], "runs.csv", error=KeyError)
    require_columns(["a", "b"], [("metric", "a"), ("block", "b")])


def test_check_roles_and_names():
    assert column_list(" a, b ,,c") == ["a", "b", "c"] == column_list(["a", " b", "", "c"])
    with pytest.raises(ValueError, match="'d' is given as both factor and block"):
        check_roles(["s", "f", "d"], "s", ["f", "d"], ["d"])
    with pytest.raises(ValueError, match="no factors given"):
        check_roles(["s"], "s", [], [])


def test_observed_levels_keep_category_order():
    cat = pd.Series(pd.Categorical(["b", "a"], categories=["c", "b", "a"]))
    assert observed_levels(cat) == ["b", "a"]
    assert observed_levels(pd.Series([3, 1, None, 2])) == [1.0, 2.0, 3.0]


def test_cluster_draws_are_one_stream():
    # one (B, K) call gives the draws that B successive calls of K would: the seeded numbers the
    # two former bootstraps produced stay the same
    a = cluster_draws(5, 40, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    b = np.stack([rng.integers(0, 5, size=5) for _ in range(40)])
    assert a.shape == (40, 5) and (a == b).all()


def test_cluster_bootstrap_resamples_units_not_rows():
    # two units of very different sizes: a unit-level draw keeps each unit's rows together
    units = pd.Series(["u1"] * 9 + ["u2"])
    values = np.array([1.0] * 9 + [0.0])
    low, high = cluster_bootstrap_ci(units, lambda rows: float(values[rows].mean()), n_boot=500)
    assert low == 0.0 and high == 1.0
    nan = cluster_bootstrap_ci(units, lambda rows: None, n_boot=10)
    assert np.isnan(nan[0]) and np.isnan(nan[1])
