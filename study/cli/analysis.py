"""The analysis commands of ``study``: ``study analyze`` (ANOVA, cost of sub-optimal choices,
best recipe, figures) and ``study recommend`` (AutoDistiller-style ranking of configurations for
a dataset), on a grid's MLflow runs or on any results CSV.

``study/cli/__init__.py`` calls ``register(app)``. Bad input (an unknown column, a non-numeric metric, a
factor with one level, an unknown grid) prints one line on stderr naming the value and what is
allowed, and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXIT_BAD_INPUT = 2


def _fail(message: object) -> typer.Exit:
    text = " ".join(str(message).split())  # one line, whatever the message holds
    typer.echo(f"error: {text}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _split(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _frame_table(df, title: str, max_rows: int = 40, index: bool = False):
    """A rich Table of a DataFrame: floats to 4 significant digits, p-values in e-notation."""
    import math

    from rich.table import Table

    table = Table(title=title, title_justify="left")
    frame = df.rename_axis(df.index.name or "term").reset_index() if index else df
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "if" else "left")

    def fmt(col, value) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return ""
            if col == "p_value":
                return f"{value:.2e}"
            return f"{value:.4g}"
        return str(value)

    for row in frame.head(max_rows).itertuples(index=False):
        table.add_row(*(fmt(c, v) for c, v in zip(frame.columns, row)))
    if len(frame) > max_rows:
        table.caption = f"{len(frame) - max_rows} more row(s) not shown"
    return table


def _load_grid_table(grid: str, metric: str, factors: list[str], block: Optional[list[str]],
                     tracking_uri: Optional[str]):
    from analysis.analyze import grid_design
    from analysis.table import load_runs

    _check_store(tracking_uri)
    df = load_runs(grid, tracking_uri=tracking_uri)
    if df.empty:
        raise ValueError(f"grid {grid!r} has no finished cell yet: run `study run --grid {grid}`")
    design_factors, design_block = grid_design(df)
    factors = factors or design_factors
    block = design_block if block is None else block
    block = [b for b in block if b not in factors]
    return df, factors, block


def _check_store(tracking_uri: Optional[str]) -> None:
    """Open the store once, so an unusable one is refused in one line within seconds
    (``StudyConfigError``, a ``ValueError``) instead of after MLflow's retries."""
    from study.execution.tracking import Tracker

    Tracker(tracking_uri)


def _constant_within(df, column: str, block: list[str]) -> bool:
    """Whether ``column`` exists and takes one value within each block (a teacher score must,
    for a cost to be a fraction of it)."""
    if column not in df.columns or df[column].isna().all():
        return False
    if not block:
        return bool(df[column].max() - df[column].min() <= 1e-9)
    spread = df.groupby(block, observed=True)[column].agg(lambda s: s.max() - s.min())
    return bool((spread.fillna(0) <= 1e-9).all())


