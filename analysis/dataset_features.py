"""Dataset features for the recommender: the published AutoDistiller table, or what a run table says.

A recommender for a new dataset (``analysis.recommend``) sees each dataset as one numeric row: its
training-set size, label count, whether it is a regression, the teacher's score, and optionally a
text embedding (``emb_*`` columns, reduced by PCA in the fit). ``load_distiller_features`` reads
the features He et al. (2021) released with Distiller; ``dataset_meta_features`` derives them from
the columns a run table has (for our grids, the params the runner logged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.columns import require_columns
from analysis.csvtable import DISTILLER_SUBDIR, shared_dir

EMBEDDING_PREFIX = "emb_"
#: A task whose score is a correlation is a regression (STS-B: ``pearson+spearman``).
CORRELATION_SCORES = "pearson|spearman"


def distiller_dir() -> Path:
    """The folder of the published Distiller results (``<shared>/data/published/distiller``)."""
    return shared_dir() / DISTILLER_SUBDIR


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
    fraction). ``is_regression`` also comes from ``score_metric`` (a correlation score, e.g.
    ``pearson+spearman``, is a regression's) when the runs logged no task type; a table with none
    of these sources (runs logged before the runner wrote ``n_labels``) has no such column.
    ``features`` (indexed by dataset) is joined last and wins on a
    column name clash, for features computed elsewhere (e.g. a text embedding: name its columns
    ``emb_*`` to have the recommender reduce them by PCA).

    Returns a DataFrame indexed by dataset; columns that no source provides are left out.
    Raises KeyError if ``dataset_col`` is missing.
    """
    require_columns(df.columns, [("dataset", dataset_col)], error=KeyError)
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
    elif "score_metric" in df.columns:
        out["is_regression"] = groups["score_metric"].agg(
            lambda s: float(s.astype(str).str.contains(CORRELATION_SCORES).mean()))
    if "is_regression" not in out.columns and "n_labels" in out.columns:
        out["is_regression"] = (out["n_labels"] == 1).astype(float)
    if features is not None:
        extra = features.reindex(out.index)
        out = out.drop(columns=[c for c in extra.columns if c in out.columns]).join(extra)
    return out
