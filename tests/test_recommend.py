"""analysis.recommend and analysis.lodo: a planted rule the recommender must find, exact baselines,
no leakage, dataset features (analysis.dataset_features), and leave-one-dataset-out on the
published Distiller table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analysis.dataset_features as dataset_features
import analysis.lodo as lodo
import analysis.recommend as recommend
from analysis.dataset_features import dataset_meta_features
from analysis.lodo import evaluate_lodo
from analysis.recommend import fit_recommender, rank_candidates

SIZES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0]


def _planted(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ten datasets; A is best where ``size`` < 0.5, B where it is larger, C is a generalist
    that is second everywhere (so it is the best single recipe), D is poor everywhere.

    Regrets per dataset: recipe (C) 0.05, random (0 + .05 + .1 + .1) / 4 = .0625, oracle 0.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i, size in enumerate(SIZES):
        level = rng.uniform(0.6, 0.8)  # datasets differ in how hard they are
        bonus = {"A": 0.1 * (size < 0.5), "B": 0.1 * (size >= 0.5), "C": 0.05, "D": 0.0}
        for config, b in bonus.items():
            for replicate in range(2):
                rows.append((f"d{i}", config, replicate, level + b + rng.normal(0, 0.002)))
    runs = pd.DataFrame(rows, columns=["dataset", "config", "seed", "ratio"])
    features = pd.DataFrame(
        {"size": SIZES, "noise": rng.normal(size=len(SIZES))},
        index=pd.Index([f"d{i}" for i in range(len(SIZES))], name="dataset"),
    )
    return runs, features


def test_recommender_finds_the_planted_rule():
    runs, features = _planted()
    table = evaluate_lodo(runs, "ratio", ["config"], "dataset", features, seed=0)
    per_dataset, mean = table.iloc[:-1], table.iloc[-1]
    assert list(per_dataset["dataset"]) == [f"d{i}" for i in range(10)]
    assert mean["dataset"] == "mean"
    assert (per_dataset["n_candidates"] == 4).all()
    # C is second everywhere, so it is the training recipe on every fold: regret 0.05 each.
    assert (per_dataset["recipe"] == "C").all()
    assert mean["regret_best_recipe"] == pytest.approx(0.05, abs=0.005)
    assert mean["regret_random"] == pytest.approx(0.0625, abs=0.005)
    # The recommender mostly picks A on small datasets and B on large ones; predicting the raw
    # target it must also explain each dataset's level from its two features, which costs it a
    # miss or two (a miss costs 0.05 or 0.1).
    expected = ["A" if s < 0.5 else "B" for s in SIZES]
    assert (per_dataset["recommended"] == expected).sum() >= 8
    assert mean["regret_recommender"] < 0.025
    assert mean["regret_recommender"] < mean["regret_best_recipe"] < mean["regret_random"]


def test_centred_target_recovers_the_rule_exactly():
    runs, features = _planted()
    table = evaluate_lodo(runs, "ratio", ["config"], "dataset", features, seed=0, centre=True)
    assert list(table["recommended"].iloc[:-1]) == ["A" if s < 0.5 else "B" for s in SIZES]
    assert table.iloc[-1]["regret_recommender"] == pytest.approx(0.0, abs=1e-9)


def test_lodo_is_deterministic_given_a_seed():
    runs, features = _planted()
    runs, features = runs[runs["dataset"].isin(["d0", "d3", "d6", "d9"])], features.loc[["d0", "d3", "d6", "d9"]]
    a = evaluate_lodo(runs, "ratio", ["config"], "dataset", features, seed=3)
    b = evaluate_lodo(runs, "ratio", ["config"], "dataset", features, seed=3)
    pd.testing.assert_frame_equal(a, b)
    # The random forest draws bootstrap samples: the seed fixes them, another seed moves them.
    candidates = pd.DataFrame({"config": ["A", "B", "C", "D"]})
    predict = lambda seed: fit_recommender(runs, "ratio", ["config"], "dataset", features, seed, model="rf").predict(
        candidates, features.loc["d0"]
    )
    np.testing.assert_array_equal(predict(3), predict(3))
    assert not np.array_equal(predict(3), predict(4))


def test_regret_random_is_the_exact_mean_regret():
    # Held-out d3: A 0.9, B 0.8, C runs 0.5 and 0.7 (mean 0.6). Regrets 0, .1, .3; mean 0.4 / 3.
    runs = pd.DataFrame(
        [
            ("d1", "A", 0.9), ("d1", "B", 0.7), ("d1", "C", 0.6),
            ("d2", "A", 0.8), ("d2", "B", 0.75), ("d2", "C", 0.5),
            ("d3", "A", 0.9), ("d3", "B", 0.8), ("d3", "C", 0.5), ("d3", "C", 0.7),
        ],
        columns=["dataset", "config", "ratio"],
    )
    features = pd.DataFrame({"size": [1.0, 2.0, 3.0]}, index=["d1", "d2", "d3"])
    table = evaluate_lodo(runs, "ratio", ["config"], "dataset", features).set_index("dataset")
    d3 = table.loc["d3"]
    assert d3["n_candidates"] == 3
    assert d3["best"] == pytest.approx(0.9)
    assert d3["regret_random"] == pytest.approx((0 + 0.1 + 0.3) / 3)
    # A ranks first on d1 and d2, so it is the recipe; it is also best on d3.
    assert d3["recipe"] == "A" and d3["regret_best_recipe"] == pytest.approx(0.0)
    assert 0.0 <= d3["regret_recommender"] <= 0.3 + 1e-12


def test_recipe_falls_back_when_the_winner_was_not_run():
    # A wins on d1, d2 but was never run on d3; B is next in the recipe table and was.
    runs = pd.DataFrame(
        [
            ("d1", "A", 0.9), ("d1", "B", 0.8), ("d1", "C", 0.7),
            ("d2", "A", 0.9), ("d2", "B", 0.8), ("d2", "C", 0.7),
            ("d3", "B", 0.6), ("d3", "C", 0.65),
        ],
        columns=["dataset", "config", "ratio"],
    )
    features = pd.DataFrame({"size": [1.0, 2.0, 3.0]}, index=["d1", "d2", "d3"])
    d3 = evaluate_lodo(runs, "ratio", ["config"], "dataset", features).set_index("dataset").loc["d3"]
    assert d3["recipe"] == "B" and d3["recipe_fallbacks"] == 1
    assert d3["regret_best_recipe"] == pytest.approx(0.05)


def test_held_out_dataset_never_reaches_the_fit(monkeypatch):
    runs, features = _planted()
    seen = []
    real_fit = recommend.fit_recommender

    def spy(df, target, factors, dataset_col, features, seed=0, **kwargs):
        model = real_fit(df, target, factors, dataset_col, features, seed, **kwargs)
        seen.append((set(df[dataset_col]), set(features.index), model))
        return model

    monkeypatch.setattr(lodo, "fit_recommender", spy)
    datasets = ["d0", "d2", "d5", "d7", "d9"]
    evaluate_lodo(runs[runs["dataset"].isin(datasets)], "ratio", ["config"], "dataset", features)
    assert len(seen) == len(datasets)
    for held_out, (fit_rows, fit_features, model) in zip(datasets, seen):
        others = set(datasets) - {held_out}
        assert fit_rows == others
        assert fit_features == others  # ``features`` holds all ten datasets; only these went in
        assert set(model.training_datasets_) == others
        assert model.n_training_rows_ == 8 * len(others)  # 4 configurations x 2 replicates


def test_embedding_pca_is_fit_on_training_datasets_only():
    runs, features = _planted()
    rng = np.random.default_rng(1)
    emb = pd.DataFrame(rng.normal(size=(10, 6)), index=features.index, columns=[f"emb_{j}" for j in range(6)])
    features = features.join(emb)
    train = runs[runs["dataset"] != "d0"]
    model = fit_recommender(train, "ratio", ["config"], "dataset", features, seed=0, n_pca=2)
    assert model.dataset_features.pca.n_samples_ == 9  # d0's row of ``features`` was not used
    assert model.dataset_features.pc_cols == ["emb_pc1", "emb_pc2"]
    assert model.training_datasets_ == tuple(f"d{i}" for i in range(1, 10))


def test_rank_candidates_sorts_and_ignores_unknown_levels():
    runs, features = _planted()
    model = fit_recommender(runs, "ratio", ["config"], "dataset", features, seed=0)
    candidates = pd.DataFrame({"config": ["D", "A", "B", "never_seen"]})
    small = rank_candidates(model, candidates, features.loc["d0"])
    assert list(small.columns) == ["config", "predicted"]
    assert small["predicted"].is_monotonic_decreasing
    assert small["config"].iloc[0] == "A"
    large = rank_candidates(model, candidates, {"size": 0.95, "noise": 0.0})
    assert large["config"].iloc[0] == "B"
    with pytest.raises(KeyError, match="config"):
        model.predict(pd.DataFrame({"other": ["A"]}), features.loc["d0"])


def test_fit_needs_every_datasets_features():
    runs, features = _planted()
    with pytest.raises(KeyError, match="d9"):
        fit_recommender(runs, "ratio", ["config"], "dataset", features.drop(index="d9"))


def test_dataset_meta_features_from_whatever_columns_exist():
    runs = pd.DataFrame(
        {
            "dataset": ["sst2", "sst2", "stsb", "mytask"],
            "teacher_score": [0.92, 0.92, 0.88, 0.7],
            "n_train": [67349, 67349, 5749, 1000],
            "score": [0.9, 0.91, 0.85, 0.6],
            "score_metric": ["accuracy", "accuracy", "pearson+spearman", "f1"],
        }
    )
    meta = dataset_meta_features(runs, "dataset")
    assert list(meta.index) == ["mytask", "sst2", "stsb"]
    assert meta.loc["sst2", "log10_n_train"] == pytest.approx(np.log10(67349))
    assert meta.loc["stsb", "teacher_score"] == pytest.approx(0.88)
    # Runs without n_labels or task_type: a correlation score is a regression; no label count.
    assert list(meta["is_regression"]) == [0.0, 0.0, 1.0] and "n_labels" not in meta.columns
    extra = pd.DataFrame({"mean_text_length": [10.0, 20.0], "teacher_score": [0.5, 0.5]}, index=["sst2", "stsb"])
    meta = dataset_meta_features(runs, "dataset", features=extra)
    assert meta.loc["stsb", "mean_text_length"] == 20.0
    assert meta.loc["stsb", "teacher_score"] == 0.5  # the passed features win


def test_dataset_meta_features_from_logged_task_params():
    runs = pd.DataFrame({"dataset": ["sst2", "stsb", "conll2003"], "n_labels": [2, 1, 9],
                         "task_type": ["classification", "regression", "token_classification"],
                         "score_metric": ["accuracy", "pearson+spearman", "f1"]})
    meta = dataset_meta_features(runs, "dataset")
    assert meta["n_labels"].to_dict() == {"conll2003": 9.0, "sst2": 2.0, "stsb": 1.0}
    assert meta["is_regression"].to_dict() == {"conll2003": 0.0, "sst2": 0.0, "stsb": 1.0}
    with pytest.raises(KeyError, match="dataset column 'task'"):
        dataset_meta_features(runs, "task")


# --------------------------------------------------------------------------- Distiller


def _distiller_available() -> bool:
    d = dataset_features.distiller_dir()
    return (d / "auto_distiller_tabular_data.csv").exists() and (d / "dataset_features_50_concat.csv").exists()


needs_distiller = pytest.mark.skipif(
    not _distiller_available(), reason="the published Distiller table (<shared>/data/published/distiller) is absent"
)


@needs_distiller
def test_distiller_features():
    features = dataset_features.load_distiller_features()
    assert len(features) == 10 and {"mnli", "stsb", "boolq", "cloth"} <= set(features.index)
    assert features.loc["mnli", "log10_n_train"] == pytest.approx(np.log10(392702))
    assert features.loc["stsb", "is_regression"] == 1.0
    assert sum(c.startswith("emb_") for c in features.columns) == 100
    assert not features.isna().any().any()


def _script():
    """paper_figures/autodistiller_lodo.py as a module (paper_figures is not a package)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "paper_figures"))
    try:
        import autodistiller_lodo
    finally:
        sys.path.pop(0)
    return autodistiller_lodo


