"""Reading results CSVs (analysis.csvtable): validation messages and the Distiller table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.csvtable import distiller_path, load_csv, load_distiller

DISTILLER = distiller_path()
needs_distiller = pytest.mark.skipif(
    not DISTILLER.is_file(), reason=f"shared Distiller table not found at {DISTILLER}"
)


def _write(tmp_path: Path, text: str, name: str = "runs.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8"))
    return path


RUNS = """task,loss,mixup,seed,acc
sst2,mi,TRUE,0,0.90
sst2,mse,FALSE,0,0.88
rte,mi,FALSE,0,0.66
rte,mse,TRUE,0,
rte,mse,TRUE,1,0.64
"""


def test_load_csv_types_and_dropped_rows(tmp_path):
    df = load_csv(_write(tmp_path, RUNS), "acc", ["loss", "mixup"], ["task"])
    assert len(df) == 4  # the row without acc is dropped ...
    assert df.attrs["load_notes"] == ["dropped 1 row(s) with no 'acc' value"]  # ... and reported
    assert df["acc"].dtype == float
    assert isinstance(df["loss"].dtype, pd.CategoricalDtype)
    assert list(df["mixup"].cat.categories) == ["FALSE", "TRUE"]  # not parsed as booleans
    assert list(df["task"].cat.categories) == ["rte", "sst2"]
    assert df["seed"].dtype.kind == "i"  # columns not named keep pandas' parsing


def test_numeric_levels_sort_as_numbers(tmp_path):
    text = "alpha,acc\n10,0.1\n9,0.2\n0.5,0.3\n"
    df = load_csv(_write(tmp_path, text), "acc", ["alpha"])
    assert list(df["alpha"].cat.categories) == ["0.5", "9", "10"]


def test_bom_is_ignored(tmp_path):
    df = load_csv(_write(tmp_path, RUNS, bom=True), "acc", ["loss"], ["task"])
    assert "task" in df.columns and len(df) == 4


def test_missing_factor_column_is_named_with_suggestion(tmp_path):
    with pytest.raises(ValueError) as err:
        load_csv(_write(tmp_path, RUNS), "acc", ["los", "mixup"], ["task"])
    msg = str(err.value)
    assert "factor column 'los'" in msg
    assert "Available columns: task, loss, mixup, seed, acc" in msg
    assert "Did you mean 'loss'?" in msg


def test_missing_block_and_metric_columns(tmp_path):
    with pytest.raises(ValueError, match="block column 'dataset'"):
        load_csv(_write(tmp_path, RUNS), "acc", ["loss"], ["dataset"])
    with pytest.raises(ValueError, match="metric column 'accs'.*Did you mean 'acc'"):
        load_csv(_write(tmp_path, RUNS), "accs", ["loss"])


def test_column_in_two_roles(tmp_path):
    with pytest.raises(ValueError, match="'task' is given as both factor and block"):
        load_csv(_write(tmp_path, RUNS), "acc", ["loss", "task"], ["task"])


def test_non_numeric_metric_is_named_with_offending_value(tmp_path):
    with pytest.raises(ValueError) as err:
        load_csv(_write(tmp_path, RUNS), "loss", ["mixup"], ["task"])
    msg = str(err.value)
    assert "metric column 'loss' is not numeric" in msg
    assert "'mi'" in msg and "line 2" in msg


def test_single_level_factor(tmp_path):
    text = "task,loss,acc\nsst2,mi,0.9\nrte,mi,0.6\n"
    with pytest.raises(ValueError) as err:
        load_csv(_write(tmp_path, text), "acc", ["loss"], ["task"])
    assert str(err.value) == (
        "factor 'loss' has a single level 'mi': it cannot explain anything; drop it"
    )


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_csv(tmp_path / "nope.csv", "acc", ["loss"])


@needs_distiller
def test_distiller_loads_every_run():
    df = load_distiller()
    # The shared README says 1,238 runs; the file has 1,239 data rows (its last line has no
    # newline, so `wc -l` undercounts by one) and none lacks a score.
    assert len(df) == 1239
    assert df.attrs["load_notes"] == []
    assert set(df["intermediate_loss_type"].cat.categories) == {"mi", "mse", "cos", "pkd", "ce"}
    assert list(df["mixup"].cat.categories) == ["FALSE", "TRUE"]
    # teacher_baseline.csv covers every (task, Teacher) pair; percentages become fractions.
    assert df["teacher_score"].notna().all()
    mnli = df[(df["task"] == "mnli") & (df["Teacher"] == "BERT_BASE")]["teacher_score"]
    assert mnli.unique().tolist() == [pytest.approx(0.844)]
    # augmented: any augmentation step or mixup
    steps = df[["contextual", "backtranslation", "random"]].sum(axis=1) > 0
    assert (df["augmented"] == (steps | (df["mixup"] == "TRUE"))).all()
    assert 0 < df["augmented"].sum() < len(df)


def test_shared_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SHARED_DIR", str(tmp_path))
    assert distiller_path() == tmp_path / "data" / "published" / "distiller" / "auto_distiller_tabular_data.csv"
    with pytest.raises(FileNotFoundError):
        load_distiller()
