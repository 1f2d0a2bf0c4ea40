"""Kept students and `study export`: a tiny grouped grid keeps its students, each loads back from
its exported folder and reproduces its logged dev score exactly on CPU; a cell without weights is
retrained and checked; bad ids, empty grids and bad options give one line."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

TINY = {
    "name": "tiny_keep",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["ce", "attention_kl"],
             "initialisation": ["teacher_lower"], "seed": [0]},
    "teacher": {"epochs": 1, "max_train_examples": 96, "max_eval_examples": 64, "max_length": 32,
                "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 64, "max_eval_examples": 64, "max_length": 32,
                 "batch_size": 16},
    "group_size": 2,
    "keep_student": "all",
}


def write_grid(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def invoke(*args: str):
    from study.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def cell_runs(grid: str) -> list:
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(grid)
    return client.search_runs([exp.experiment_id], "tags.`study.kind` = 'cell'")


def dev_score(folder: Path, data_dir: Path) -> float:
    """The exported student's dev score, evaluated as the trainer evaluates (batches of 128)."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from study.execution.datacache import DataCache
    from study.tasks.catalogue import TASKS
    from study.tasks.types import get_type

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ttype = get_type("classification")
    dev, labels = DataCache(data_dir).tokenized_dev("sst2", tokenizer, 32, 64)
    loader = DataLoader(dev, batch_size=128, shuffle=False, collate_fn=ttype.collator(tokenizer))
    return ttype.evaluate(model, loader, dev, labels, TASKS["sst2"], torch.device("cpu"))["score"]


def test_bad_options_and_ids_give_one_line(tmp_path, isolated_runs):
    for args, says in [(["--out", str(tmp_path / "o")], "give --cell ID"),
                       (["--best", "--out", str(tmp_path / "o")], "--best needs --grid"),
                       (["--cell", "0123456789abcdef", "--out", str(tmp_path / "o")], "No finished run of cell"),
                       (["--grid", "smoke", "--best", "--out", str(tmp_path / "o")], "has no finished cell"),
                       (["--grid", "smoke", "--best", "--dataset", "cola", "--out", str(tmp_path / "o")],
                        "has no dataset 'cola'")]:
        result = invoke("export", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    grid = write_grid(tmp_path, TINY)
    result = invoke("run", "--grid", str(grid), "--keep-student", "some")
    assert result.exit_code == 2 and "--keep-student must be one of none, all" in result.stderr


def test_keep_student_is_no_part_of_a_cell():
    from study.grid import load_grid, parse_grid

    kept, plain = parse_grid(TINY), parse_grid({k: v for k, v in TINY.items() if k != "keep_student"})
    assert kept.keep_student == "all" and plain.keep_student == "none"
    assert [c.cell_id for c in kept.cells()] == [c.cell_id for c in plain.cells()]
    assert load_grid("smoke").keep_student == "all" and load_grid("full").keep_student == "none"


def test_stale_staging_folders_go(isolated_runs):
    from study.execution.students import remove_stale, students_dir

    students_dir().mkdir(parents=True)
    dead = students_dir() / "abc.tmp999999999"
    alive = students_dir() / f"abc.tmp{os.getppid()}"
    for d in (dead, alive):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"half")
    assert remove_stale("abc") == 1 and not dead.exists() and alive.exists()
    other = students_dir() / "def.tmp999999999"
    other.mkdir()
    assert remove_stale() == 1 and not other.exists() and alive.exists()  # what `study run` sweeps


@pytest.mark.slow
def test_kept_and_retrained_students_export(tmp_path, isolated_runs, shared_data):
    t0 = time.perf_counter()
    grid = write_grid(tmp_path, TINY)
    result = invoke("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    assert result.exit_code == 0, result.output + result.stderr
    runs = cell_runs("tiny_keep")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.metrics["group_size"] for r in runs} == {2.0}
    assert not list((isolated_runs / "students").iterdir())  # staging folders go once logged
    for run in runs:  # each kept student loads back and gives its logged dev score exactly
        assert run.data.tags["study.student_artifacts"] == "student" and len(run.data.tags["study.student_sha256"]) == 64
        out = tmp_path / f"export-{run.info.run_id}"
        result = invoke("export", "--cell", run.data.tags["study.cell_id"], "--out", str(out))
        assert result.exit_code == 0, result.stderr
        assert "checksums verified" in result.output and (out / "model.safetensors").exists()
        assert dev_score(out, shared_data) == run.data.metrics["dev_score"]
        card = (out / "README.md").read_text()
        assert card.startswith("---\n") and run.data.tags["study.cell_id"] in card and "study run --grid" in card
        assert "None" not in card.split("## Data")[1].split("##")[0]  # every count is a number or "all"
        config = json.loads((out / "config.json").read_text())
        assert config["id2label"] == {"0": "negative", "1": "positive"}  # the task's class names
        assert all(f.stat().st_mode & 0o044 for f in out.iterdir())  # readable by others, as shared
    best = max(runs, key=lambda r: r.data.metrics["dev_score"])
    result = invoke("export", "--grid", str(grid), "--best", "--dataset", "sst2", "--out", str(tmp_path / "best"))
    assert result.exit_code == 0 and best.data.tags["study.cell_id"] in result.output, result.stderr
    result = invoke("export", "--grid", str(grid), "--best", "--out", str(tmp_path / "best"))
    assert result.exit_code == 2 and "not an empty folder" in result.stderr

    # a cell that kept no weights is retrained, checked against its logged score, and registered
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    other = next(r for r in runs if r.info.run_id != best.info.run_id)
    client.delete_tag(other.info.run_id, "study.student_artifacts")
    out = tmp_path / "retrained"
    result = invoke("export", "--cell", other.data.tags["study.cell_id"], "--grid", str(grid), "--out", str(out),
                    "--data-dir", str(shared_data), "--device", "cpu", "--register", "tiny-student")
    assert result.exit_code == 0, result.output + result.stderr
    assert "kept no weights: retraining" in result.stderr and "equal" in result.output
    assert "retrained by `study export`" in (out / "README.md").read_text()
    assert dev_score(out, shared_data) == other.data.metrics["dev_score"]
    [version] = client.search_model_versions("name = 'tiny-student'")
    assert version.tags["study.cell_id"] == other.data.tags["study.cell_id"] and version.run_id == other.info.run_id
    print(f"slow export test: {time.perf_counter() - t0:.0f} s")
