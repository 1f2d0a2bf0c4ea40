"""One tidy table of a grid's cells, read from the MLflow store that ``study run`` writes.

Schema read here: ``study.core.contract`` (one MLflow experiment per grid, named after the grid;
a cell of several grids is tagged ``study.in.<grid>`` by each, with the grid's factors):

- tags: ``study.kind`` = ``"cell"``, ``study.cell_id``, ``study.grid``, ``study.teacher_id``,
  ``study.in.<grid>``, and ``study.error`` on FAILED runs; the run name is the display name;
- params (strings): ``dataset, student, objective, initialisation, augmentation, seed, teacher,
  score_metric, epochs, learning_rate, batch_size, max_length, max_train_examples``,
  ``objective.<name>``, and ``n_labels``, ``task_type`` where the runner logged them;
- metrics (latest value = final): ``dev_score``, ``dev_<metric>`` for each official metric,
  ``teacher_dev_score``, ``wall_time_s``, ``train_examples_per_s``, ``peak_memory_mb``.

Only FINISHED runs are results. A cell that was run twice to completion keeps its latest run.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from study.core import contract, paths

FACTORS = ("dataset", "student", "objective", "initialisation", "augmentation", "seed")
"""The slots every cell run logs as params (shown first in tables). A grid's factors (what it
varies, such as ``prediction.student_temperature``) come from the runs: ``grid_factors(df)``."""

ID_COLUMNS = ("cell_id", "name", "grid", *FACTORS)
"""Columns stored as pandas categoricals (``seed`` as the categorical of its string)."""

DEV_METRICS = contract.DEV_METRICS
"""Per-metric dev columns; ``load_runs`` keeps those present in the grid, each a fraction."""

COST_COLUMNS = (*contract.COST_METRICS, contract.METRIC_STUDENT_PARAMETERS)

BUDGET_PARAMS = ("epochs", "learning_rate", "batch_size", "max_length", "max_train_examples")

#: Params describing the task, kept when the runs logged them (the recommender's dataset features).
TASK_PARAMS = (contract.PARAM_SCORE_METRIC, contract.PARAM_N_LABELS, contract.PARAM_TASK_TYPE)


def default_tracking_uri() -> str:
    """The tracking URI used when none is given.

    ``MLFLOW_TRACKING_URI`` if set, else the sqlite store ``runs/mlflow.db`` (``$STUDY_RUNS_DIR``,
    else ``./runs``)
    (MLflow 3 no longer writes to a plain file store).
    """
    return paths.tracking_uri(None)  # one definition, shared with the runner (honours STUDY_RUNS_DIR)


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """``tracking_uri`` if given, else :func:`default_tracking_uri`."""
    return tracking_uri or default_tracking_uri()


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def _client(uri: str):
    # Imported here so that ``import analysis.table`` (the report notebook's helpers) stays cheap.
    with warnings.catch_warnings():
        # mlflow imports tqdm.auto, which warns inside a kernel without ipywidgets (the report)
        warnings.filterwarnings("ignore", message="IProgress not found")
        from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(grid: str, uri: str) -> str | None:
    """The id of the grid's experiment, or None. Never creates an empty sqlite file."""
    path = _sqlite_path(uri)
    if path is not None and not path.exists():
        return None
    experiment = _client(uri).get_experiment_by_name(grid)
    return None if experiment is None else experiment.experiment_id


def _search(client, experiment_ids: list[str], filter_string: str) -> list:
    """Every active run of the experiments that matches ``filter_string`` (MLflow paginates)."""
    from mlflow.entities import ViewType  # with the client: mlflow is imported on first search
    from mlflow.utils import get_results_from_paginated_fn

    return get_results_from_paginated_fn(
        lambda n, token: client.search_runs(experiment_ids, filter_string=filter_string,
                                            run_view_type=ViewType.ACTIVE_ONLY, max_results=n,
                                            page_token=token),
        max_results_per_page=10_000,
    )


def _latest_first(runs: Iterable) -> list:
    return sorted(
        runs,
        key=lambda r: (r.info.start_time or 0, r.info.end_time or 0, r.info.run_id),
        reverse=True,
    )


def _no_runs_error(grid: str, uri: str) -> LookupError:
    return LookupError(
        f"No runs were found for grid {grid!r} at tracking URI {uri}. "
        f"Run `study run --grid {grid}` first (or pass the tracking URI the grid was run with)."
    )


def _empty_table(include_failed: bool) -> pd.DataFrame:
    columns = {c: pd.Categorical([]) for c in ID_COLUMNS}
    columns.update(
        {c: pd.Series([], dtype=float) for c in ("score", "teacher_score", "score_ratio", *COST_COLUMNS)}
    )
    columns["run_id"] = pd.Series([], dtype=object)
    if include_failed:
        columns["status"] = pd.Series([], dtype=object)
        columns["error"] = pd.Series([], dtype=object)
    return pd.DataFrame(columns)


