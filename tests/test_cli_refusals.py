"""``study run`` refuses bad input in one line on stderr, with exit code 2, before anything is
trained or logged; run in process (typer's CliRunner). ``scripts/faults.py`` (``tests/test_faults.py``,
marked ``faults``) checks the same refusals from separate processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from study.cli import app

GRID = {
    "name": "refusals",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["ce"], "initialisation": ["random"],
             "augmentation": ["none"], "seed": [0]},
    "teacher": {"epochs": 1, "max_train_examples": 96, "max_eval_examples": 64, "max_length": 32, "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 64, "max_eval_examples": 64, "max_length": 32, "batch_size": 16},
}


@pytest.fixture
def grid(tmp_path) -> Path:
    path = tmp_path / "refusals.yaml"
    path.write_text(yaml.safe_dump(GRID))
    return path


def _refused(runs: Path, *args: str, names: list[str]) -> None:
    """``study run ARGS`` exits 2 with one stderr line naming each of ``names``; nothing trained."""
    result = CliRunner().invoke(app, ["run", *args])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert not (runs / "teachers").exists()


def test_train_file_with_only_a_header(tmp_path, grid, isolated_runs, shared_data):
    sst2 = tmp_path / "data" / "glue" / "SST-2"
    sst2.mkdir(parents=True)
    shutil.copy(shared_data / "glue" / "SST-2" / "dev.tsv", sst2 / "dev.tsv")
    header = (shared_data / "glue" / "SST-2" / "train.tsv").read_bytes().split(b"\n")[0]
    (sst2 / "train.tsv").write_bytes(header + b"\n")
    _refused(isolated_runs, "--grid", str(grid), "--data-dir", str(tmp_path / "data"), "--device", "cpu",
             names=["SST-2/train.tsv", "only a header"])


def test_runs_folder_that_is_a_file(grid, isolated_runs, shared_data):
    shutil.rmtree(isolated_runs)
    isolated_runs.write_text("not a folder")
    _refused(isolated_runs, "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu",
             names=[str(isolated_runs), "not a directory"])


@pytest.mark.parametrize("uri, names", [
    ("http//nohost", ["http//nohost", "allowed"]),
    ("http://127.0.0.1:9", ["http://127.0.0.1:9", "connection refused"]),
])
def test_unusable_tracking_uri(grid, isolated_runs, shared_data, monkeypatch, uri, names):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _refused(isolated_runs, "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu", names=names)


@pytest.mark.parametrize("extra, names", [
    (["--executor", "rya"], ["Unknown executor 'rya'", "Did you mean 'ray'"]),
    (["--address", "10.0.0.1:6379"], ["--address does not apply to --executor serial"]),
    (["--group-size", "0"], ["--group-size must be at least 1, got 0"]),
    (["--claim-timeout", "1"], ["--claim-timeout 1.0 s is too short"]),
])
def test_bad_option(grid, isolated_runs, shared_data, extra, names):
    _refused(isolated_runs, "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu", *extra,
             names=names)


def test_unknown_grid_names_the_shipped_ones(isolated_runs):
    _refused(isolated_runs, "--grid", "smok", names=["smok"])