def analyze_command(
    grid: Optional[str] = typer.Option(None, "--grid", "-g", help="Analyse this grid's MLflow runs."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Analyse a results CSV (one row per run)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Score column (higher is better); default `score` with --grid."),
    factors: Optional[str] = typer.Option(None, "--factors", help="Comma-separated factor columns; with --grid default the varying ones among objective, initialisation, augmentation, student."),
    block: Optional[str] = typer.Option(None, "--block", help="Comma-separated columns to compare within; with --grid default dataset,student (minus factors)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write anova.csv, cost.csv, best.csv and PNG figures here."),
    interaction: Optional[list[str]] = typer.Option(None, "--interaction", help="Add a factor interaction A:B to the ANOVA (repeatable)."),
    teacher_col: Optional[str] = typer.Option(None, "--teacher-col", help="Teacher-score column, for costs as a fraction of it; default `teacher_score` when present."),
    min_blocks: Optional[int] = typer.Option(None, "--min-blocks", help="Blocks a configuration must have run in to be the best recipe; default half of them."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store for --grid; default $MLFLOW_TRACKING_URI or runs/mlflow.db."),
) -> None:
    """Which KD choices matter (ANOVA), what a wrong one costs, and the best recipe.

    The Distiller table (auto_distiller_tabular_data.csv) gets its teachers' scores joined.
    """
    import sys

    from rich.console import Console

    # Piped or captured output gets a width that fits the tables instead of rich's 80 columns.
    out = Console(width=None if sys.stdout.isatty() else 160)
    if (grid is None) == (csv is None):
        raise _fail("give exactly one of --grid NAME or --csv FILE")
    try:
        if csv is not None:
            if not metric:
                raise ValueError("--csv needs --metric COL (the score column)")
            if not _split(factors):
                raise ValueError("--csv needs --factors A,B,... (the KD-choice columns)")
            factor_list, block_list = _split(factors), _split(block)
            from analysis.csvtable import load_table

            df = load_table(csv, metric, factor_list, block_list)
            source = str(csv)
        else:
            metric = metric or "score"
            df, factor_list, block_list = _load_grid_table(
                grid, metric, _split(factors), None if block is None else _split(block), tracking_uri
            )
            source = f"grid {grid}"
        if teacher_col is None and _constant_within(df, "teacher_score", block_list):
            teacher_col = "teacher_score"  # costs also as a fraction of the teacher's score

        from analysis.analyze import analyze

        results = analyze(df, metric, factor_list, block_list, out_dir=out_dir,
                          teacher_col=teacher_col, interactions=interaction or (),
                          min_blocks=min_blocks)
    except (ValueError, KeyError, LookupError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise _fail(msg) from None

    out.print(
        f"[bold]{source}[/]: {len(df)} runs; metric {metric}; factors {', '.join(factor_list)}; "
        f"block {', '.join(block_list) or '(none)'}"
    )
    for note in df.attrs.get("load_notes", []):
        out.print(f"note: {note}")
    out.print(_frame_table(results["anova"], "ANOVA (blocks as block terms)", index=True))
    out.print(_frame_table(results["cost"], "Cost of committing to a level (tuned_cost, metric units)"))
    out.print(
        "[dim]tuned cost favours levels run more often (more chances to tune the rest): "
        "read it beside `runs`.[/]"
    )
    if "averaged_cost" in results:
        out.print(_frame_table(results["averaged_cost"], "Cost averaged over the other factors"))
    recipe = ", ".join(f"{f}={lv}" for f, lv in results["recipe"].itertuples(index=False))
    best = results["best"].drop(columns=["mean_rank"], errors="ignore")
    out.print(_frame_table(best, "Configurations ranked across blocks", max_rows=10))
    out.print(f"[bold]best recipe:[/] {recipe}")
    if out_dir is not None:
        out.print(f"written to {out_dir}")


def _parse_context(text: Optional[str]) -> dict[str, str]:
    context = {}
    for item in _split(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--context item {item!r} is not of the form COLUMN=VALUE")
        context[key.strip()] = value.strip()
    return context


def _features_for(df, dataset_col: str, features: Optional[Path], distiller: bool):
    """Dataset features: a given file, the Distiller feature table, or meta-features of the runs."""
    import pandas as pd

    from analysis.dataset_features import dataset_meta_features, distiller_dir, load_distiller_features

    if features is not None:
        if not features.is_file():
            raise FileNotFoundError(f"no such features file: {features}")
        header = pd.read_csv(features, nrows=0, encoding="utf-8-sig")
        if "#example" in header.columns:  # the AutoDistiller layout
            return load_distiller_features(features)
        return pd.read_csv(features, index_col=0, encoding="utf-8-sig")
    if distiller:
        return load_distiller_features(distiller_dir() / "dataset_features_50_concat.csv")
    return dataset_meta_features(df, dataset_col)


def recommend_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="The dataset to recommend for (left out of the fit)."),
    grid: Optional[str] = typer.Option(None, "--grid", "-g", help="Learn from this grid's MLflow runs."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Learn from a results CSV (one row per run)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Target column, higher is better; default `score_ratio` with --grid."),
    factors: Optional[str] = typer.Option(None, "--factors", help="Comma-separated choice columns to recommend; with --grid default the varying ones among objective, initialisation, augmentation."),
    dataset_col: Optional[str] = typer.Option(None, "--dataset-col", help="Column naming the dataset; default `dataset` (`task` for the Distiller table)."),
    context: Optional[str] = typer.Option(None, "--context", help="Given, not recommended: COLUMN=VALUE,... (e.g. Model=TinyBERT4,Teacher=BERT_BASE)."),
    features: Optional[Path] = typer.Option(None, "--features", help="Dataset features CSV indexed by dataset (or in the AutoDistiller layout); default: the Distiller features, or meta-features of the runs."),
    top: int = typer.Option(10, "--top", help="Candidates to show."),
    seed: int = typer.Option(0, "--seed", help="Seed of the recommender's model."),
    model: str = typer.Option("gbr", "--model", help="gbr (gradient boosting) or rf (random forest)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store for --grid."),
) -> None:
    """Rank KD configurations for a dataset with a recommender fit on the other datasets
    (AutoDistiller, He et al. 2021). Where the dataset has runs, shows how the picks did."""
    import sys

    from rich.console import Console

    out = Console(width=None if sys.stdout.isatty() else 160)
    if (grid is None) == (csv is None):
        raise _fail("give exactly one of --grid NAME or --csv FILE")
    try:
        ctx = _parse_context(context)
        if csv is not None:
            from analysis.csvtable import DISTILLER_TABLE, load_table

            if not metric:
                raise ValueError("--csv needs --metric COL (the target column)")
            factor_list = _split(factors)
            if not factor_list:
                raise ValueError("--csv needs --factors A,B,... (the choices to recommend)")
            distiller = csv.name == DISTILLER_TABLE
            dataset_col = dataset_col or ("task" if distiller else "dataset")
            df = load_table(csv, metric, factor_list, [dataset_col, *ctx])
        else:
            from analysis.lodo import GRID_TARGET, grid_choices
            from analysis.table import load_runs

            metric = metric or GRID_TARGET
            dataset_col = dataset_col or "dataset"
            distiller = False
            _check_store(tracking_uri)
            df = load_runs(grid, tracking_uri=tracking_uri)
            if df.empty:
                raise ValueError(f"grid {grid!r} has no finished cell yet")
            factor_list = _split(factors) or grid_choices(df)
            if not factor_list:
                raise ValueError(f"no choice varies in grid {grid!r}: nothing to recommend")
        feats = _features_for(df, dataset_col, features, distiller)

        from analysis.recommend import recommend_for

        ranked = recommend_for(df, metric, factor_list, dataset_col, dataset, feats,
                               context=ctx, seed=seed, model=model)
    except (ValueError, KeyError, LookupError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise _fail(msg) from None

    where = f"grid {grid}" if grid else str(csv)
    given = ", ".join(f"{c}={v}" for c, v in ctx.items()) or "none"
    out.print(f"[bold]{where}[/]: recommending {', '.join(factor_list)} for {dataset!r} "
              f"(target {metric}; given {given}; fit on the other datasets only)")
    out.print(_frame_table(ranked, f"Candidates for {dataset}, best predicted first", max_rows=top))
    pick = ranked.iloc[0]
    out.print("[bold]recommended:[/] " + ", ".join(f"{f}={pick[f]}" for f in factor_list))
    if "actual" in ranked.columns and ranked["actual"].notna().any():
        out.print(f"on {dataset}'s own runs: the pick scored {pick['actual']:.4g} "
                  f"(regret {pick['regret']:.4g}); the best run configuration scored "
                  f"{ranked['actual'].max():.4g}")


def findings_command(
    claims: Optional[Path] = typer.Option(None, help="claims YAML (default: analysis/claims.yaml)"),
    out: Path = typer.Option(Path("docs/findings.md"), help="Markdown file to write"),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow store (default runs/mlflow.db)"),
) -> None:
    """Test every declared claim of the seed studies on the store's grids and write the findings
    (estimate, 95% interval, partial eta squared, verdict) as Markdown."""
    from rich.console import Console

    from analysis import findings as fmod
    from analysis.claims import CLAIMS_FILE, load_claims
    from study.core.errors import StudyConfigError

    _check_store(tracking_uri)
    try:
        claims_list = load_claims(claims or CLAIMS_FILE)
    except StudyConfigError as exc:
        raise _fail(exc)
    from study.grid import available_grids, load_grid

    expected = {}
    for name in {c.grid for c in claims_list} & set(available_grids()):
        try:
            expected[name] = len(load_grid(name).validate())
        except StudyConfigError:
            continue
    results = fmod.evaluate(claims_list, tracking_uri, expected=expected)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "study findings" + (f" --claims {claims}" if claims else "")
    out.write_text(fmod.to_markdown(results, command))
    Console().print(_frame_table(fmod.summary_table(results)[["claim", "estimate", "95% interval", "unit", "units", "MDE", "verdict"]], "Findings"))
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add ``analyze``, ``recommend`` and ``findings`` to the ``study`` typer app."""
    app.command("analyze")(analyze_command)
    app.command("recommend")(recommend_command)
    app.command("findings")(findings_command)
