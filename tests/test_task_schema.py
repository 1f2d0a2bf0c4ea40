"""The task-YAML schema (pydantic, ``study.tasks.schema``) and header-less csv/tsv files named by
``columns:`` (AG News, Yelp and DBpedia as Zhang et al. 2015 ship them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from study.core.errors import StudyConfigError
from study.tasks.catalogue import TASKS, load_task, resolve_dataset, task_identity

AG_NEWS = """\
name: agnews
version: 1
task_type: classification
format: csv
files: {train: train.csv, dev: test.csv}
columns: [label, title, description]
text_fields: [title, description]
label_field: label
labels: ["1", "2", "3", "4"]
metrics: [accuracy]
"""
TRAIN = ('"3","Wall St. Bears Claw Back","Reuters - Short-sellers, Wall Street\'s dwindling band"\n'
         '"4","Ky. Company Wins Grant","A company founded by a chemistry researcher"\n'
         '"1","Fears for T N pension","Unions representing workers at Turner   Newall"\n')
TEST = '"2","Sharapova wins in Tokyo","Maria Sharapova won the title, beating ""a rival"""\n'


@pytest.fixture(autouse=True)
def _own_tasks(monkeypatch):
    from study.tasks import catalogue

    monkeypatch.setattr(catalogue, "TASKS", dict(TASKS))


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (folder / name).write_text(content)
    return folder / "task.yaml"


def test_a_headerless_csv_reads_every_row_by_its_declared_columns(tmp_path):
    dataset_id, spec = resolve_dataset(_write(tmp_path, {"task.yaml": AG_NEWS, "train.csv": TRAIN, "test.csv": TEST}))
    assert re.fullmatch(r"agnews-[0-9a-f]{12}", dataset_id)
    assert spec.columns == ("label", "title", "description") and task_identity(spec)["columns"] == list(spec.columns)
    splits = load_task(dataset_id, None)
    assert len(splits["train"]) == 3  # the first row is an example, not a header
    assert splits["train"].texts[0] == ("Wall St. Bears Claw Back", "Reuters - Short-sellers, Wall Street's dwindling band")
    assert splits["train"].labels == [2, 3, 0]
    assert splits["dev"].texts == [("Sharapova wins in Tokyo", 'Maria Sharapova won the title, beating "a rival"')]


def test_a_headerless_tsv_and_the_shipped_ids_without_columns(tmp_path):
    task = AG_NEWS.replace("format: csv", "format: tsv").replace(".csv", ".tsv")
    rows = "3\tWall St.\tShort-sellers\n1\tPension\tUnions\n"
    dataset_id, _ = resolve_dataset(_write(tmp_path, {"task.yaml": task, "train.tsv": rows, "test.tsv": rows}))
    assert load_task(dataset_id, None)["train"].texts == [("Wall St.", "Short-sellers"), ("Pension", "Unions")]
    assert "columns" not in task_identity(TASKS["sst2"])  # every other task keeps the id it had


@pytest.mark.parametrize("edit, files, pattern", [
    # without columns, a header-less file is still refused naming the columns it saw
    (("columns: [label, title, description]\n", ""), {},
     r"train.csv' line 1 \(header\): no column 'title'; the columns are \['3', 'Wall St. Bears Claw Back', .*columns: \[\.\.\.\]"),
    ((), {"train.csv": '"3","only a title"\n'},
     r"train.csv' line 1: 2 comma-separated fields, expected 3 \(the declared columns'\)"),
    (("text_fields: [title, description]", "text_fields: [title, body]"), {},
     r"task.yaml': 'body' is not one of the declared columns \['label', 'title', 'description'\]"),
    (("format: csv", "format: jsonl"), {}, r"columns names the columns of a header-less csv or tsv file"),
    (("columns:", "header: true\ncolumns:"), {}, r"columns names the columns of a header-less csv or tsv file"),
])
def test_columns_errors_name_file_line_and_what_is_expected(tmp_path, edit, files, pattern):
    task = AG_NEWS.replace(*edit) if edit else AG_NEWS
    with pytest.raises(StudyConfigError, match=pattern):
        resolve_dataset(_write(tmp_path, {"task.yaml": task, "train.csv": TRAIN, "test.csv": TEST, **files}))


@pytest.mark.parametrize("edit, pattern", [
    (("metrics: [accuracy]", "metrics: [accuracy]\nsplit: {source: train, seed: -1, fractions: {a: 0.5, b: 0.5}}"),
     r"task.yaml': split.seed: Input should be greater than or equal to 0, got -1"),
    (("metrics: [accuracy]", "metrics: [accuracy]\nhub: {path: x, splitz: {}}"),
     r"task.yaml': unknown key 'hub.splitz'. Allowed: config, label_field, path, splits, text_fields. Did you mean 'splits'"),
    (("version: 1\n", ""), r"task.yaml': missing key 'version'"),
    (("task_type: classification", "task_type: clasification"),
     r"task.yaml': task_type 'clasification' is not one of classification, .*Did you mean 'classification'"),
    (("metrics: [accuracy]", "metrics: [accuracy, accuracy]"), r"'metrics' repeats an entry"),
])
def test_schema_refusals_are_one_line_naming_the_key(tmp_path, edit, pattern):
    with pytest.raises(StudyConfigError, match=pattern) as info:
        resolve_dataset(_write(tmp_path, {"task.yaml": AG_NEWS.replace(*edit), "train.csv": TRAIN, "test.csv": TEST}))
    assert "\n" not in str(info.value)