def _as_category(values: pd.Series, numeric_order: bool = False) -> pd.Series:
    values = values.astype(object).where(values.notna(), None)
    levels = sorted({v for v in values if v is not None})
    if numeric_order:
        # seeds "0", "1", ..., "10" sort as numbers, not as strings
        levels.sort(key=lambda s: (0, float(s), s) if _is_number(s) else (1, 0.0, s))
    return pd.Series(pd.Categorical(values, categories=levels), index=values.index)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _maybe_numeric(values: pd.Series) -> pd.Series:
    converted = pd.to_numeric(values, errors="coerce")
    if converted.notna().sum() == values.notna().sum():
        return converted
    return values


def load_runs(grid: str, tracking_uri: str | None = None, include_failed: bool = False) -> pd.DataFrame:
    """Read a grid's cells into one row per cell.

    Args:
        grid: the grid name, which is also the MLflow experiment name.
        tracking_uri: MLflow tracking URI; default :func:`default_tracking_uri`.
        include_failed: also return cells whose runs all FAILED (or were KILLED); their metrics
            are NaN and ``error`` holds the ``study.error`` tag. Adds columns ``status``, ``error``.

    Returns:
        One row per ``cell_id`` with columns ``cell_id, name, grid, dataset, student, objective,
        initialisation, augmentation, seed`` (categoricals; ``seed`` holds strings, ordered as
        numbers), ``score`` (``dev_score``, the task's official metric as a fraction in [0, 1]),
        the ``dev_<metric>`` columns present in the grid, ``teacher_score``
        (``teacher_dev_score``), ``score_ratio`` (score / teacher_score), ``wall_time_s``
        (seconds), ``train_examples_per_s``, ``peak_memory_mb`` (MiB), ``run_id``; then
        ``teacher``, ``score_metric``, ``n_labels``, ``task_type``, the training-budget params
        (numbers) and ``objective.<name>`` params (numbers where every value parses) when logged. Sorted by ``cell_id``. An experiment
        without cell runs gives an empty frame with the same leading columns.

        A cell with several FINISHED runs keeps the latest (by start time) and a
        ``UserWarning`` names it. A FINISHED run always beats a failed one.

    Raises:
        LookupError: no experiment named ``grid`` at the tracking URI.
    """
    uri = resolve_tracking_uri(tracking_uri)
    statuses = ("FINISHED", "FAILED", "KILLED") if include_failed else ("FINISHED",)
    runs = [r for r in _grid_runs(grid, uri) if r.info.status in statuses]
    if not runs:
        if _experiment_id(grid, uri) is None:
            raise _no_runs_error(grid, uri)
        return _empty_table(include_failed)
    member = contract.membership_tag(grid)
    kept = _one_run_per_cell(runs, grid)
    rows, factors = [], []
    for cell_id, run in kept.items():
        name, factor_values = run.info.run_name or run.data.tags.get("mlflow.runName"), {}
        if member in run.data.tags:  # the grid's own view of the cell: its name and factor values
            name, factor_values = contract.decode_membership(run.data.tags[member])
            factors += [f for f in factor_values if f not in factors]
        rows.append(_row(run, cell_id, name, grid, factor_values, include_failed))
    df = _tidy(pd.DataFrame(rows), [f for f in factors if f not in FACTORS], include_failed)
    df.attrs["factors"] = factors
    return df


def _one_run_per_cell(runs: list, grid: str) -> dict[str, object]:
    """cell id -> the run kept for it: FINISHED before failed, then the latest; warns (naming
    them) about cells with several FINISHED runs."""
    # FINISHED first, then latest first: the first run seen per cell is the one kept.
    ordered = sorted(_latest_first(runs), key=lambda r: r.info.status != "FINISHED")
    kept: dict[str, object] = {}
    duplicated: set[str] = set()
    for run in ordered:
        cell_id = run.data.tags.get(contract.TAG_CELL_ID)
        if cell_id is None:
            continue
        if cell_id in kept:
            if run.info.status == "FINISHED":
                duplicated.add(cell_id)
            continue
        kept[cell_id] = run
    if duplicated:
        warnings.warn(
            f"grid {grid!r}: {len(duplicated)} cell(s) have several FINISHED runs; keeping the "
            f"latest of each: {', '.join(sorted(duplicated))}",
            UserWarning,
            stacklevel=3,
        )
    return kept


