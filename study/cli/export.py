"""``study export``: a cell's student as a folder ``from_pretrained`` loads, with its model card.

``study/cli/__init__.py`` calls ``register(app)``. A bad id, a grid with no finished cell or a
bad combination of options prints one line on stderr and exits with code 2; a retrained student
whose dev score fails its check is written, and the command exits with code 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

EXIT_BAD_INPUT = 2


def _fail(message: object) -> typer.Exit:
    typer.echo("error: " + " ".join(str(message).split()), err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def export_command(
    cell: Optional[str] = typer.Option(None, "--cell", help="The cell id (study status --grid G --cells lists them)."),
    grid: Optional[str] = typer.Option(None, "--grid", "-g", help="With --best: the grid whose best cell to export; with --cell: the grid file to retrain it from (default: the shipped grid that trained it)."),
    best: bool = typer.Option(False, "--best", help="Export the grid's finished cell with the highest dev score."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="With --best: the best cell on this dataset."),
    out_dir: Path = typer.Option(..., "--out", help="A new or empty folder to write the student into."),
    register: Optional[str] = typer.Option(None, "--register", help="Also register it in the MLflow Model Registry under this name (tagged with the cell id)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="For a retraining: the data folder; default $STUDY_DATA_DIR, else the hub."),
    device: str = typer.Option("auto", help="For a retraining: auto, cpu or cuda."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store; default $MLFLOW_TRACKING_URI or runs/mlflow.db."),
) -> None:
    """Write a cell's student (kept, else retrained and checked) to a folder AutoModelFor<task> loads."""
    from study.cli import _quiet_libraries
    from study.core.errors import StudyConfigError

    if (cell is None) == (not best):
        raise _fail("give --cell ID, or --grid G --best [--dataset D] (not both).")
    if best and grid is None:
        raise _fail("--best needs --grid G.")
    if dataset is not None and not best:
        raise _fail("--dataset goes with --grid G --best.")
    _quiet_libraries()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per outcome, no bars
    # imported here, not at the top: `study --help` must not import torch or mlflow
    from study.execution.export import export_student
    from study.execution.tracking import Tracker
    from study.grid import load_grid

    try:
        g = load_grid(grid) if grid is not None else None
        tracker = Tracker(tracking_uri)
        done = export_student(out_dir, tracker, cell_id=cell, grid=g, dataset=dataset, data_dir=data_dir,
                              device=device, register=register, log=lambda m: typer.echo(m, err=True))
    except (StudyConfigError, ValueError) as exc:
        raise _fail(exc) from None
    typer.echo(f"exported cell {done.cell_id} ({done.name}) to {done.folder}: dev score "
               f"{done.dev_metrics['score']:.4f}")
    typer.echo(("retrained: " if done.retrained else "") + done.check)
    typer.echo(f"load it with {done.auto_class}.from_pretrained({str(done.folder)!r}); model card: "
               f"{done.folder / 'README.md'}")
    if done.registered:
        typer.echo(f"registered in the MLflow Model Registry as {done.registered}")
    elif register:
        typer.echo("not registered: the retrained student failed its check", err=True)
    if not done.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``export`` to the ``study`` typer app."""
    app.command("export")(export_command)
