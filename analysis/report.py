"""The HTML report of a grid: ``analysis/notebooks/report.ipynb`` (package data) executed by
papermill, exported by nbconvert.

``study report --grid NAME`` calls :func:`report_grid`. The notebook only calls functions from
``analysis``; the helpers it needs beyond ``table`` and ``anova`` (the results table, the ANOVA
section and the figure) live here so they can be tested and reused without a kernel. Its later
sections call the analysis layer directly, with the factors and blocks of
``analysis.analyze.grid_design`` (as ``study analyze --grid``): cost of sub-optimal choices
(``cost``), best recipe (``recipe``), main effects and interaction (``figures``), seed bootstrap
intervals, pairwise tests and the mixed-effects model (``anova``), and the recommender's
leave-one-dataset-out regret (``recommend.grid_lodo``). Each prints why it is left out when the
grid is too small for it (one seed, one dataset, fewer than three datasets...).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import seaborn as sns

from analysis import anova
from analysis.seednoise import seed_noise
from analysis.table import (
    grid_factors,
    load_runs,
    resolve_tracking_uri,
    treatment_factors,
    varying_factors,
)
from study.core.paths import SOURCE_ROOT, runs_dir

#: The report notebooks ship inside the package (``analysis/notebooks/``), so they work from a wheel.
NOTEBOOKS_DIR = Path(__file__).resolve().parent / "notebooks"
REPORT_NOTEBOOK = NOTEBOOKS_DIR / "report.ipynb"
#: The report of an external results CSV (``study analyze --csv`` as a notebook).
CSV_REPORT_NOTEBOOK = NOTEBOOKS_DIR / "csv_report.ipynb"

RESULT_COLUMNS = (
    "name", "dataset", "student", "objective", "initialisation", "augmentation", "seed",
    "score", "teacher_score", "score_ratio",
)

# The factors whose contribution the report's ANOVA estimates come from the runs
# (``treatment_factors``): "dataset" enters as a block (each task has its own baseline and
# metric) and "seed" is the replicate, i.e. the residual.


class ReportError(RuntimeError):
    """The report notebook failed to execute; the message names the notebook and the failing cell."""


# ---------------------------------------------------------------------------------------------
# What the notebook shows


def summary(df: pd.DataFrame, grid: str) -> str:
    """One paragraph: how many cells, which datasets, which factors vary, the teachers' scores."""
    teachers = df.groupby("dataset", observed=True)["teacher_score"].mean().dropna()
    teacher_text = ", ".join(f"{d} {s:.4f}" for d, s in teachers.items()) or "not logged"
    varying = grid_factors(df)
    return (
        f"Grid {grid!r}: {len(df)} finished cells on {df['dataset'].nunique()} dataset(s) "
        f"({', '.join(map(str, df['dataset'].cat.categories))}). "
        f"Varying factors: {', '.join(varying) or 'none'}. Teacher dev score: {teacher_text}."
    )


def results_table(df: pd.DataFrame) -> pd.DataFrame:
    """The cells sorted by score (best first) with the columns a reader compares.

    ``score`` and ``teacher_score`` are the dev metric as fractions; ``score_ratio`` is
    student / teacher.
    """
    columns = [c for c in RESULT_COLUMNS if c in df.columns]
    return df.sort_values("score", ascending=False, kind="stable")[columns].reset_index(drop=True)