def _row(run, cell_id: str, name: str, grid: str, factor_values: dict, include_failed: bool) -> dict:
    """One cell's row of ``load_runs`` (before columns are typed and ordered)."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    row = {
        "cell_id": cell_id,
        "name": name,
        "grid": grid,
        **{f: params.get(f) for f in FACTORS},
        **factor_values,
        "score": metrics.get(contract.METRIC_SCORE, np.nan),
        **{m: metrics[m] for m in DEV_METRICS if m in metrics},
        "teacher_score": metrics.get(contract.METRIC_TEACHER_SCORE, np.nan),
        **{c: metrics.get(c, np.nan) for c in COST_COLUMNS},
        "run_id": run.info.run_id,
    }
    if include_failed:
        row["status"] = run.info.status
        row["error"] = tags.get(contract.TAG_ERROR)
    row["teacher"] = params.get(contract.PARAM_TEACHER)
    row.update({p: params.get(p) for p in TASK_PARAMS})
    row.update({p: params.get(p) for p in BUDGET_PARAMS})
    row.update({k: v for k, v in params.items() if k.startswith("objective.")})
    return row


def _tidy(df: pd.DataFrame, extra_factors: list[str], include_failed: bool) -> pd.DataFrame:
    """Type ``load_runs``' columns (categoricals, numbers), drop params no run logged, and put
    the columns in their documented order, rows by cell id."""
    present_dev = [m for m in DEV_METRICS if m in df.columns]
    objective_params = sorted(c for c in df.columns if c.startswith("objective."))
    df["score_ratio"] = df["score"] / df["teacher_score"].where(df["teacher_score"] != 0)
    for column in (*ID_COLUMNS, *extra_factors):
        df[column] = _as_category(df[column], numeric_order=(column == "seed" or _all_numbers(df[column])))
    for column in (*BUDGET_PARAMS, *objective_params, contract.PARAM_N_LABELS):
        df[column] = _maybe_numeric(df[column])
    # params that runs logged before they existed (or that no run logs)
    optional = [c for c in ("teacher", *TASK_PARAMS) if df[c].notna().any()]
    order = [
        *ID_COLUMNS,
        *extra_factors,
        "score",
        *present_dev,
        "teacher_score",
        "score_ratio",
        *COST_COLUMNS,
        "run_id",
        *(("status", "error") if include_failed else ()),
        *optional,
        *(p for p in BUDGET_PARAMS if df[p].notna().any()),
        *objective_params,
    ]
    return df[order].sort_values("cell_id", kind="stable").reset_index(drop=True)


def _all_numbers(values: pd.Series) -> bool:
    present = [v for v in values if v is not None and v == v]
    return bool(present) and all(_is_number(v) for v in present)


def _grid_runs(grid: str, uri: str) -> list:
    """Cell runs of ``grid``: those tagged ``study.in.<grid>`` in any experiment at the grid's
    current version (the experiment tag ``study.grid_version``); in stores written before
    versions, every member and every cell run of the experiment named after the grid."""
    path = _sqlite_path(uri)
    if path is not None and not path.exists():
        return []
    client = _client(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments(max_results=50000)}
    if not experiments:
        return []
    member = contract.membership_tag(grid)
    own = client.get_experiment_by_name(grid)
    version = own.tags.get(contract.TAG_GRID_VERSION) if own is not None else None
    runs = _search(client, list(experiments), f"tags.\"{contract.TAG_KIND}\" = '{contract.KIND_CELL}'")
    if version is None:  # a store written before grid versions (or by hand): every member
        return [r for r in runs if member in r.data.tags or experiments.get(r.info.experiment_id) == grid]
    # a grid edited since it ran: only the members of its current version are its cells
    return [r for r in runs if member in r.data.tags
            and contract.membership_version(r.data.tags[member]) == version]


def grid_factors(df: pd.DataFrame) -> list[str]:
    """The factors a grid varies, as its runs record them (``df.attrs["factors"]``, set by
    ``load_runs``); for a table without that record, the ``FACTORS`` columns that vary."""
    recorded = df.attrs.get("factors")
    if recorded:
        return [f for f in recorded if f in df.columns]
    return varying_factors(df)


def treatment_factors(df: pd.DataFrame) -> list[str]:
    """The grid's factors less blocks (dataset) and the replicate (seed), that vary in ``df``."""
    return [f for f in contract.treatments(grid_factors(df)) if df[f].nunique(dropna=True) > 1]


def varying_factors(df: pd.DataFrame, candidates: Sequence[str] = FACTORS) -> list[str]:
    """The candidate columns of ``df`` that take more than one (non-missing) value, in order."""
    return [c for c in candidates if c in df.columns and df[c].nunique(dropna=True) > 1]
