"""A recommender of KD configurations for a new dataset (AutoDistiller, He et al. 2021, sec. 6).

He et al., "Distiller: A Systematic Study of Model Distillation Methods in Natural Language
Processing" (SustaiNLP 2021), fit a model on their hyper-parameter search that predicts a
distillation pipeline's *score ratio* (student score / teacher score) from the pipeline's choices
and a feature vector of the dataset, then rank candidate pipelines on a dataset never seen in the
fit. This module does the same with scikit-learn, for the published Distiller table and for our
own grids, and measures it by leave-one-dataset-out (LODO) regret against two baselines: the best
single recipe of the training datasets (``analysis.recipe.best_recipe``) and a random candidate.

Vocabulary:
- *factors*: the columns that make a configuration, the choices being recommended
  (e.g. ``intermediate_loss_type``, ``kd_loss_type``).
- *context*: columns that describe the problem rather than the choice, given by the user and not
  recommended (e.g. the student ``Model`` and the ``Teacher``). They are inputs of the model, and
  candidates compete only within one (dataset, context) block.
- *dataset features*: one numeric row per dataset (``log10_n_train``, ``n_labels``, an embedding
  ``emb_0..``), a DataFrame indexed by dataset name.
Every other column (seeds, augmentation settings that are not factors) is a nuisance: the
recommender trains on the raw runs and ignores it; a candidate's actual score in evaluation is the
mean over its runs in the block.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from analysis.recipe import best_recipe, configuration_scores

VERSION = "1"

SHARED_DIR_ENV = "STUDY_SHARED_DIR"
EMBEDDING_PREFIX = "emb_"

# The choices searched in the Distiller table (``distiller_lodo`` says why these).
DISTILLER_FACTORS = ("intermediate_loss_type", "intermediate_strategy", "kd_loss_type", "mixup", "alpha")
DISTILLER_CONTEXT = ("Model", "Teacher")
DISTILLER_TARGET = "ratio"
DISTILLER_DATASET_COL = "task"


# --------------------------------------------------------------------------- dataset features


def shared_dir() -> Path:
    """The shared folder next to the project: ``$STUDY_SHARED_DIR``, else ``<project>/../shared``."""
    default = Path(__file__).resolve().parents[1].parent / "shared"
    return Path(os.environ.get(SHARED_DIR_ENV) or default)


def distiller_dir() -> Path:
    """The folder of the published Distiller results (``<shared>/data/published/distiller``)."""
    return shared_dir() / "data" / "published" / "distiller"


def load_distiller_runs(path: str | Path | None = None) -> pd.DataFrame:
    """The 1,238-run Distiller search table (``auto_distiller_tabular_data.csv``), as published.

    ``ratio`` is student score / teacher score (a fraction; negative when a CoLA or STS-B student
    collapsed to a negative correlation).
    """
    path = Path(path) if path is not None else distiller_dir() / "auto_distiller_tabular_data.csv"
    return pd.read_csv(path)


def load_distiller_features(path: str | Path | None = None) -> pd.DataFrame:
    """The AutoDistiller dataset features (``dataset_features_50_concat.csv``), one row per task.

    Returns a DataFrame indexed by ``task`` with ``log10_n_train`` (log10 of the training set
    size), ``n_labels`` (1 for regression), ``is_regression`` (0/1) and the 100-dimensional
    dataset embedding as ``emb_0`` ... ``emb_99``. Raises FileNotFoundError if the file is absent.
    """
    path = Path(path) if path is not None else distiller_dir() / "dataset_features_50_concat.csv"
    raw = pd.read_csv(path)
    raw["task"] = raw["task"].astype(str)
    emb_cols = [c for c in raw.columns if c.isdigit()]
    out = pd.DataFrame(index=pd.Index(raw["task"], name="task"))
    out["log10_n_train"] = np.log10(raw["#example"].to_numpy(dtype=float))
    out["n_labels"] = raw["#label"].to_numpy(dtype=float)
    out["is_regression"] = (raw["#label"].to_numpy() == 1).astype(float)
    emb = pd.DataFrame(
        raw[emb_cols].to_numpy(dtype=float),  # (n_tasks, 100)
        index=out.index,
        columns=[f"{EMBEDDING_PREFIX}{c}" for c in emb_cols],
    )
    return pd.concat([out, emb], axis=1)


# Which input column may hold each meta-feature, first match wins.
_META_SOURCES: dict[str, tuple[str, ...]] = {
    "n_train": ("n_train", "train_size", "n_train_examples", "num_train_examples", "#example"),
    "n_labels": ("n_labels", "num_labels", "#label"),
    "mean_text_length": ("mean_text_length", "text_length", "avg_text_length", "mean_length"),
    "teacher_score": ("teacher_score",),
}


def dataset_meta_features(
    df: pd.DataFrame,
    dataset_col: str = "dataset",
    *,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Meta-features of each dataset of a run table, from whichever columns it has.

    Per dataset (the mean over its rows): ``log10_n_train`` (from ``n_train``/``train_size``/
    ``#example``...), ``n_labels`` (``n_labels``/``num_labels``/``#label``), ``is_regression``
    (0/1, from ``is_regression``, ``task_type == "regression"`` or ``n_labels == 1``),
    ``mean_text_length`` (in whatever unit the column has) and ``teacher_score`` (the metric as a
    fraction). A GLUE task known to ``study.tasks.catalogue.TASKS`` fills ``n_labels`` and ``is_regression``
    when the table lacks them. ``features`` (indexed by dataset) is joined last and wins on a
    column name clash, for features computed elsewhere (e.g. a text embedding: name its columns
    ``emb_*`` to have the recommender reduce them by PCA).

    Returns a DataFrame indexed by dataset; columns that no source provides are left out.
    Raises KeyError if ``dataset_col`` is missing.
    """
    if dataset_col not in df.columns:
        raise KeyError(f"no {dataset_col!r} column (the table has {list(df.columns)})")
    groups = df.groupby(dataset_col, observed=True, sort=True)
    out = pd.DataFrame(index=pd.Index(sorted(df[dataset_col].unique()), name=dataset_col))
    for name, sources in _META_SOURCES.items():
        source = next((c for c in sources if c in df.columns), None)
        if source is None:
            continue
        values = groups[source].mean().astype(float)
        if name == "n_train":
            out["log10_n_train"] = np.log10(values.clip(lower=1))
        else:
            out[name] = values
    if "is_regression" in df.columns:
        out["is_regression"] = groups["is_regression"].mean().astype(float)
    elif "task_type" in df.columns:
        out["is_regression"] = groups["task_type"].agg(lambda s: float((s == "regression").mean()))
    _fill_from_task_registry(out)
    if "is_regression" not in out.columns and "n_labels" in out.columns:
        out["is_regression"] = (out["n_labels"] == 1).astype(float)
    if features is not None:
        extra = features.reindex(out.index)
        out = out.drop(columns=[c for c in extra.columns if c in out.columns]).join(extra)
    return out


