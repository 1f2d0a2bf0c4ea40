"""A recommender of KD configurations for a new dataset (AutoDistiller, He et al. 2021, sec. 6).

He et al., "Distiller: A Systematic Study of Model Distillation Methods in Natural Language
Processing" (SustaiNLP 2021), fit a model on their hyper-parameter search that predicts a
distillation pipeline's *score ratio* (student score / teacher score) from the pipeline's choices
and a feature vector of the dataset, then rank candidate pipelines on a dataset never seen in the
fit. This module is that model, with scikit-learn (``fit_recommender``, ``rank_candidates``,
``recommend_for``); ``analysis.lodo`` measures it by leave-one-dataset-out (LODO) regret against
two baselines, on the published Distiller table and on our own grids; ``analysis.dataset_features``
gives the dataset features.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from analysis.columns import check_roles, column_list, require_columns
from analysis.dataset_features import EMBEDDING_PREFIX
from study.core.registry import did_you_mean


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
    require_columns(df.columns, [("target", target), ("dataset", dataset_col), *(("factor", f) for f in factors),
                                 *(("context", c) for c in context)], "the run table", error=KeyError)
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


def recommend_for(
    df: pd.DataFrame,
    metric: str,
    factors: Sequence[str] | str,
    dataset_col: str,
    dataset: str,
    features: pd.DataFrame,
    *,
    context: dict[str, str] | None = None,
    seed: int = 0,
    model: str = "gbr",
) -> pd.DataFrame:
    """Rank configurations for ``dataset`` with a recommender fit on the *other* datasets' runs
    (AutoDistiller, He et al. 2021, sec. 6; ``analysis.recommend.fit_recommender``).

    The candidates are the factor combinations run on the other datasets (under ``context``,
    e.g. ``{"Model": "TinyBERT4"}``, when given); ``dataset`` itself takes no part in the fit, so
    the ranking is what a new dataset would get. Where ``df`` holds runs of ``dataset`` under the
    same context, each candidate's ``actual`` mean ``metric`` there and its ``regret`` (the best
    actual minus its own, metric units) are added, as a check of the recommendation.

    Returns:
        One row per candidate, best first: ``rank``, the factors, the context columns,
        ``predicted`` (metric units) and, where known, ``actual``, ``runs``, ``regret``.

    Raises:
        ValueError: a column is missing, ``dataset`` has no features (the message lists those
            that have), no other dataset has runs, or no training run matches ``context``.
    """
    factors = column_list(factors)
    context = dict(context or {})
    check_roles(df.columns, metric, factors, [dataset_col, *context])
    names = [str(d) for d in features.index]
    if dataset not in names:
        raise ValueError(
            f"no dataset features for {dataset!r}; datasets with features: {', '.join(names)}."
            f"{did_you_mean(dataset, names)}"
        )
    data = df.dropna(subset=[metric])
    is_target = data[dataset_col].astype(str) == dataset
    train = data[~is_target]
    if train.empty:
        raise ValueError(f"no run on a dataset other than {dataset!r} to learn from")
    features = features.set_axis(names)
    recommender = fit_recommender(train, metric, factors, dataset_col, features, seed,
                                  context=list(context), model=model)

    def matching(runs: pd.DataFrame) -> pd.DataFrame:
        for col, value in context.items():
            runs = runs[runs[col].astype(str) == str(value)]
        return runs

    pool = matching(train)
    if pool.empty:
        wanted = ", ".join(f"{c}={v}" for c, v in context.items())
        raise ValueError(f"no training run has {wanted}; levels: " + "; ".join(
            f"{c}: {', '.join(sorted(map(str, train[c].unique())))}" for c in context))
    candidates = pool[factors].astype(str).drop_duplicates().reset_index(drop=True)
    for col, value in context.items():
        candidates[col] = str(value)
    ranked = rank_candidates(recommender, candidates, features.loc[dataset]).reset_index(drop=True)
    ranked.insert(0, "rank", range(1, len(ranked) + 1))

    held = matching(data[is_target])
    if not held.empty:
        actual = (
            held.assign(**{f: held[f].astype(str) for f in factors})
            .groupby(factors, observed=True)[metric].agg(actual="mean", runs="size").reset_index()
        )
        ranked = ranked.merge(actual, on=factors, how="left")
        ranked["regret"] = actual["actual"].max() - ranked["actual"]
    return ranked