def side_by_side(df: pd.DataFrame, by: str = "objective") -> pd.DataFrame:
    """Datasets of different metrics side by side: one row per dataset, with ``metric`` (what its
    score is: the task's declared score metric, e.g. ``accuracy``, ``f1``, ``pearson+spearman``;
    "score" when the runs predate that param), ``teacher`` (the teacher's dev score), then per
    level of ``by`` the students' mean dev score (``<level>``) and the score relative to the
    teacher, ``<level> / teacher`` = mean over cells of ``score / teacher_dev_score``.

    Scores are fractions of each dataset's own metric, so compare across rows only through the
    relative columns.
    """
    by = by if by in df.columns else "name"
    rows = []
    for dataset, part in df.groupby("dataset", observed=True, sort=True):
        metric = "score"
        if "score_metric" in part.columns and part["score_metric"].notna().any():
            metric = ", ".join(sorted(set(part["score_metric"].dropna().astype(str))))
        row = {"dataset": str(dataset), "metric": metric, "teacher": part["teacher_score"].mean()}
        for level, cells in part.groupby(by, observed=True, sort=True):
            row[str(level)] = cells["score"].mean()
            row[f"{level} / teacher"] = cells["score_ratio"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def anova_section(df: pd.DataFrame, metric: str = "score") -> tuple[str, pd.DataFrame | None]:
    """The report's type-II ANOVA, or why there is none.

    Factors are the varying treatments (student, objective, initialisation, augmentation); the
    dataset is a block when it varies; seeds are replicates. The objective × initialisation
    interaction is included when both vary and the residual degrees of freedom allow it.

    Returns:
        ``(note, table)``: ``note`` describes the model (or says why it cannot be fitted) and
        ``table`` is :func:`analysis.anova.anova_table`, or None.
    """
    factors = treatment_factors(df)
    blocks = varying_factors(df, ("dataset",))
    if not factors:
        return (
            "No ANOVA: no treatment factor (the grid's factors less dataset and seed) takes more "
            "than one value in this grid.",
            None,
        )
    candidates = []
    pairs = interaction_pairs(factors)
    if pairs:
        candidates.append(pairs)
    candidates.append([])
    reason = ""
    for interactions in candidates:
        try:
            table = anova.anova_table(df, metric, factors, blocks=blocks, interactions=interactions)
        except ValueError as error:
            reason = str(error)
            continue
        terms = [*factors, *(f"{a}:{b}" for a, b in interactions)]
        note = (
            f"Type-II ANOVA of {metric} on {', '.join(terms)}"
            f"{'; block: ' + ', '.join(blocks) if blocks else ''}; seeds are replicates. "
            f"{int(table.loc['Residual', 'df'])} residual degrees of freedom, "
            f"{table.attrs['n_obs']} cells."
        )
        return note, table
    return f"No ANOVA: {reason}", None


def seed_noise_section(df: pd.DataFrame, metric: str = "score") -> tuple[str, pd.DataFrame | None]:
    """Seed noise beside each factor's effect, per dataset (Bouthillier et al. 2021).

    Returns:
        ``(note, table)``: one row per dataset, ``seed_sd`` (the s.d. of one configuration's
        score across seeds, points; ``analysis.seednoise.seed_noise``) and, per varying treatment
        factor, ``<factor> effect``: its largest level mean minus its smallest on that dataset
        (points); ``note`` gives the share of the within-dataset variance the seeds explain. The
        table is None with fewer than 2 seeds.
    """
    noise, share = seed_noise(df, metric)
    if noise.empty:
        return "No seed noise: the grid has fewer than 2 seeds per configuration.", None
    table = noise.set_index("dataset")[["seed_sd"]]
    data = df.assign(dataset=df["dataset"].astype(str))
    for factor in treatment_factors(df):
        means = data.groupby(["dataset", factor], observed=True)[metric].mean().mul(100)
        table[f"{factor} effect"] = means.groupby(level="dataset").agg(lambda m: m.max() - m.min())
    note = ("Seed-to-seed s.d. of one configuration's score per dataset, beside the spread of each factor's "
            "level means (points). An effect not well above the seed s.d. needs more seeds to be told apart "
            "from noise." + ("" if share is None else
                             f" Seeds explain {100 * share:.0f}% of the within-dataset variance of {metric}."))
    return note, table.reset_index()


def slopes_section(df: pd.DataFrame, metric: str = "score") -> tuple[str, pd.DataFrame | None]:
    """Numeric factors (temperatures, alpha, MI-alpha's alpha, ...; the student's parameter count
    when the student varies) read as slopes: metric change per unit, with a 95 % interval, the
    other factors as levels and the dataset as a block (``analysis.anova.slope``).

    Returns:
        ``(note, table)``; ``table`` is None when no factor is numeric.
    """
    factors = treatment_factors(df)
    numeric = anova.numeric_factors(df, factors)
    if "student" in factors and df["student_parameters"].nunique() > 1:
        numeric.append("student_parameters")
    if not numeric:
        return "No numeric factor varies in this grid: nothing to read as a slope.", None
    blocks = varying_factors(df, ("dataset",))
    rows, skipped = [], []
    for factor in numeric:
        controls = [f for f in factors if f != factor and not (factor == "student_parameters" and f == "student")]
        try:
            rows.append(anova.slope(df, metric, factor, controls=controls, blocks=blocks))
        except ValueError as error:
            skipped.append(f"{factor}: {error}")
    note = (f"Slopes of {metric} per unit of each numeric factor (OLS, other factors as levels"
            f"{', dataset as a block' if blocks else ''}; 95 % interval)."
            + (" Left out: " + "; ".join(skipped) if skipped else ""))
    return note, (pd.concat(rows, ignore_index=True) if rows else None)


#: Interactions the seed studies ask about, shown when both factors vary (in this order), then
#: any other pair of the first factors.
PAPER_INTERACTIONS = (
    ("intermediate.loss", "intermediate.mapping"),  # Distiller: intermediate loss x layer mapping
    ("objective", "initialisation"),  # Wang et al. 2023
    ("objective", "schedule"),  # Wang et al. 2023: the task-specific and task-agnostic settings side by side
    ("initialisation", "student"),  # Lu et al. 2022: general-distilled or not x width against depth
    ("augmentation", "training.max_train_examples"),  # Distiller: augmentation x training-set size
    ("prediction.distance", "prediction.student_temperature"),  # Sultan et al. 2024
)


def interaction_pairs(factors: list[str], limit: int = 1) -> list[tuple[str, str]]:
    """Up to ``limit`` two-way interactions among ``factors``: the papers' pairs first."""
    pairs = [p for p in PAPER_INTERACTIONS if set(p) <= set(factors)]
    pairs += [(a, b) for i, a in enumerate(factors) for b in factors[i + 1:]
              if (a, b) not in pairs and (b, a) not in pairs]
    return pairs[:limit]


# How the report prints each column: metrics, and costs, intervals and coefficients in metric
# units, as fractions with 4 digits; ratios, ranks and effect sizes with 3; p-values with 2
# significant digits (so 1e-17 stays readable); counts that a mean row turns into floats as %g.
_METRIC_UNITS = (
    "slope", "score", "teacher_score", "mean_cost", "worst_cost", "mean_regret", "mean", "ci_low",
    "ci_high", "diff", "coef", "std_err", "best", "regret_recommender", "regret_best_recipe",
    "regret_random",
)
_FORMATS = {
    **dict.fromkeys(_METRIC_UNITS, "{:.4f}"),
    "score_ratio": "{:.3f}", "mean_cost_frac": "{:.3f}", "worst_cost_frac": "{:.3f}",
    "mean_rank": "{:.2f}", "mean_pct_rank": "{:.3f}", "within_1pt": "{:.2f}",
    "sum_sq": "{:.3g}", "df": "{:.0f}", "F": "{:.3g}", "z": "{:.3g}",
    "p_value": "{:.2g}", "p_adjusted": "{:.2g}",
    "partial_eta_sq": "{:.3f}", "omega_sq": "{:.3f}",
    "n_blocks": "{:g}", "n_candidates": "{:g}", "recipe_fallbacks": "{:g}",
}


def styled(table: pd.DataFrame | None, hide_index: bool = False):
    """``table`` as a pandas ``Styler`` with the report's number formats, or None for None."""
    if table is None:
        return None
    formats = {c: f for c, f in _FORMATS.items() if c in table.columns}
    style = table.style.format(formats, na_rep="")
    return style.hide(axis="index") if hide_index else style


def plot_by_factors(df: pd.DataFrame, x: str | None = None, hue: str | None = None):
    """Score by one factor (x) and another (hue), one panel per dataset.

    By default ``x`` and ``hue`` are the grid's first pair of treatment factors, the papers'
    pairs first (``interaction_pairs``: intermediate loss × mapping, objective ×
    initialisation, ...); with one factor there is no hue; with none, ``objective`` ×
    ``initialisation``. Points are means over the remaining cells (seeds and other factors), bars
    ± one standard deviation; the dashed line is the teacher's dev score. Scores are the dev
    metric as fractions.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    if x is None:
        factors = treatment_factors(df)
        pairs = interaction_pairs(factors)
        x, hue = pairs[0] if pairs else ((factors[0], None) if factors else ("objective", "initialisation"))
    data = df[df["score"].notna()].copy()
    for column in ("dataset", x, *([hue] if hue else [])):
        data[column] = data[column].astype("category").cat.remove_unused_categories()
    n_datasets = data["dataset"].nunique()
    grid = sns.catplot(
        data=data,
        x=x,
        y="score",
        hue=hue,
        col="dataset",
        col_wrap=min(n_datasets, 3) if n_datasets > 1 else None,
        kind="point",
        # seaborn divides the dodge by (hue levels - 1): a single initialisation must not dodge
        dodge=0.3 if hue and data[hue].nunique() > 1 else False,
        linestyle="none",
        errorbar="sd",
        capsize=0.1,
        sharey=False,
        height=3.5,
        aspect=1.3,
    )
    teacher = data.groupby("dataset", observed=True)["teacher_score"].mean()
    for dataset, ax in grid.axes_dict.items():
        if dataset in teacher.index and pd.notna(teacher[dataset]):
            ax.axhline(teacher[dataset], color="0.4", linestyle="--", linewidth=1)
            ax.annotate(
                "teacher", (1.0, teacher[dataset]), xycoords=("axes fraction", "data"),
                ha="right", va="bottom", fontsize=8, color="0.4",
            )
        ax.tick_params(axis="x", labelrotation=20)
    grid.set_axis_labels(x, "dev score")
    grid.set_titles("{col_name}")
    grid.figure.suptitle(f"Score by {x}{' × ' + hue if hue else ''} (mean ± sd)", y=1.03)
    return grid.figure


# ---------------------------------------------------------------------------------------------
# Executing and exporting


def _uses_this_python(argv: list[str]) -> bool:
    # jupyter_client swaps a bare "python"/"python3"/"python3.X" for sys.executable
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if not argv:
        return False
    if argv[0] in bare:
        return True
    # no resolve(): a venv's python is a symlink to the base interpreter, which every venv shares
    return os.path.abspath(argv[0]) == os.path.abspath(sys.executable)


def ensure_kernel(kernel_name: str | None = None) -> str:
    """A kernel spec name whose kernel runs this interpreter (so it can import ``analysis``).

    ``kernel_name`` is returned as is when given. Otherwise ``python3`` when it resolves to this
    interpreter (the usual case: ipykernel in the same environment); if not (e.g. a user-level
    ``python3`` spec pointing at another Python), a ``kd-study`` spec for ``sys.executable`` is
    installed under ``sys.prefix`` and used.
    """
    if kernel_name:
        return kernel_name
    # Jupyter and papermill only when rendering: the report's kernel imports this module's helpers.
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    for name in ("python3", "kd-study"):
        try:
            spec = manager.get_kernel_spec(name)
        except NoSuchKernel:
            continue
        if _uses_this_python(spec.argv):
            return name
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix, kernel_name="kd-study", display_name=f"kd-study ({sys.executable})")
    return "kd-study"


@contextlib.contextmanager
def _project_importable() -> Iterator[None]:
    """Let the kernel import this very ``analysis`` (a checkout that is not pip-installed, or a
    copy installed elsewhere than the kernel's environment)."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), old) if p)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def render_report(
    notebook: str | Path, parameters: dict, out_html: Path, kernel_name: str | None = None
) -> Path:
    """Execute ``notebook`` with papermill and write it as HTML, without the code cells.

    The executed notebook goes to a temporary ``.ipynb`` next to ``out_html`` and is removed
    once the HTML is written. The kernel runs in the working directory with the folder holding
    this ``analysis`` package on ``PYTHONPATH``; see :func:`ensure_kernel` for which kernel.

    Returns:
        ``out_html``.

    Raises:
        ReportError: a cell raised or the kernel died; the message names the notebook, keeps
            papermill's traceback and the path of the partly executed notebook (kept).
    """
    # Jupyter and papermill only when rendering: the report's kernel imports this module's helpers.
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbconvert import HTMLExporter

    notebook, out_html = Path(notebook), Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    kernel = ensure_kernel(kernel_name)
    handle, executed = tempfile.mkstemp(suffix=".ipynb", prefix=f".{out_html.stem}-", dir=out_html.parent)
    os.close(handle)
    executed = Path(executed)
    try:
        with _project_importable():
            papermill.execute_notebook(
                str(notebook),
                str(executed),
                parameters=parameters,
                kernel_name=kernel,
                cwd=os.getcwd(),
                progress_bar=False,
            )
    except (papermill.PapermillExecutionError, DeadKernelError, CellTimeoutError) as error:
        raise ReportError(
            f"Executing {notebook} with parameters {parameters} failed (kernel {kernel!r}); "
            f"the partly executed notebook is {executed}.\n{error}"
        ) from error

    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    out_html.write_text(body, encoding="utf-8")
    executed.unlink()
    return out_html


def report_grid(grid: str, tracking_uri: str | None = None, out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/<grid>.html`` (default ``runs/reports``, ``study.core.paths.runs_dir``) for a grid.

    Checks first that the grid has finished cells, so that a wrong name fails fast with the
    message of :func:`analysis.table.load_runs` rather than inside the notebook.

    Raises:
        LookupError: no experiment for ``grid``, or none of its cells has finished.
        ReportError: the notebook failed.
    """
    uri = resolve_tracking_uri(tracking_uri)
    df = load_runs(grid, uri)
    if df.empty:
        raise LookupError(
            f"Grid {grid!r} has no finished cells at tracking URI {uri}. "
            f"Run `study run --grid {grid}` first (`study status --grid {grid}` shows progress)."
        )
    if out_dir is None:
        out_dir = runs_dir() / "reports"  # honours STUDY_RUNS_DIR, like the runner
    return render_report(
        REPORT_NOTEBOOK, {"grid": grid, "tracking_uri": uri}, out_dir / f"{grid}.html"
    )
