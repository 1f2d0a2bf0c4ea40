"""`study analyze` and `study recommend` (study/cli/analysis.py) on a throwaway typer app, and
the paper-figure scripts and the CSV report notebook end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from analysis.csvtable import DISTILLER_BLOCK, DISTILLER_FACTORS, distiller_path
from study.cli.analysis import register

ROOT = Path(__file__).resolve().parents[1]
DISTILLER = distiller_path()
needs_distiller = pytest.mark.skipif(
    not DISTILLER.is_file(), reason=f"shared Distiller table not found at {DISTILLER}"
)
DISTILLER_ARGS = [
    "analyze", "--csv", str(DISTILLER), "--metric", "score",
    "--factors", ",".join(DISTILLER_FACTORS), "--block", ",".join(DISTILLER_BLOCK),
]


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command, so that typer keeps `analyze` as a subcommand
        pass

    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _bad(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err
    for needle in needles:
        assert needle in err


@needs_distiller
def test_analyze_distiller_writes_outputs(app, runner, tmp_path):
    result = runner.invoke(
        app, [*DISTILLER_ARGS, "--out", str(tmp_path),
              "--interaction", "intermediate_loss_type:intermediate_strategy"]
    )
    assert result.exit_code == 0, result.output
    assert "ANOVA" in result.stdout and "best recipe:" in result.stdout
    cost = pd.read_csv(tmp_path / "cost.csv")
    assert list(cost.columns[:5]) == ["factor", "level", "mean_cost", "worst_cost", "blocks"]
    assert set(cost["factor"]) == set(DISTILLER_FACTORS)
    assert "mean_cost_frac" in cost.columns  # the Distiller table gets teacher scores
    anova = pd.read_csv(tmp_path / "anova.csv", index_col=0)
    assert {"intermediate_loss_type", "task", "Model", "Teacher", "Residual",
            "intermediate_loss_type:intermediate_strategy"} <= set(anova.index)
    assert {"partial_eta_sq", "omega_sq"} <= set(anova.columns)
    best = pd.read_csv(tmp_path / "best.csv")
    assert list(best.columns[:4]) == list(DISTILLER_FACTORS) and "mean_rank" in best.columns
    for png in ("main_effects.png", "interaction.png", "cost.png"):
        assert (tmp_path / png).stat().st_size > 1000


def _small_csv(tmp_path: Path) -> Path:
    rows = []
    for d, base in (("sst2", 0.9), ("rte", 0.6)):
        for obj, gain in (("logit", 0.0), ("hidden", 0.02)):
            for init in ("random", "teacher_lower"):
                for seed in (0, 1):
                    rows.append((d, obj, init, "same", seed, base + gain + 0.001 * seed, "x"))
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows, columns=["dataset", "objective", "initialisation", "const", "seed",
                                "acc", "note"]).to_csv(path, index=False)
    return path


def test_analyze_small_csv_balanced(app, runner, tmp_path):
    csv = _small_csv(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["analyze", "--csv", str(csv), "--metric", "acc",
                                 "--factors", "objective,initialisation", "--block", "dataset",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    averaged = pd.read_csv(out / "averaged_cost.csv")  # complete grid: the averaged cost too
    logit = averaged[(averaged["factor"] == "objective") & (averaged["level"] == "logit")]
    assert logit["mean_cost"].iloc[0] == pytest.approx(0.02)
    assert "best recipe: objective=hidden" in result.stdout


def test_bad_factor_exits_2_and_names_it(app, runner, tmp_path):
    result = runner.invoke(app, ["analyze", "--csv", str(_small_csv(tmp_path)), "--metric", "acc",
                                 "--factors", "objectiv,initialisation"])
    _bad(result, "'objectiv'", "Did you mean 'objective'", "Available columns")


def test_non_numeric_metric_exits_2(app, runner, tmp_path):
    result = runner.invoke(app, ["analyze", "--csv", str(_small_csv(tmp_path)), "--metric", "note",
                                 "--factors", "objective"])
    _bad(result, "metric column 'note' is not numeric", "'x'")


def test_single_level_factor_exits_2(app, runner, tmp_path):
    result = runner.invoke(app, ["analyze", "--csv", str(_small_csv(tmp_path)), "--metric", "acc",
                                 "--factors", "objective,const"])
    _bad(result, "factor 'const' has a single level 'same'")


def test_bad_interaction_exits_2(app, runner, tmp_path):
    result = runner.invoke(app, ["analyze", "--csv", str(_small_csv(tmp_path)), "--metric", "acc",
                                 "--factors", "objective,initialisation", "--block", "dataset",
                                 "--interaction", "objective:seed"])
    _bad(result, "'seed'", "not a factor")


def test_exactly_one_source(app, runner, tmp_path):
    _bad(runner.invoke(app, ["analyze"]), "exactly one of --grid")
    _bad(runner.invoke(app, ["analyze", "--grid", "g", "--csv", str(_small_csv(tmp_path))]),
         "exactly one of --grid")
    _bad(runner.invoke(app, ["analyze", "--csv", str(tmp_path / "none.csv"), "--metric", "acc",
                             "--factors", "objective"]), "none.csv")


def test_analyze_grid_from_mlflow(app, runner, tmp_path):
    from mlflow_fixtures import Cell, log_cells, sqlite_uri

    uri = sqlite_uri(tmp_path / "store")
    cells = [
        Cell(dataset=d, objective=o, initialisation=i, seed=s,
             score=base + (0.03 if o == "hidden_mse" else 0.0) + 0.01 * (i == "teacher_lower")
             + 0.002 * s, teacher_score=base + 0.05)
        for d, base in (("sst2", 0.85), ("rte", 0.6))
        for o in ("logit_kd", "hidden_mse")
        for i in ("random", "teacher_lower")
        for s in (0,)  # one seed: every MLflow run costs time, and 8 cells leave 4 residual df
    ]
    log_cells(uri, "tiny", cells)
    result = runner.invoke(app, ["analyze", "--grid", "tiny", "--tracking-uri", uri,
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "factors objective, initialisation; block dataset, student" in result.stdout
    assert "best recipe: objective=hidden_mse, initialisation=teacher_lower" in result.stdout
    cost = pd.read_csv(tmp_path / "out" / "cost.csv")
    logit = cost[(cost["factor"] == "objective") & (cost["level"] == "logit_kd")].iloc[0]
    assert logit["mean_cost"] == pytest.approx(0.03)
    assert (tmp_path / "out" / "interaction.png").is_file()

    unknown = runner.invoke(app, ["analyze", "--grid", "nope", "--tracking-uri", uri])
    _bad(unknown, "'nope'")

    # recommend for rte from sst2's runs alone (features: meta-features of the runs)
    rec = runner.invoke(app, ["recommend", "--grid", "tiny", "--tracking-uri", uri,
                              "--dataset", "rte", "--metric", "score"])
    assert rec.exit_code == 0, rec.output
    assert "recommending objective, initialisation for 'rte'" in rec.stdout
    assert "the best run configuration scored 0.64" in rec.stdout

    # the grid-only paper figure, on the same store
    figs = tmp_path / "figs"
    done = _script("wang2023_init_by_objective.py", "--grid", "tiny", "--tracking-uri", uri,
                   tmp_path=figs)
    assert done.returncode == 0, done.stderr
    cells = pd.read_csv(figs / "wang2023_init_by_objective.csv")
    assert len(cells) == 4 and cells["runs"].tolist() == [2, 2, 2, 2]
    hidden_tl = cells[(cells["objective"] == "hidden_mse") & (cells["initialisation"] == "teacher_lower")]
    assert hidden_tl["centred_score"].iloc[0] == pytest.approx(0.02)  # (0.03 + 0.01) - 0.02 mean
    assert (figs / "wang2023_init_by_objective.png").is_file()


@needs_distiller
def test_recommend_on_distiller(app, runner):
    args = ["recommend", "--csv", str(DISTILLER), "--metric", "ratio",
            "--factors", ",".join(DISTILLER_FACTORS)]
    result = runner.invoke(app, [*args, "--dataset", "rte",
                                 "--context", "Model=TinyBERT4,Teacher=BERT_BASE", "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "recommended: intermediate_loss_type=" in result.stdout
    assert "on rte's own runs: the pick scored" in result.stdout
    # boolq has dataset features but no runs: a truly new dataset
    new = runner.invoke(app, [*args, "--dataset", "boolq"])
    assert new.exit_code == 0, new.output
    assert "on boolq's own runs" not in new.stdout
    _bad(runner.invoke(app, [*args, "--dataset", "boolx"]), "'boolx'", "Did you mean 'boolq'")
    _bad(runner.invoke(app, [*args, "--dataset", "rte", "--context", "Model"]),
         "'Model' is not of the form COLUMN=VALUE")
    _bad(runner.invoke(app, [*args, "--dataset", "rte", "--context", "Model=TinyBERT9"]),
         "no training run has Model=TinyBERT9", "TinyBERT4")


# --- paper_figures/ scripts, run as a user would --------------------------------------------

def _script(name: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(ROOT / "paper_figures" / name), *args, "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )


@needs_distiller
@pytest.mark.parametrize(
    ("script", "outputs"),
    [
        ("distiller_intermediate_by_task.py",
         ["distiller_intermediate_by_task.png", "distiller_intermediate_by_task.csv"]),
        ("distiller_aug_gain_vs_size.py",
         ["distiller_aug_gain_vs_size.png", "distiller_aug_gain_vs_size.csv"]),
        ("sultan2024_cost_table.py", ["sultan2024_cost_table.png", "sultan2024_cost_table.csv"]),
    ],
)
def test_paper_figure_on_distiller(script, outputs, tmp_path):
    done = _script(script, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in outputs:
        assert (tmp_path / name).stat().st_size > 0, name
    table = pd.read_csv(tmp_path / outputs[1])
    assert len(table) > 0


def test_wang2023_needs_a_grid(tmp_path):
    done = _script("wang2023_init_by_objective.py", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "needs --grid" in done.stderr and "initialisation" in done.stderr
    assert not list(tmp_path.glob("*.png"))


# --- the CSV report notebook ----------------------------------------------------------------

@pytest.mark.slow
@needs_distiller
def test_csv_report_notebook_executes(tmp_path):
    from analysis.report import CSV_REPORT_NOTEBOOK, render_report  # papermill

    html = render_report(CSV_REPORT_NOTEBOOK,
                         {"out_dir": str(tmp_path / "out")}, tmp_path / "csv_report.html")
    text = html.read_text()
    for needle in ("partial_eta_sq", "mean_cost", "blocks_missing", "favours levels",
                   "intermediate_loss_type"):
        assert needle in text, needle
    # main effects, interaction, cost bars, augmentation vs size
    assert text.count("data:image/png") >= 4
    assert (tmp_path / "out" / "cost.csv").is_file()