def _fill_from_task_registry(out: pd.DataFrame) -> None:
    try:
        from study.tasks.catalogue import TASKS
    except ImportError:  # the analysis can run without the runner installed
        return
    known = {d: TASKS[str(d)] for d in out.index if str(d) in TASKS}
    if not known:
        return
    for name, value in (
        ("n_labels", lambda spec: float(spec.num_labels)),
        ("is_regression", lambda spec: float(spec.task_type == "regression")),
    ):
        column = out[name] if name in out.columns else pd.Series(np.nan, index=out.index)
        filled = pd.Series({d: value(spec) for d, spec in known.items()}, dtype=float)
        out[name] = column.fillna(filled)


# --------------------------------------------------------------------------- the recommender


class _DatasetFeatures:
    """Turns the dataset-feature table into model inputs, fit on the training datasets only.

    Numeric columns pass through (scaled later, in the pipeline); the ``emb_*`` columns are
    standardised and reduced to ``n_pca`` principal components (at most n_train_datasets - 1),
    so that a 100-dimensional embedding does not swamp the handful of datasets it describes.
    Non-numeric columns are kept as categories.
    """

    def __init__(self, n_pca: int):
        self.n_pca = n_pca

    def fit(self, features: pd.DataFrame) -> "_DatasetFeatures":
        self.emb_cols = [c for c in features.columns if str(c).startswith(EMBEDDING_PREFIX)]
        rest = [c for c in features.columns if c not in self.emb_cols]
        self.numeric_cols = [c for c in rest if pd.api.types.is_numeric_dtype(features[c])]
        self.categorical_cols = [c for c in rest if c not in self.numeric_cols]
        n_components = min(self.n_pca, len(features) - 1, len(self.emb_cols))
        self.pca = None
        if n_components >= 1:
            emb = features[self.emb_cols].to_numpy(dtype=float)
            self.emb_scaler = StandardScaler().fit(emb)
            self.pca = PCA(n_components=n_components, svd_solver="full").fit(self.emb_scaler.transform(emb))
        self.pc_cols = [f"emb_pc{i + 1}" for i in range(n_components if self.pca is not None else 0)]
        return self

    def transform(self, features: pd.DataFrame) -> pd.DataFrame:
        out = features[self.numeric_cols + self.categorical_cols].copy()
        if self.pca is not None:
            emb = self.emb_scaler.transform(features[self.emb_cols].to_numpy(dtype=float))
            pcs = self.pca.transform(emb)  # (n_datasets, n_components)
            for j, c in enumerate(self.pc_cols):
                out[c] = pcs[:, j]
        return out

    @property
    def numeric_out(self) -> list[str]:
        return self.numeric_cols + self.pc_cols


