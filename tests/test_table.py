"""analysis.table against a real sqlite MLflow store written in the runner's schema."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow_fixtures import Cell, log_cells, log_teacher, sqlite_uri

from analysis import table

A = Cell(objective="logit_kd", initialisation="random", seed=0, score=0.80)
B = Cell(objective="logit_kd", initialisation="random", seed=1, score=0.82)
C_OLD = Cell(objective="attention_kl", initialisation="teacher_lower", seed=0, score=0.85)
C_NEW = Cell(
    objective="attention_kl", initialisation="teacher_lower", seed=0, score=0.86, start_offset_s=100
)
D = Cell(
    objective="attention_kl", initialisation="teacher_lower", seed=1, status="FAILED",
    error="CUDA out of memory",
)
# A rerun of A that failed after A had finished: A stays done, with A's score.
A_FAILED_LATER = Cell(
    objective="logit_kd", initialisation="random", seed=0, status="FAILED", start_offset_s=200
)
E = Cell(objective="logit_kd", initialisation="teacher_lower", seed=0, status="RUNNING")


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    uri = sqlite_uri(tmp_path_factory.mktemp("mlruns"))
    log_teacher(uri, "teacher-sst2", 0.9)
    log_cells(uri, "smoke", [A, B, C_OLD, C_NEW, D, A_FAILED_LATER, E])
    log_cells(uri, "empty", [])
    return uri


@pytest.fixture(scope="module")
def finished(uri) -> pd.DataFrame:
    with pytest.warns(UserWarning, match=C_NEW.cell_id):
        return table.load_runs("smoke", tracking_uri=uri)


def test_one_row_per_finished_cell(finished):
    assert sorted(finished["cell_id"]) == sorted([A.cell_id, B.cell_id, C_NEW.cell_id])
    assert finished["cell_id"].is_unique
    by_cell = finished.set_index("cell_id")
    assert by_cell.loc[A.cell_id, "name"] == A.name
    assert by_cell.loc[A.cell_id, "objective"] == "logit_kd"
    assert by_cell.loc[A.cell_id, "grid"] == "smoke"


def test_duplicate_finished_runs_keep_the_latest(finished):
    assert finished.set_index("cell_id").loc[C_NEW.cell_id, "score"] == pytest.approx(0.86)


def test_a_later_failed_rerun_does_not_hide_a_finished_run(finished):
    assert finished.set_index("cell_id").loc[A.cell_id, "score"] == pytest.approx(0.80)


def test_factor_columns_are_categoricals(finished):
    for column in table.ID_COLUMNS:
        assert isinstance(finished[column].dtype, pd.CategoricalDtype), column
    assert list(finished["seed"].cat.categories) == ["0", "1"]
    assert list(finished["objective"].cat.categories) == ["attention_kl", "logit_kd"]


def test_scores_and_ratio(finished):
    by_cell = finished.set_index("cell_id")
    assert by_cell.loc[B.cell_id, "teacher_score"] == pytest.approx(0.9)
    assert by_cell.loc[B.cell_id, "score_ratio"] == pytest.approx(0.82 / 0.9)
    assert by_cell.loc[B.cell_id, "dev_accuracy"] == pytest.approx(0.82)
    assert "dev_f1" not in finished.columns  # only the metrics the grid logged
    assert by_cell.loc[B.cell_id, "wall_time_s"] == pytest.approx(12.5)
    assert by_cell.loc[B.cell_id, "objective.temperature"] == pytest.approx(2.0)
    assert by_cell.loc[B.cell_id, "epochs"] == 3
    assert "status" not in finished.columns


def test_include_failed(uri):
    with pytest.warns(UserWarning):
        df = table.load_runs("smoke", tracking_uri=uri, include_failed=True)
    assert sorted(df["cell_id"]) == sorted([A.cell_id, B.cell_id, C_NEW.cell_id, D.cell_id])
    by_cell = df.set_index("cell_id")
    assert by_cell.loc[D.cell_id, "status"] == "FAILED"
    assert by_cell.loc[D.cell_id, "error"] == "CUDA out of memory"
    assert math.isnan(by_cell.loc[D.cell_id, "score"])
    assert by_cell.loc[A.cell_id, "status"] == "FINISHED"
    assert pd.isna(by_cell.loc[A.cell_id, "error"])


def test_varying_factors(finished):
    assert table.varying_factors(finished) == ["objective", "initialisation", "seed"]
    assert table.varying_factors(finished, candidates=("dataset", "seed")) == ["seed"]


def test_unknown_grid_says_what_to_do(uri):
    with pytest.raises(LookupError) as info:
        table.load_runs("nope", tracking_uri=uri)
    message = str(info.value)
    assert "grid 'nope'" in message
    assert uri in message
    assert "study run --grid nope" in message


def test_missing_store_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(LookupError, match="No runs were found"):
        table.load_runs("smoke", tracking_uri=uri)
    assert not (tmp_path / "absent.db").exists()


def test_empty_experiment_gives_empty_frame(uri):
    df = table.load_runs("empty", tracking_uri=uri)
    assert df.empty
    for column in (*table.ID_COLUMNS, "score", "teacher_score", "score_ratio", "run_id"):
        assert column in df.columns


def test_default_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    expected = Path(table.__file__).resolve().parents[1] / "runs" / "mlflow.db"
    assert table.default_tracking_uri() == f"sqlite:///{expected}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    assert table.default_tracking_uri() == "sqlite:////elsewhere/mlflow.db"
    assert table.resolve_tracking_uri("http://server:5000") == "http://server:5000"


def test_a_grid_edited_after_it_ran_shows_only_its_current_cells(tmp_path):
    """Membership tags carry the grid's version (hash of its cell ids); the runner re-tags the
    cells still in the grid, so cells an edit removed drop out of its table."""
    from mlflow.tracking import MlflowClient
    from mlflow_fixtures import Cell as FixtureCell
    from mlflow_fixtures import log_cells, sqlite_uri

    from study.core import contract

    uri = sqlite_uri(tmp_path / "edited")
    kept, removed = FixtureCell(objective="ce"), FixtureCell(objective="logit_kd")
    log_cells(uri, "g", [kept, removed])
    assert len(table.load_runs("g", uri)) == 2  # no version recorded: every member (older stores)
    client = MlflowClient(uri)
    client.set_experiment_tag(client.get_experiment_by_name("g").experiment_id, contract.TAG_GRID_VERSION, "v2")
    for run in client.search_runs([client.get_experiment_by_name("g").experiment_id]):
        if run.data.tags["study.cell_id"] == kept.cell_id:
            client.set_tag(run.info.run_id, contract.membership_tag("g"),
                           contract.encode_membership(kept.name, {"objective": "ce"}, "v2"))
    df = table.load_runs("g", uri)
    assert list(df["cell_id"]) == [kept.cell_id]
