"""The report end to end: an MLflow store in the runner's schema → papermill → HTML."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from mlflow_fixtures import Cell, log_cells, log_teacher, sqlite_uri  # noqa: E402

from analysis import report, table  # noqa: E402

# 2 objectives x 2 initialisations x 2 seeds on one dataset; attention_kl is planted 0.05 better.
CELLS = [
    Cell(
        objective=objective,
        initialisation=initialisation,
        seed=seed,
        score=0.80 + (0.05 if objective == "attention_kl" else 0.0) + 0.002 * seed
        + (0.001 if initialisation == "teacher_lower" else 0.0),
    )
    for objective in ("attention_kl", "logit_kd")
    for initialisation in ("random", "teacher_lower")
    for seed in (0, 1)
]

# The same design on a second dataset with a lower baseline: 2 datasets x 2 objectives x
# 2 initialisations x 2 seeds, enough for the report's seed, pairwise and mixed-effects sections.
MRPC_CELLS = [
    Cell(
        dataset="mrpc",
        objective=cell.objective,
        initialisation=cell.initialisation,
        seed=cell.seed,
        score=cell.score - 0.1 + 0.003 * (cell.seed == 1 and cell.objective == "logit_kd"),
        teacher_score=0.85,
    )
    for cell in CELLS
]


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    uri = sqlite_uri(tmp_path_factory.mktemp("mlruns"))
    log_teacher(uri, "teacher-sst2", 0.9)
    log_teacher(uri, "teacher-mrpc", 0.85)
    log_cells(uri, "smoke", CELLS)
    log_cells(uri, "two-datasets", CELLS + MRPC_CELLS)
    log_cells(uri, "nothing-finished", [Cell(status="FAILED")])
    return uri


def test_results_table_is_sorted_by_score(uri):
    results = report.results_table(table.load_runs("smoke", uri))
    assert list(results.columns) == list(report.RESULT_COLUMNS)
    assert results["score"].is_monotonic_decreasing
    assert results.loc[0, "name"] == "sst2-L2_H384-attention_kl-teacher_lower-none-s1"


def test_side_by_side_names_each_metric_and_the_score_relative_to_the_teacher(uri):
    df = table.load_runs("two-datasets", uri)
    out = report.side_by_side(df)
    assert list(out["dataset"]) == ["mrpc", "sst2"]
    assert list(out.columns) == ["dataset", "metric", "teacher", "attention_kl", "attention_kl / teacher",
                                 "logit_kd", "logit_kd / teacher"]
    sst2 = out.set_index("dataset").loc["sst2"]
    assert sst2["teacher"] == pytest.approx(0.9)
    mean = sum(c.score for c in CELLS if c.objective == "logit_kd") / 4
    assert sst2["logit_kd"] == pytest.approx(mean)
    assert sst2["logit_kd / teacher"] == pytest.approx(mean / 0.9)  # score / teacher_dev_score
    # each dataset's metric as its cells logged it (runs without the param: "score")
    df = pd.DataFrame({"dataset": ["conll2003", "squad-devsplit", "stsb"], "objective": ["ce"] * 3,
                       "score_metric": ["f1", "f1", "pearson+spearman"], "score": [0.8, 0.4, 0.6],
                       "teacher_score": [0.9, 0.5, 0.8], "score_ratio": [0.8 / 0.9, 0.8, 0.75]})
    out = report.side_by_side(df).set_index("dataset")
    assert list(out["metric"]) == ["f1", "f1", "pearson+spearman"]
    assert out.loc["squad-devsplit", "ce / teacher"] == pytest.approx(0.8)
    assert "metric" in report.side_by_side(table.load_runs("smoke", uri)).columns


def test_anova_section_explains_the_model(uri):
    note, anova_result = report.anova_section(table.load_runs("smoke", uri))
    assert "objective:initialisation" in note
    assert anova_result.index[0] == "objective"
    assert anova_result.loc["Residual", "df"] == 8 - 4


def test_seed_noise_beside_each_factor(uri):
    note, noise = report.seed_noise_section(table.load_runs("smoke", uri))
    assert noise is not None and "seed_sd" in noise.columns and "objective effect" in noise.columns
    assert (noise["seed_sd"] >= 0).all() and "Seeds explain" in note
    one_seed = pd.DataFrame({"dataset": ["a", "a"], "seed": [0, 0], "objective": ["x", "y"], "score": [0.8, 0.9]})
    assert report.seed_noise_section(one_seed)[1] is None


def test_anova_section_says_why_not():
    one_cell = pd.DataFrame({"objective": ["logit_kd"], "score": [0.8]})
    note, anova_result = report.anova_section(one_cell)
    assert anova_result is None
    assert note.startswith("No ANOVA: no treatment factor")

    unreplicated = pd.DataFrame({"objective": ["a", "b"], "score": [0.8, 0.9]})
    note, anova_result = report.anova_section(unreplicated)
    assert anova_result is None
    assert "No residual degrees of freedom" in note


def test_plot_has_one_panel_per_dataset_and_a_teacher_line(uri):
    df = table.load_runs("smoke", uri)
    two_datasets = pd.concat(
        [df, df.assign(dataset="mrpc", score=df["score"] - 0.1, teacher_score=0.85)]
    )
    figure = report.plot_by_factors(two_datasets)
    axes = [ax for ax in figure.axes if ax.get_title()]
    assert sorted(ax.get_title() for ax in axes) == ["mrpc", "sst2"]
    sst2 = next(ax for ax in axes if ax.get_title() == "sst2")
    dashed = [line for line in sst2.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in dashed] == [pytest.approx(0.9)]


def test_plot_with_a_single_initialisation(uri):
    df = table.load_runs("smoke", uri)
    figure = report.plot_by_factors(df[df["initialisation"] == "random"])
    assert [ax.get_title() for ax in figure.axes if ax.get_title()] == ["sst2"]


def test_plot_takes_the_papers_pair_of_dotted_factors(uri):
    df = table.load_runs("smoke", uri)
    df = df.assign(**{"intermediate.loss": df["objective"], "intermediate.mapping": df["initialisation"]})
    df.attrs["factors"] = ["intermediate.loss", "intermediate.mapping"]
    figure = report.plot_by_factors(df)
    assert "intermediate.loss × intermediate.mapping" in figure._suptitle.get_text()


@pytest.mark.slow  # starts a kernel and imports mlflow, seaborn, statsmodels, sklearn there: ~15 s
def test_report_grid_writes_html(uri, tmp_path):
    out = report.report_grid("two-datasets", tracking_uri=uri, out_dir=tmp_path / "reports")
    assert out == tmp_path / "reports" / "two-datasets.html"
    html = out.read_text(encoding="utf-8")
    assert "Contributions of each factor (type-II ANOVA)" in html
    assert "partial_eta_sq" in html
    assert "sst2-L2_H384-logit_kd-random-none-s0" in html
    # every section of the analysis layer is there, and renders on this grid
    for heading in (
        "Cost of sub-optimal choices", "Best single recipe", "Main effects and interaction",
        "Replicate seeds", "Mixed-effects model", "Recommender, leave one dataset out",
        "Datasets side by side",
    ):
        assert re.search(rf"<h2[^>]*>{re.escape(heading)}", html), heading
    assert "blocks_missing" in html and "Cost averaged over the other factors" in html
    assert "Best single recipe: objective = attention_kl" in html
    assert "ci_low" in html and "p_adjusted" in html  # bootstrap_ci and pairwise tables
    assert "group_var" in html  # the mixed-effects table
    # two datasets are too few for leave-one-dataset-out: the section says why, it does not fail
    assert "No leave-one-dataset-out evaluation: the grid has 2 dataset(s)" in html
    for skipped in ("No seed statistics", "No interval", "No pairwise", "No mixed-effects"):
        assert skipped not in html
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in html  # no warning printed
    # the HTML template itself carries a small PNG in its CSS: count the figures' <img>s
    # (score by objective x initialisation, cost bars, main effects, interaction heat-map)
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', html)) == 4
    assert "load_runs(grid, tracking_uri)" not in html  # code cells are left out
    assert "grid_design(df)" not in html
    assert list((tmp_path / "reports").iterdir()) == [out]  # the executed .ipynb is cleaned up


def test_report_grid_unknown_or_unfinished_grid(uri, tmp_path):
    with pytest.raises(LookupError, match="study run --grid nope"):
        report.report_grid("nope", tracking_uri=uri, out_dir=tmp_path)
    with pytest.raises(LookupError, match="no finished cells"):
        report.report_grid("nothing-finished", tracking_uri=uri, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_render_report_failure_names_the_notebook(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    broken = tmp_path / "broken.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("raise RuntimeError('planted failure')")]), broken)
    with pytest.raises(report.ReportError, match="broken.ipynb") as info:
        report.render_report(broken, {}, tmp_path / "out" / "broken.html")
    assert "planted failure" in str(info.value)
    assert not (tmp_path / "out" / "broken.html").exists()


def test_kernel_runs_this_interpreter():
    name = report.ensure_kernel()
    from jupyter_client.kernelspec import KernelSpecManager

    assert report._uses_this_python(KernelSpecManager().get_kernel_spec(name).argv)


def test_slopes_section_reads_numeric_factors(uri):
    df = table.load_runs("smoke", uri)
    note, slopes = report.slopes_section(df)
    assert slopes is None and "No numeric factor" in note
    temps = df["objective"].cat.codes.map({0: "1.0", 1: "2.0"}).fillna("4.0").astype(str)
    df = df.assign(**{"prediction.student_temperature": temps})
    df.attrs["factors"] = ["prediction.student_temperature", "initialisation", "seed"]
    note, slopes = report.slopes_section(df)
    assert list(slopes["factor"]) == ["prediction.student_temperature"] and "95 % interval" in note
    assert slopes.iloc[0]["ci_low"] <= slopes.iloc[0]["slope"] <= slopes.iloc[0]["ci_high"]
