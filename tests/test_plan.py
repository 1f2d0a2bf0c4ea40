"""`study plan` on a synthetic pilot store (tests/mlflow_fixtures.py) and on an empty one."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from study.cli import app


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    from mlflow_fixtures import Cell, log_cells, sqlite_uri

    uri = sqlite_uri(tmp_path_factory.mktemp("pilot"))
    noise = [0.004, -0.006, 0.009, -0.002, 0.001, -0.008, 0.005, 0.003]
    cells = [Cell(dataset=d, objective="logit_kd", initialisation=i, seed=s,
                  score=base + (0.01 if i == "teacher_lower" else 0.0) + noise[k % 8])
             for k, (d, base, i, s) in enumerate((d, base, i, s) for d, base in (("sst2", 0.8), ("mrpc", 0.7))
                                                 for i in ("teacher_lower", "teacher_upper") for s in (0, 1))]
    log_cells(uri, "wang2023-cpu", cells)
    return uri


def test_plan_for_a_claim_prints_a_resized_grid(pilot, tmp_path):
    out = tmp_path / "planned.yaml"
    res = CliRunner().invoke(app, ["plan", "--claim", "wang-lower-beats-upper-logit-kd", "--effect", "1.0",
                                   "--tracking-uri", pilot, "--out", str(out), "--no-forecast"])
    assert res.exit_code == 0, res.output
    assert "pilot: grid wang2023-cpu, claim wang-lower-beats-upper-logit-kd (contrast): +0.40 points" in res.output
    assert "4 units (2 datasets × 2 seeds)" in res.output and "planning for 1.00 points (given)" in res.output
    assert "more seeds:" in res.output and "more datasets:" in res.output
    assert "its 95% interval is" in res.output and "expected 95% interval width about" in res.output
    import yaml

    spec = yaml.safe_load(out.read_text())
    assert spec["name"] == "wang2023-cpu" and len(spec["axes"]["seed"]) >= 3


def test_plan_for_a_grid_contrast_with_forecast(pilot):
    res = CliRunner().invoke(app, ["plan", "--grid", "wang2023-cpu", "--contrast", "teacher_lower:teacher_upper",
                                   "--tracking-uri", pilot])
    assert res.exit_code == 0, res.output
    assert "pilot: grid wang2023-cpu, initialisation=teacher_lower − initialisation=teacher_upper" in res.output
    assert "the pilot's own estimate" in res.output and "resized grid" in res.output
    assert "forecast of wang2023-cpu (" in res.output or "no forecast" in res.output


def test_plan_without_pilot_runs_says_what_to_run(tmp_path):
    from mlflow_fixtures import sqlite_uri

    uri = sqlite_uri(tmp_path / "empty")
    res = CliRunner().invoke(app, ["plan", "--grid", "wang2023-cpu", "--contrast", "a:b", "--tracking-uri", uri])
    assert res.exit_code == 2
    assert "no pilot runs of grid wang2023-cpu in this store: run `study run --grid wang2023-cpu`" in res.output
    res = CliRunner().invoke(app, ["plan", "--claim", "sultan-one-recipe", "--tracking-uri", uri])
    assert res.exit_code == 2 and "sizes contrast, best_level, interaction claims" in res.output


def test_plan_for_a_users_grid_reads_the_yaml_the_store_recorded(tmp_path):
    """A grid run from a YAML file (not shipped) is resized from the file `study run` recorded;
    one the store has no file for is refused in one line, not with a traceback."""
    import yaml
    from mlflow_fixtures import Cell, log_cells, sqlite_uri

    from study.core import contract
    from study.execution.tracking import Tracker

    uri = sqlite_uri(tmp_path / "store")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "axes": {
        "dataset": ["sst2", "mrpc"], "student": ["L2_H384"], "objective": ["logit_kd"],
        "initialisation": ["teacher_lower", "teacher_upper"], "seed": [0, 1]}}))
    noise = [0.004, -0.006, 0.009, -0.002]
    log_cells(uri, "mine", [Cell(dataset=d, objective="logit_kd", initialisation=i, seed=s,
                                 score=0.8 + (0.01 if i == "teacher_lower" else 0.0) + noise[2 * k + s])
                            for k, d in enumerate(("sst2", "mrpc")) for i in ("teacher_lower", "teacher_upper")
                            for s in (0, 1)])
    args = ["plan", "--grid", "mine", "--contrast", "teacher_lower:teacher_upper", "--effect", "1.0",
            "--tracking-uri", uri, "--no-forecast"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "grid 'mine' is not shipped and the store has no readable YAML" in res.output
    tracker = Tracker(uri)  # what `study run --grid FILE` records (the grid version is left out here)
    tracker.client.set_experiment_tag(tracker.experiment_id("mine"), contract.TAG_GRID_SOURCE, str(path))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    resized = yaml.safe_load(res.output.split("resized grid:\n", 1)[1])
    assert resized["name"] == "mine" and len(resized["axes"]["seed"]) > 2
