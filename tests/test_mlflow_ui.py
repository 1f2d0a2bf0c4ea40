"""What the MLflow UI shows of a study (issue 20): the experiment kind and description, MLflow's
source tags, dataset inputs and system metrics; and where the store goes (``./runs``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from study.core import contract, paths
from study.execution import tracking
from study.execution.datacache import data_source, split_digest
from study.execution.tracking import DatasetRecord, Tracker
from study.tasks.catalogue import TASKS
from study.tasks.spec import Split


def test_runs_dir_is_the_working_directorys(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDY_RUNS_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.runs_dir() == tmp_path.resolve() / "runs"
    assert paths.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'runs' / 'mlflow.db'}"
    monkeypatch.setenv("STUDY_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert paths.runs_dir() == (tmp_path / "elsewhere").resolve()


def test_git_commit_without_any_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "SOURCE_ROOT", tmp_path / "site-packages")
    (tmp_path / "site-packages").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert tracking.git_commit() == "unknown"
    tags = tracking.environment_tags("cpu", "study run --grid g")
    assert tags[contract.TAG_GIT_COMMIT] == "unknown"
    assert contract.TAG_MLFLOW_GIT_COMMIT not in tags  # MLflow's own tag only holds a real commit
    assert tags[contract.TAG_MLFLOW_SOURCE_NAME] == "study run --grid g"


def test_git_commit_of_the_checkout():
    commit = tracking.git_commit()  # the tests run from a checkout
    assert len(commit.removesuffix("-dirty")) == 40
    tags = tracking.environment_tags("cpu")
    assert tags[contract.TAG_MLFLOW_GIT_COMMIT] == commit.removesuffix("-dirty")
    assert tags[contract.TAG_MLFLOW_SOURCE_TYPE] == "LOCAL" and tags[contract.TAG_MLFLOW_USER]


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")


def test_experiments_are_model_training_and_described(tracker):
    exp_id = tracker.experiment_id("g")
    tracker.set_grid_version("g", "v1", "  What this grid asks.\n")
    tags = tracker.client.get_experiment(exp_id).tags
    assert tags[contract.TAG_MLFLOW_EXPERIMENT_KIND] == contract.EXPERIMENT_KIND_TRAINING
    assert tags[contract.TAG_MLFLOW_NOTE] == "What this grid asks."
    # an experiment of an older store gets its kind on first use
    old = tracker.client.create_experiment("old")
    assert tracker.experiment_id("old", create=False) == old
    assert contract.TAG_MLFLOW_EXPERIMENT_KIND not in tracker.client.get_experiment(old).tags
    tracker.experiment_id("old")
    assert tracker.client.get_experiment(old).tags[contract.TAG_MLFLOW_EXPERIMENT_KIND] == \
        contract.EXPERIMENT_KIND_TRAINING


def test_dataset_inputs(tracker):
    run_id = tracker.start("g", "cell", {contract.TAG_KIND: contract.KIND_CELL}, {})
    record = DatasetRecord("sst2/train", "ab" * 8, contract.DATASET_CONTEXT_TRAIN, "local",
                           {"uri": "glue/SST-2/train.tsv"}, 64)
    tracker.log_datasets(run_id, [record])
    tracker.finish(run_id)
    (logged,) = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("sst2/train", "ab" * 8)
    assert json.loads(logged.dataset.source) == {"uri": "glue/SST-2/train.tsv"}
    assert json.loads(logged.dataset.profile) == {"num_rows": 64}
    assert [(t.key, t.value) for t in logged.tags] == [(contract.TAG_MLFLOW_DATASET_CONTEXT, "training")]


def test_split_digest_follows_the_examples():
    a = Split([("good",), ("bad",)], [1, 0])
    assert split_digest(a) == split_digest(Split([("good",), ("bad",)], [1, 0]))
    assert split_digest(a) != split_digest(Split([("good",), ("bad",)], [1, 1]))
    assert split_digest(a) != split_digest(Split([("bad",), ("good",)], [0, 1]))


def test_data_source_is_relative(tmp_path):
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    assert data_source(TASKS["sst2"], "dev", tmp_path) == ("local", {"uri": "glue/SST-2/dev.tsv", "task": "sst2"})
    assert data_source(TASKS["sst2"], "train", tmp_path / "glue")[1]["uri"] == "SST-2/train.tsv"
    # a split cut from another file names that file
    assert data_source(TASKS["boolq-devsplit"], "train", tmp_path)[1]["uri"] == "BoolQ/dev.jsonl"
    kind, source = data_source(TASKS["sst2"], "dev", None)
    assert kind == "hugging_face" and source["path"] == "nyu-mll/glue" and source["split"] == "validation"


def test_system_metrics(tracker, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    run_id = tracker.start("g", "cell", {contract.TAG_KIND: contract.KIND_CELL}, {})
    with tracker.system_metrics([run_id]):
        time.sleep(1.0)
    with tracker.system_metrics([run_id], enabled=False):
        pass
    tracker.finish(run_id)
    metrics = tracker.client.get_run(run_id).data.metrics
    assert f"{contract.SYSTEM_METRICS_PREFIX}cpu_utilization_percentage" in metrics
    assert f"{contract.SYSTEM_METRICS_PREFIX}system_memory_usage_megabytes" in metrics


def test_report_notebooks_are_package_data():
    from analysis import report

    for notebook in (report.REPORT_NOTEBOOK, report.CSV_REPORT_NOTEBOOK):
        assert notebook.is_file() and Path(report.__file__).parent in notebook.parents
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"notebooks/*.ipynb"' in pyproject