def _as_frame(features_row) -> pd.DataFrame:
    if isinstance(features_row, pd.DataFrame):
        if len(features_row) != 1:
            raise ValueError(f"expected one row of dataset features, got {len(features_row)}")
        return features_row
    if isinstance(features_row, pd.Series):
        return features_row.to_frame().T.infer_objects()
    if isinstance(features_row, Mapping):
        return pd.DataFrame([dict(features_row)])
    raise TypeError(f"dataset features must be a Series, a mapping or a one-row DataFrame, not {type(features_row)}")


@dataclass
class Recommender:
    """A fitted recommender: ``predict(candidates, features_row)`` gives each candidate's target.

    ``training_datasets_`` and ``n_training_rows_`` record what the fit saw, so that a caller (or a
    test) can check that a held-out dataset took no part in it.
    """

    target: str
    factors: list[str]
    context: list[str]
    dataset_col: str
    pipeline: Pipeline
    dataset_features: _DatasetFeatures
    centred: bool = False
    training_datasets_: tuple = field(default=())
    n_training_rows_: int = 0

    @property
    def level_cols(self) -> list[str]:
        return self.factors + self.context

    def _design(self, rows: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
        """Model inputs: levels as strings (one encoding for bool, float and str levels), then
        the transformed dataset features of each row (``features`` aligned with ``rows``)."""
        x = rows[self.level_cols].astype(str).reset_index(drop=True)
        feats = self.dataset_features.transform(features).reset_index(drop=True)
        for c in self.dataset_features.categorical_cols:
            feats[c] = feats[c].astype(str)
        return pd.concat([x, feats], axis=1)

    def predict(self, candidates: pd.DataFrame, features_row) -> np.ndarray:
        """Predicted target (e.g. score ratio) of each candidate on one dataset.

        Args:
            candidates: one row per candidate, with the factor and context columns.
            features_row: the dataset's features (a row of the features table: Series, mapping
                or one-row DataFrame) with the columns the recommender was fit on.
        Returns: float array of shape (n_candidates,), in target units (relative to an average
            configuration of the dataset when fit with ``centre=True``).
        """
        missing = [c for c in self.level_cols if c not in candidates.columns]
        if missing:
            raise KeyError(f"candidates lack the columns {missing}")
        row = _as_frame(features_row)
        features = pd.DataFrame(
            np.repeat(row.to_numpy(dtype=object), len(candidates), axis=0), columns=row.columns
        ).infer_objects()
        return self.pipeline.predict(self._design(candidates, features)).astype(float)


def _regressor(model: str, seed: int):
    if model == "gbr":
        return GradientBoostingRegressor(n_estimators=300, learning_rate=0.05, max_depth=3, random_state=seed)
    if model == "rf":
        return RandomForestRegressor(n_estimators=300, min_samples_leaf=2, random_state=seed, n_jobs=1)
    raise ValueError(f"unknown model {model!r}: use 'gbr' (gradient boosting) or 'rf' (random forest)")


def fit_recommender(
    df: pd.DataFrame,
    target: str,
    factors: Sequence[str],
    dataset_col: str,
    features: pd.DataFrame,
    seed: int = 0,
    *,
    context: Sequence[str] = (),
    n_pca: int = 2,
    model: str = "gbr",
    centre: bool = False,
) -> Recommender:
    """Fit a model of ``target`` on (configuration, context, dataset features) over the runs of ``df``.

    The pipeline one-hot encodes the factor and context levels
    (``OneHotEncoder(handle_unknown="ignore")``: a level never seen in training adds nothing),
    imputes (median) and standardises the numeric dataset features, and fits a
    ``GradientBoostingRegressor`` (``model="gbr"``, default) or ``RandomForestRegressor``
    (``"rf"``) with ``random_state=seed``. Each run is one training row (replicates included).
    Only the rows of ``features`` for datasets in ``df`` are used, including for the PCA of the
    embedding, so that nothing of a held-out dataset leaks in.

    Args:
        df: runs, with ``target``, ``factors``, ``context`` and ``dataset_col`` columns; rows with
            a missing target are dropped.
        target: the column to predict (e.g. ``ratio``, a fraction; higher is better).
        features: dataset features indexed by dataset (see ``dataset_meta_features``).
        n_pca: principal components kept of the ``emb_*`` columns (0 drops them).
        centre: fit the target minus its mean over each training (dataset, context) block, so
            that the model spends no capacity on how hard a dataset is (irrelevant to a ranking
            within it); predictions are then relative to an average configuration. The default
            (False) predicts the target itself, as AutoDistiller does.
    Raises: KeyError if a column or a dataset's features are missing; ValueError on no data.
    """
    factors, context = list(factors), list(context)
    needed = [target, dataset_col, *factors, *context]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the run table")
    runs = df.dropna(subset=[target])
    if runs.empty:
        raise ValueError(f"no run with a {target!r} value to fit on")
    datasets = sorted(runs[dataset_col].unique(), key=str)
    absent = [d for d in datasets if d not in features.index]
    if absent:
        raise KeyError(f"no dataset features for {absent}")
    train_features = features.loc[datasets]
    transform = _DatasetFeatures(n_pca).fit(train_features)

    recommender = Recommender(
        target=target,
        factors=factors,
        context=context,
        dataset_col=dataset_col,
        pipeline=None,  # set below, once the columns are known
        dataset_features=transform,
        centred=centre,
        training_datasets_=tuple(datasets),
        n_training_rows_=len(runs),
    )
    categorical = recommender.level_cols + transform.categorical_cols
    numeric = transform.numeric_out
    columns = ColumnTransformer(
        [
            ("levels", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
        ]
    )
    recommender.pipeline = Pipeline([("columns", columns), ("model", _regressor(model, seed))])
    x = recommender._design(runs, features.loc[runs[dataset_col]])
    y = runs[target]
    if centre:
        y = y - y.groupby([runs[c] for c in [dataset_col, *context]], dropna=False, observed=True).transform("mean")
    # Our hyper-parameters are constants; re-validating them for each of the ensemble's trees
    # costs a third of the fit on small tables.
    with sklearn.config_context(skip_parameter_validation=True):
        recommender.pipeline.fit(x, y.to_numpy(dtype=float))
    return recommender


def rank_candidates(model: Recommender, candidates: pd.DataFrame, features_row) -> pd.DataFrame:
    """The candidates with their ``predicted`` target, best first (stable: ties keep input order)."""
    out = candidates.copy()
    out["predicted"] = model.predict(candidates, features_row)
    return out.sort_values("predicted", ascending=False, kind="mergesort")


# --------------------------------------------------------------------------- evaluation


def _label(row: pd.Series, factors: list[str]) -> str:
    return "/".join(str(row[f]) for f in factors)


def _recipe_pick(table: pd.DataFrame, candidates: pd.DataFrame, factors: list[str]) -> tuple[int, int]:
    """(position in ``candidates``, 1-based rank in the recipe table) of the best-ranked recipe
    that was run among the candidates, or (-1, -1) if none was."""
    order = table[factors].reset_index(drop=True)
    order["recipe_rank"] = np.arange(1, len(order) + 1)
    cands = candidates[factors].reset_index(drop=True)
    cands["position"] = np.arange(len(cands))
    hits = cands.merge(order, on=factors, how="inner")
    if hits.empty:
        return -1, -1
    top = hits.sort_values("recipe_rank", kind="mergesort").iloc[0]
    return int(top["position"]), int(top["recipe_rank"])


def _training_recipe(train: pd.DataFrame, target: str, factors: list[str], block: list[str]) -> pd.DataFrame:
    try:
        return best_recipe(train, target, factors, block)[1]
    except ValueError:
        # No configuration was run in half of the training blocks: rank them all anyway.
        return best_recipe(train, target, factors, block, min_blocks=1)[1]


def evaluate_lodo(
    df: pd.DataFrame,
    target: str,
    factors: Sequence[str],
    dataset_col: str,
    features: pd.DataFrame,
    seed: int = 0,
    *,
    context: Sequence[str] = (),
    n_pca: int = 2,
    model: str = "gbr",
    centre: bool = False,
    min_candidates: int = 2,
) -> pd.DataFrame:
    """Leave-one-dataset-out regret of the recommender and of two baselines.

    For each dataset d: the recommender is fit on the runs of every other dataset (and only
    their features), and so is the best single recipe (``best_recipe`` with blocks
    ``[dataset_col, *context]``). The *candidates* on d are the configurations actually run on d,
    within each (d, context) block, each scored by the mean ``target`` of its runs there
    (replicates and every column that is neither a factor nor context averaged). Per block:

    - ``regret_recommender``: block best minus the actual target of the top-predicted candidate;
    - ``regret_best_recipe``: block best minus the actual target of the training recipe; when
      the winning recipe was not run in the block, the next configuration of the recipe table
      (ordered as ``best_recipe`` orders it) that was run is used instead
      (``recipe_fallbacks`` counts those blocks);
    - ``regret_random``: the expected regret of a uniformly random candidate, exactly
      ``mean(best - target)`` over the candidates.

    Regrets are in target units (score-ratio points for ``ratio``) and >= 0; the target is taken
    as higher-is-better. Blocks with fewer than ``min_candidates`` candidates are skipped (every
    method has zero regret there); a dataset's row is the mean over its blocks, and a dataset
    with no block left is omitted. ``seed``, ``n_pca``, ``model`` and ``centre`` go to
    ``fit_recommender``.

    Returns:
        One row per dataset: ``dataset_col``, ``n_blocks``, ``n_candidates`` (summed over
        blocks), ``best`` (mean block best), ``regret_recommender``, ``regret_best_recipe``,
        ``regret_random``, ``recipe_fallbacks``, ``recommended`` and ``recipe`` (the picked
        configurations as ``level/level/...``, one per block, ``; ``-joined); then a last row
        with ``dataset_col == "mean"``, the unweighted mean over datasets of the numeric columns.

    Raises: KeyError if a column or a dataset's features are missing; ValueError if no dataset
    has a block with ``min_candidates`` candidates.
    """
    factors, context = list(factors), list(context)
    block = [dataset_col, *context]
    configs = configuration_scores(df, target, factors, block)
    absent = sorted({d for d in configs[dataset_col] if d not in features.index}, key=str)
    if absent:
        raise KeyError(f"no dataset features for {absent}")
    rows = []
    for dataset in sorted(configs[dataset_col].unique(), key=str):
        held_out = configs[configs[dataset_col] == dataset]
        blocks = [g for _, g in held_out.groupby(context, dropna=False, observed=True, sort=True)] if context else [held_out]
        blocks = [b.reset_index(drop=True) for b in blocks if len(b) >= min_candidates]
        if not blocks:
            continue
        train = df[df[dataset_col] != dataset]
        train_datasets = sorted(train[dataset_col].dropna().unique(), key=str)
        recommender = fit_recommender(
            train, target, factors, dataset_col, features.loc[train_datasets], seed,
            context=context, n_pca=n_pca, model=model, centre=centre,
        )
        recipe_table = _training_recipe(train, target, factors, block)
        features_row = features.loc[dataset]

        per_block = []
        for cands in blocks:
            actual = cands[target].to_numpy(dtype=float)
            best = actual.max()
            ranked = rank_candidates(recommender, cands, features_row)
            top = ranked.index[0]
            position, recipe_rank = _recipe_pick(recipe_table, cands, factors)
            per_block.append(
                {
                    "n_candidates": len(cands),
                    "best": best,
                    "regret_recommender": best - actual[top],
                    "regret_best_recipe": best - actual[position] if position >= 0 else np.nan,
                    "regret_random": float(np.mean(best - actual)),
                    "recipe_fallbacks": int(recipe_rank != 1),
                    "recommended": _label(cands.loc[top], factors),
                    "recipe": _label(cands.loc[position], factors) if position >= 0 else "",
                }
            )
        summary = pd.DataFrame(per_block)
        rows.append(
            {
                dataset_col: dataset,
                "n_blocks": len(per_block),
                "n_candidates": int(summary["n_candidates"].sum()),
                "best": summary["best"].mean(),
                "regret_recommender": summary["regret_recommender"].mean(),
                "regret_best_recipe": summary["regret_best_recipe"].mean(),
                "regret_random": summary["regret_random"].mean(),
                "recipe_fallbacks": int(summary["recipe_fallbacks"].sum()),
                "recommended": "; ".join(summary["recommended"]),
                "recipe": "; ".join(summary["recipe"]),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError(f"no dataset has a block with at least {min_candidates} candidates")
    numeric = ["n_blocks", "n_candidates", "best", "regret_recommender", "regret_best_recipe",
               "regret_random", "recipe_fallbacks"]
    mean_row = {dataset_col: "mean", **table[numeric].mean().to_dict(), "recommended": "", "recipe": ""}
    table[dataset_col] = table[dataset_col].astype(object)
    return pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)


REGRET_COLUMNS = ("regret_recommender", "regret_best_recipe", "regret_random")


def distiller_lodo(
    runs: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    *,
    student: str | None = "TinyBERT4",
    teacher: str | None = "BERT_BASE",
    factors: Sequence[str] = DISTILLER_FACTORS,
    seed: int = 0,
    model: str = "gbr",
    n_pca: int = 2,
    centre: bool = False,
) -> pd.DataFrame:
    """LODO on the published Distiller table, target ``ratio``, datasets ``task``.

    Factors (the recommended choices): the intermediate-layer loss, the layer mapping
    (``intermediate_strategy``), the prediction-layer KD loss, mixup and MI-α, the choices that
    the Distiller search varied on every task. Augmentation settings (``aug_p``,
    ``repeated_aug``, step counts) are nuisance: averaged into a candidate's score.

    Student and teacher: by default the evaluation is restricted to the TinyBERT4 student of a
    BERT-base teacher, the pair of the search proper (768 of the 1,239 runs, 46-130 per task, and
    the pair of the paper's own AutoDistiller candidates); the other pairs are a student/teacher
    sweep of two to five configurations each. With ``student=None`` and ``teacher=None`` all runs
    are used and ``Model``/``Teacher`` are *context*: model inputs given by the user, never
    recommended, and candidates compete only within one (task, Model, Teacher) block.

    Dataset features: ``load_distiller_features`` (log10 training-set size, label count, task
    type, and ``n_pca`` principal components of the 100-dimensional task embedding, fit on the
    training tasks of each fold).
    """
    runs = load_distiller_runs() if runs is None else runs
    features = load_distiller_features() if features is None else features
    context: tuple[str, ...] = ()
    if student is not None:
        runs = runs[runs["Model"] == student]
    if teacher is not None:
        runs = runs[runs["Teacher"] == teacher]
    if student is None or teacher is None:
        context = tuple(c for c, fixed in zip(DISTILLER_CONTEXT, (student, teacher)) if fixed is None)
    return evaluate_lodo(
        runs, DISTILLER_TARGET, list(factors), DISTILLER_DATASET_COL, features, seed,
        context=context, n_pca=n_pca, model=model, centre=centre,
    )


# The choices a grid varies that a recommender recommends, and what it takes as given.
GRID_TARGET = "score_ratio"
def grid_choices(df: pd.DataFrame) -> list[str]:
    """The choices a grid varies that a recommender recommends: its treatment factors (from the
    runs, ``analysis.table.treatment_factors``) less ``student``, which a deployment fixes."""
    from analysis.table import treatment_factors

    return [f for f in treatment_factors(df) if f != "student"]


def grid_lodo(
    df: pd.DataFrame,
    features: pd.DataFrame | None = None,
    *,
    seed: int = 0,
    model: str = "gbr",
    n_pca: int = 2,
    centre: bool = False,
) -> pd.DataFrame:
    """LODO on one of our grids' tidy table (``analysis.table.load_runs``), target ``score_ratio``.

    Factors: the grid's treatment factors that vary (``grid_choices``). Context:
    ``student`` when it varies (a deployment budget fixes it; the recommender does not choose
    it), and ``teacher`` when some dataset was distilled from several teachers (one teacher per
    dataset is part of the dataset). Seeds are replicates. Dataset features come from
    ``dataset_meta_features`` (teacher score, and label count and task type of a GLUE task),
    joined with ``features`` if given.

    Raises: ValueError if no factor varies or fewer than two datasets have a score ratio.
    """
    factors = grid_choices(df)
    if not factors:
        raise ValueError("no choice varies in this grid (its factors, less dataset, seed and student, "
                         "each have one level)")
    context = []
    if "student" in df.columns and df["student"].nunique(dropna=True) > 1:
        context.append("student")
    if "teacher" in df.columns and (df.groupby("dataset", observed=True)["teacher"].nunique() > 1).any():
        context.append("teacher")
    scored = df.dropna(subset=[GRID_TARGET])
    if scored["dataset"].nunique() < 2:
        raise ValueError("leave-one-dataset-out needs runs with a score ratio on at least two datasets")
    meta = dataset_meta_features(scored, "dataset", features=features)
    return evaluate_lodo(
        scored, GRID_TARGET, factors, "dataset", meta, seed,
        context=context, n_pca=n_pca, model=model, centre=centre,
    )
