"""End to end on real data with the real teacher: `study run` on a tiny grid, what MLflow holds,
what the analysis table contains, resumability, determinism, failure isolation and SIGKILL.

Budgets are tiny (a teacher fine-tuned on 96 SST-2 examples, students on 64) so the whole file
runs in about a minute on a 2-core CPU; scores are not the point here, the pipeline is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from study.execution.forecast import cpu_share

TINY = {
    "name": "tiny",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["ce", "attention_kl"],
             "initialisation": ["random", "teacher_lower"], "augmentation": ["none"], "seed": [0]},
    "teacher": {"epochs": 1, "max_train_examples": 96, "max_eval_examples": 64, "max_length": 32,
                "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 64, "max_eval_examples": 64, "max_length": 32,
                 "batch_size": 16},
}


def write_grid(tmp_path: Path, spec: dict, name: str | None = None) -> Path:
    spec = dict(spec, name=name or spec["name"])
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cell_runs(grid: str) -> list:
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(grid)
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.`study.kind` = 'cell'")


def invoke(*args: str):
    from study.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_tiny_grid_end_to_end(tmp_path, isolated_runs, shared_data, monkeypatch):
    grid = write_grid(tmp_path, TINY)
    result = invoke("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "finished now" in result.output and "best cell" in result.output

    runs = cell_runs("tiny")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    run = next(r for r in runs if r.info.run_name == "sst2-L2_H384-attention_kl-teacher_lower-none-s0")
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert (p["objective"], p["initialisation"], p["student"], p["dataset"]) == ("attention_kl", "teacher_lower", "L2_H384", "sst2")
    assert p["intermediate.0.weight"] == "1.0" and p["intermediate.0.features"] == "attention" and p["teacher"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(t["study.cell_id"]) == 16 and t["study.grid"] == "tiny" and t["study.device"] == "cpu"
    assert 0.0 <= m["dev_score"] <= 1.0 and m["dev_score"] == m["dev_accuracy"]
    assert m["train_examples_per_s"] > 0 and m["wall_time_s"] > 0 and m["peak_memory_mb"] > 0
    # the CPU seconds the forecast's calibration reads to tell a run alone from one that shared
    assert m["cpu_threads"] >= 1 and 0 < m["cpu_time_s"] and 0 < cpu_share(m) <= 1.05
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [h.step for h in history] == [1, 2, 3, 4]  # 64 examples / batch 16, one point per step
    assert client.get_metric_history(run.info.run_id, "train_loss_attention_kl")

    teachers = client.search_runs([client.get_experiment_by_name("teachers").experiment_id])
    assert len(teachers) == 1 and teachers[0].info.status == "FINISHED"
    assert cpu_share(teachers[0].data.metrics) is not None
    assert m["teacher_dev_score"] == teachers[0].data.metrics["dev_score"]
    assert (isolated_runs / "teachers" / t["study.teacher_id"] / "teacher.json").exists()

    from analysis.table import load_runs

    table = load_runs("tiny")
    assert len(table) == 4 and set(table["objective"]) == {"ce", "attention_kl"}
    assert str(table["initialisation"].dtype) == "category"
    row = table.set_index("name").loc["sst2-L2_H384-attention_kl-teacher_lower-none-s0"]
    assert row["score"] == m["dev_score"] and row["teacher_score"] == m["teacher_dev_score"]
    assert row["score_ratio"] == pytest.approx(m["dev_score"] / m["teacher_dev_score"])

    # A second run trains nothing and says so.
    again = invoke("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    assert again.exit_code == 0 and "Nothing to train" in again.output + str(again.stderr_bytes or b"")
    assert len(cell_runs("tiny")) == 4
    status = invoke("status", "--grid", str(grid))
    assert "done 4" in status.output and "pending 0" in status.output

    # Determinism on CPU: the same cells in a second store, reusing the cached teacher, give the
    # same dev scores to the last bit.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'second.db'}")
    again = invoke("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    assert again.exit_code == 0
    first = {r.info.run_name: r.data.metrics["dev_score"] for r in runs}
    second = {r.info.run_name: r.data.metrics["dev_score"] for r in cell_runs("tiny")}
    assert first == second


@pytest.mark.slow
def test_failed_cell_is_recorded_and_the_grid_goes_on(tmp_path, isolated_runs, shared_data, monkeypatch):
    import study.execution.cell

    real = study.execution.cell.build_student

    def explode(teacher, size, initialisation, *args, **kwargs):
        if initialisation == "teacher_lower":
            raise RuntimeError("planted failure for the test")
        return real(teacher, size, initialisation, *args, **kwargs)

    monkeypatch.setattr(study.execution.cell, "build_student", explode)
    grid = write_grid(tmp_path, TINY, "tiny_fail")
    result = invoke("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    assert result.exit_code == 1
    runs = cell_runs("tiny_fail")
    by_status = {}
    for r in runs:
        by_status.setdefault(r.info.status, []).append(r)
    assert len(by_status["FINISHED"]) == 2 and len(by_status["FAILED"]) == 2
    assert all("planted failure" in r.data.tags["study.error"] for r in by_status["FAILED"])
    # The retry trains only the failed cells; the finished ones are not touched.
    monkeypatch.setattr(study.execution.cell, "build_student", real)
    result = invoke("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    assert result.exit_code == 0
    finished = [r for r in cell_runs("tiny_fail") if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["study.cell_id"] for r in finished) == sorted({r.data.tags["study.cell_id"] for r in runs})


def test_bad_input_fails_before_training(tmp_path, isolated_runs, shared_data):
    bad = dict(TINY, axes=dict(TINY["axes"], objective=["attention_kll"]))
    result = invoke("run", "--grid", str(write_grid(tmp_path, bad, "bad")), "--data-dir", str(shared_data))
    assert result.exit_code == 2 and "attention_kll" in result.output and "attention_kl" in result.output
    result = invoke("run", "--grid", str(write_grid(tmp_path, TINY)), "--data-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "nowhere" in result.output
    assert not (isolated_runs / "teachers").exists()


@pytest.mark.slow
def test_sigkill_mid_grid_then_rerun_trains_each_cell_once(tmp_path, isolated_runs, shared_data):
    spec = dict(TINY, axes=dict(TINY["axes"], seed=[0, 1, 2]))  # 12 cells
    grid = write_grid(tmp_path, spec, "tiny_kill")
    from study.execution.tracking import Tracker

    Tracker()  # create the store's schema first, so polling it never races the worker's migration
    cmd = [sys.executable, "-m", "study.cli", "run", "--grid", str(grid), "--data-dir", str(shared_data),
           "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill once some cells are done and one is mid-training
            runs = cell_runs("tiny_kill")
            if sum(r.info.status == "FINISHED" for r in runs) >= 2 and any(r.info.status == "RUNNING" for r in runs):
                break
            if proc.poll() is not None:
                pytest.fail("the run ended before it could be killed")
            time.sleep(0.2)
        else:
            pytest.fail("no cell finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = cell_runs("tiny_kill")
    done_before = {r.data.tags["study.cell_id"] for r in before if r.info.status == "FINISHED"}
    assert 2 <= len(done_before) < 12

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    after = cell_runs("tiny_kill")
    finished = [r.data.tags["study.cell_id"] for r in after if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == 12  # every cell finished exactly once
    assert not [r for r in after if r.info.status == "RUNNING"]  # the orphan was marked KILLED
    # Cells finished before the kill kept their original run.
    assert done_before <= {r.data.tags["study.cell_id"] for r in before if r.info.status == "FINISHED"}
    assert {r.info.run_id for r in before if r.info.status == "FINISHED"} <= {r.info.run_id for r in after if r.info.status == "FINISHED"}


@pytest.mark.slow
def test_regression_pairs_augmentation_and_narrow_students(tmp_path, isolated_runs, shared_data):
    """STS-B (regression) and MRPC (sentence pairs) with EDA, a narrower student (learned
    hidden-state projection) and evenly spaced teacher layers: every path of the full grid."""
    spec = {
        "name": "tiny_paths",
        "axes": {"dataset": ["stsb", "mrpc"], "student": ["L2_H384", "L4_H256"],
                 "objective": ["logit_kd", "hidden_mse"], "initialisation": ["random", "teacher_uniform"],
                 "augmentation": ["eda"], "seed": [0]},
        "teacher": TINY["teacher"], "training": dict(TINY["training"], max_train_examples=32),
        "exclude": [{"student": "L4_H256", "initialisation": "teacher_uniform"},
                    {"student": "L2_H384", "initialisation": "random"}],
    }
    result = invoke("run", "--grid", str(write_grid(tmp_path, spec)), "--data-dir", str(shared_data), "--device", "cpu")
    assert result.exit_code == 0, result.output
    runs = {r.info.run_name: r for r in cell_runs("tiny_paths")}
    assert len(runs) == 8 and {r.info.status for r in runs.values()} == {"FINISHED"}
    stsb = runs["stsb-L4_H256-hidden_mse-random-eda-s0"].data
    assert {"dev_pearson", "dev_spearman"} <= set(stsb.metrics)
    assert stsb.metrics["dev_score"] == pytest.approx((stsb.metrics["dev_pearson"] + stsb.metrics["dev_spearman"]) / 2)
    assert "train_loss_mse" in stsb.metrics and "train_loss_hidden_mse" in stsb.metrics
    assert stsb.metrics["train_examples"] == 64  # 32 originals + one EDA copy each
    mrpc = runs["mrpc-L2_H384-logit_kd-teacher_uniform-eda-s0"].data
    assert {"dev_f1", "dev_accuracy"} <= set(mrpc.metrics) and mrpc.params["augmentation.n_aug"] == "1"
    assert len(list((isolated_runs / "cache" / "augment").glob("eda-*.jsonl"))) == 2  # once per dataset


@pytest.mark.slow
def test_teacher_logit_cache_matches_the_teacher(shared_data):
    """The cache holds, row for row, what the teacher computes for each example alone."""
    import torch

    from study.execution.datacache import DataCache
    from study.execution.teacher import load_tokenizer
    from study.models import load_pretrained_classifier
    from study.training.trainer import teacher_logits

    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
    teacher = load_pretrained_classifier("all-MiniLM-L6-v2", 2).eval()
    data = DataCache(shared_data).tokenized("sst2", "train", tokenizer, 32, max_examples=40, data_seed=0)
    cache = teacher_logits(teacher, data, tokenizer, torch.device("cpu"), batch_size=16)
    assert cache.shape == (40, 2)
    with torch.no_grad():
        for i in (0, 7, 39):
            ids = torch.tensor([data.features[i]["input_ids"]])
            alone = teacher(input_ids=ids, token_type_ids=torch.zeros_like(ids)).logits[0]
            assert torch.allclose(cache[i], alone, atol=1e-4), i


@pytest.mark.slow
def test_a_cell_trained_by_one_grid_is_found_by_another(tmp_path, isolated_runs, shared_data):
    """The paper grids overlap: cells are keyed by id in the whole store, never retrained, and
    the second grid's table shows them with its own factors (read from the runs)."""
    from analysis.table import grid_factors, load_runs

    first = dict(TINY, axes={"dataset": ["sst2"], "student": ["L2_H384"], "initialisation": ["teacher_lower"],
                             "prediction.student_temperature": [1, 2]})
    second = dict(TINY, axes={"dataset": ["sst2"], "student": ["L2_H384"], "initialisation": ["teacher_lower"],
                              "prediction.student_temperature": [2], "prediction.distance": ["kl", "mse"]})
    assert invoke("run", "--grid", str(write_grid(tmp_path, first, "first")), "--data-dir", str(shared_data),
                  "--device", "cpu").exit_code == 0
    result = invoke("run", "--grid", str(write_grid(tmp_path, second, "second")), "--data-dir",
                    str(shared_data), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert len(cell_runs("first")) == 2 and len(cell_runs("second")) == 1  # kl at tau_s 2 was not retrained
    df = load_runs("second")
    assert len(df) == 2 and grid_factors(df) == ["prediction.distance"]
    assert sorted(df["prediction.distance"].astype(str)) == ["kl", "mse"]
    shared = df.loc[df["prediction.distance"] == "kl", "cell_id"].item()
    assert shared in set(load_runs("first")["cell_id"])
    assert set(load_runs("first").attrs["factors"]) == {"prediction.student_temperature"}
    # an edit that drops a cell: rerunning trains nothing, and the table shows the current cells only
    edited = dict(first, axes={**first["axes"], "prediction.student_temperature": [2]})
    result = invoke("run", "--grid", str(write_grid(tmp_path, edited, "first")), "--data-dir",
                    str(shared_data), "--device", "cpu")
    assert result.exit_code == 0 and len(cell_runs("first")) == 2
    assert list(load_runs("first")["cell_id"]) == [shared]


@pytest.mark.slow
def test_a_cell_distils_from_the_teacher_checkpoint_it_names(tmp_path, isolated_runs, shared_data):
    """Sultan et al.'s teacher checkpoint: one fine-tuning keeps the last, best-metric and
    lowest-loss weights; each cell reads the one it names and logs that checkpoint's dev score."""
    spec = dict(TINY, axes={"dataset": ["sst2"], "student": ["L2_H384"], "initialisation": ["teacher_lower"],
                            "objective": ["logit_kd"], "teacher.checkpoint": ["last", "best_metric", "lowest_loss"]},
                teacher=dict(TINY["teacher"], epochs=3))
    result = invoke("run", "--grid", str(write_grid(tmp_path, spec, "ckpt")), "--data-dir", str(shared_data),
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    teachers = client.search_runs([client.get_experiment_by_name("teachers").experiment_id])
    assert len(teachers) == 1  # one fine-tuning serves all three checkpoints
    history = client.get_metric_history(teachers[0].info.run_id, "dev_score")
    losses = client.get_metric_history(teachers[0].info.run_id, "dev_loss")
    assert len(history) == len(losses) == 3
    best = max(h.value for h in history)
    lowest = min(losses, key=lambda h: (h.value, h.step))
    by = {r.data.params["teacher.checkpoint"]: r for r in cell_runs("ckpt")}
    assert set(by) == {"last", "best_metric", "lowest_loss"} and len({r.data.tags["study.cell_id"] for r in by.values()}) == 3
    assert by["best_metric"].data.metrics["teacher_dev_score"] == pytest.approx(best)
    assert by["last"].data.metrics["teacher_dev_score"] == pytest.approx(history[-1].value)
    lowest_score = next(h.value for h in history if h.step == lowest.step)
    assert by["lowest_loss"].data.metrics["teacher_dev_score"] == pytest.approx(lowest_score)
    folders = list((isolated_runs / "teachers").glob("*/checkpoints/*"))
    assert sorted(f.name for f in folders) == ["best_metric", "lowest_loss"]


@pytest.fixture
def registered_tasks():
    """Tasks a test resolves from a user's YAML are registered process-wide: remove them after."""
    from study.tasks import catalogue as data

    before = set(data.TASKS)
    yield
    for name in set(data.TASKS) - before:
        del data.TASKS[name]


@pytest.mark.slow
def test_a_users_own_task_runs_in_a_grid_and_shows_in_the_report(tmp_path, isolated_runs, shared_data,
                                                                  registered_tasks):
    """A dataset declared only in a user's YAML, with files outside the repo: its cells train, and
    the table and report show it under an id made of its content, not its path."""
    import csv

    from analysis.report import report_grid
    from analysis.table import load_runs

    rows = (shared_data / "glue" / "SST-2" / "train.tsv").read_text().splitlines()[1:241]
    folder = tmp_path / "elsewhere" / "reviews"
    folder.mkdir(parents=True)
    for name, part in (("train.csv", rows[:160]), ("dev.csv", rows[160:])):
        with open(folder / name, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["review", "polarity"])
            for line in part:
                text, label = line.rsplit("\t", 1)
                writer.writerow([text, {"0": "neg", "1": "pos"}[label]])
    (folder / "reviews.yaml").write_text(
        "name: reviews\nversion: 1\ntask_type: classification\nformat: csv\n"
        "files: {train: train.csv, dev: dev.csv}\ntext_fields: [review]\nlabel_field: polarity\n"
        "labels: [neg, pos]\nmetrics: [accuracy]\n")
    spec = dict(TINY, axes={"dataset": [str(folder / "reviews.yaml")], "student": ["L2_H384"],
                            "initialisation": ["teacher_lower"], "objective": ["ce", "logit_kd"]})
    result = invoke("run", "--grid", str(write_grid(tmp_path, spec, "mine")), "--data-dir", str(shared_data),
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    df = load_runs("mine")
    assert len(df) == 2 and df["score"].between(0, 1).all()
    dataset = str(df["dataset"].iloc[0])
    assert dataset.startswith("reviews-") and str(tmp_path) not in dataset
    html = report_grid("mine", out_dir=tmp_path / "reports").read_text()
    assert dataset in html