def test_script_exits_2_on_a_missing_table(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _script().main(["--out", str(tmp_path), "--csv", str(tmp_path / "absent.csv")])
    assert exit_.value.code == 2
    assert "absent.csv" in capsys.readouterr().err


@needs_distiller
def test_distiller_lodo_end_to_end(tmp_path):
    table = _script().main(["--out", str(tmp_path)])
    assert (tmp_path / "lodo.csv").exists() and (tmp_path / "lodo.png").stat().st_size > 0
    written = pd.read_csv(tmp_path / "lodo.csv")
    assert list(written["task"]) == ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst-2", "stsb", "mean"]
    per_task = table.iloc[:-1].set_index("task")
    # TinyBERT4 <- BERT_BASE configurations per task.
    assert per_task["n_candidates"].tolist() == [72, 44, 64, 100, 74, 88, 61, 80]
    for column in ("regret_recommender", "regret_best_recipe", "regret_random"):
        assert (per_task[column] >= 0).all()
    # Model-free numbers, pinned: a random pick's expected regret, and the training recipe's
    # collapse on STS-B (mi/skip/ce: a cross-entropy KD loss on a regression task).
    assert per_task.loc["stsb", "regret_random"] == pytest.approx(0.26438, abs=1e-4)
    assert per_task.loc["stsb", "recipe"] == "mi/skip/ce/True/0.5"
    assert per_task.loc["stsb", "regret_best_recipe"] == pytest.approx(1.14779, abs=1e-4)
    assert table.iloc[-1]["regret_random"] == pytest.approx(0.06372, abs=1e-4)
    # The finding: on average the recommender's pick is closer to each task's best than either baseline.
    mean = table.iloc[-1]
    assert mean["regret_recommender"] < mean["regret_random"] < mean["regret_best_recipe"]


def _tidy_grid() -> pd.DataFrame:
    """A grid's tidy table as ``analysis.table.load_runs`` gives it (categoricals), with an
    effect that is the same everywhere: attention_kl +0.02, teacher_lower +0.04."""
    effect = {("logit_kd", "random"): 0.0, ("logit_kd", "teacher_lower"): 0.04,
              ("attention_kl", "random"): 0.02, ("attention_kl", "teacher_lower"): 0.06}
    base = {"sst2": 0.95, "cola": 0.6, "mrpc": 0.9, "rte": 0.85, "stsb": 0.97}
    teacher_score = {"sst2": 0.92, "cola": 0.55, "mrpc": 0.88, "rte": 0.7, "stsb": 0.88}
    rows = []
    for dataset, b in base.items():
        for student, shift in [("L2_H384", -0.05), ("L4_H512", 0.0)]:
            for (objective, init), e in effect.items():
                for seed, noise in [(0, 0.01), (1, -0.01)]:  # the seed mean is exactly b + shift + e
                    ratio = b + shift + e + noise
                    rows.append({"dataset": dataset, "student": student, "objective": objective,
                                 "initialisation": init, "augmentation": "none", "seed": str(seed),
                                 "teacher": f"teacher-{dataset}", "teacher_score": teacher_score[dataset],
                                 "score": ratio * teacher_score[dataset], "score_ratio": ratio})
    df = pd.DataFrame(rows)
    for c in ["dataset", "student", "objective", "initialisation", "augmentation", "seed"]:
        df[c] = df[c].astype("category")
    return df


def test_grid_lodo_on_a_tidy_table():
    table = lodo.grid_lodo(_tidy_grid())
    per_dataset = table.iloc[:-1].set_index("dataset")
    assert sorted(per_dataset.index) == ["cola", "mrpc", "rte", "sst2", "stsb"]
    # student is context: two blocks per dataset of four configurations (objective x init).
    assert (per_dataset["n_blocks"] == 2).all() and (per_dataset["n_candidates"] == 8).all()
    # Regrets in each block: .06, .02, .04, 0 -> a random pick's expectation is .03.
    assert per_dataset["regret_random"].to_numpy() == pytest.approx([0.03] * 5)
    assert (per_dataset["recipe"] == "attention_kl/teacher_lower; attention_kl/teacher_lower").all()
    assert per_dataset["regret_best_recipe"].to_numpy() == pytest.approx([0.0] * 5, abs=1e-12)
    assert per_dataset["regret_recommender"].to_numpy() == pytest.approx([0.0] * 5, abs=1e-12)


def test_grid_lodo_needs_a_varying_choice():
    df = _tidy_grid()
    df = df[(df["objective"] == "logit_kd") & (df["initialisation"] == "random")]
    with pytest.raises(ValueError, match="no choice varies"):
        lodo.grid_lodo(df)
