"""``study plan``: how many seeds and datasets a contrast needs, from the pilot runs in the store.

``study plan --claim ID [--effect X] [--power 0.8]`` (a ``contrast`` claim of
``analysis/claims.yaml``) or ``study plan --grid G --contrast [FACTOR=]A:B``: reads the grid's runs
as a pilot, estimates the seed and dataset variance of the contrast, simulates the claim tests'
verdict rule at more seeds and at more datasets (``analysis.planning``; Card et al. 2020), prints
the resized grid as YAML (``--out`` writes it) and the ``study run --dry-run`` forecast of it.
With no pilot runs in the store it says so in one line and exits 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

EXIT_BAD_INPUT = 2


def _fail(message: object) -> typer.Exit:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _target(claim: Optional[str], grid: Optional[str], contrast: Optional[str], effect: Optional[float],
            claims_file: Optional[Path] = None):
    """(grid, the Claim or None, factor or None, a, b, effect) from --claim (in ``claims_file``,
    default analysis/claims.yaml) or --grid/--contrast."""
    if (claim is None) == (grid is None):
        raise ValueError("give --claim ID, or --grid NAME with --contrast [FACTOR=]A:B")
    if claim is not None:
        from analysis.claims import claim_params, load_claims
        from analysis.planning import PLANNABLE

        found = {c.id: c for c in (load_claims(claims_file) if claims_file else load_claims())}
        if claim not in found:
            raise ValueError(f"no claim {claim!r}; claims: {', '.join(found)}")
        c = found[claim]
        if c.test not in PLANNABLE:
            raise ValueError(f"claim {claim!r} is a {c.test} test; study plan sizes {', '.join(PLANNABLE)} "
                             f"claims (use --grid {c.grid} --contrast FACTOR=A:B for one of its contrasts)")
        return c.grid, c, None, "", "", effect if effect is not None else claim_params(c).paper_effect
    if not contrast or ":" not in contrast:
        raise ValueError("--grid needs --contrast [FACTOR=]A:B (two levels of one factor)")
    factor, _, levels = contrast.rpartition("=")
    a, _, b = levels.partition(":")
    return grid, None, factor or None, a, b, effect


def _resized(grid_name: str, n_seeds: int, n_datasets: int,
             tracking_uri: Optional[str] = None) -> tuple[dict, list[str]]:
    """The grid's YAML mapping with ``n_seeds`` seeds; notes on datasets it would need to add. A
    grid that is not shipped is read from the YAML the store recorded for it (``study run --grid
    FILE`` records it).

    Raises:
        StudyConfigError: neither a shipped grid nor one whose YAML the store knows and can read.
    """
    import yaml

    from study.core.errors import StudyConfigError
    from study.execution.tracking import Tracker
    from study.grid import available_grids, load_grid

    source = None
    if grid_name not in available_grids():
        source = (Tracker(tracking_uri).grid_source(grid_name) or (None, None))[0]
        if source is None or not Path(source).is_file():
            raise StudyConfigError(f"grid {grid_name!r} is not shipped and the store has no readable YAML for it "
                                   f"(recorded: {source!r}); run `study run --grid FILE` on it first")
    g = load_grid(source or grid_name)
    spec = yaml.safe_load(Path(g.source).read_text())
    seeds = [int(s) for s in spec["axes"].get("seed", [0])]
    spec["axes"]["seed"] = sorted(set(seeds) | set(range(max(seeds) + 1, max(seeds) + 1 + n_seeds)))[:n_seeds]
    # the name stays: the resized grid's runs join the pilot's (same cells, same experiment), and
    # `study findings` reads them under the claim's grid
    spec["description"] = f"{spec.get('description', '').strip()} Resized by `study plan`: {n_seeds} seeds."
    have = list(spec["axes"].get("dataset", []))
    notes = [f"add {n_datasets - len(have)} dataset(s) to axes.dataset"] if n_datasets > len(have) else []
    return spec, notes


def _forecast(path: Path, tracking_uri: Optional[str]) -> None:
    """``study run --dry-run``'s listing and forecast of the grid at ``path``."""
    from rich.console import Console

    from study.execution.runner import dry_run
    from study.execution.tracking import Tracker
    from study.grid import load_grid

    g = load_grid(path)
    typer.echo(f"forecast of {g.name} ({len(g.cells())} cells), as `study run --grid {path} --dry-run`:")
    dry_run(g, Tracker(tracking_uri), None, "cpu", True, Console(width=160), group_size=g.group_size)


def plan_command(
    claim: Optional[str] = typer.Option(None, "--claim", help="A contrast claim of analysis/claims.yaml (or of --claims)."),
    claims_file: Optional[Path] = typer.Option(None, "--claims", help="Claims YAML (default: analysis/claims.yaml), as study findings takes."),
    grid: Optional[str] = typer.Option(None, "--grid", "-g", help="The pilot grid (with --contrast)."),
    contrast: Optional[str] = typer.Option(None, "--contrast", help="[FACTOR=]A:B: level A minus level B."),
    effect: Optional[float] = typer.Option(None, "--effect", help="Effect to detect, points; default the claim's paper_effect, else the pilot's estimate."),
    power: float = typer.Option(0.8, "--power", min=0.05, max=0.99, help="Power wanted at alpha 0.05."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the resized grid YAML here."),
    forecast: bool = typer.Option(True, "--forecast/--no-forecast", help="Print the dry-run forecast of the resized grid."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store holding the pilot runs."),
) -> None:
    """Size a grid for one contrast by simulation from the pilot variance in the store
    (Card et al. 2020): seeds and datasets needed for the wanted power at alpha 0.05."""
    import numpy as np
    import yaml

    from analysis.planning import claim_units, contrast_units, factor_of, plan_contrast
    from analysis.table import load_runs

    try:
        grid_name, the_claim, factor, a, b, target = _target(claim, grid, contrast, effect, claims_file)
        from study.cli.analysis import _check_store

        _check_store(tracking_uri)
        try:
            df = load_runs(grid_name, tracking_uri=tracking_uri)
        except LookupError:
            df = None
        if df is None or df.empty:
            raise _fail(f"no pilot runs of grid {grid_name} in this store: run `study run --grid {grid_name}` "
                        f"(two seeds are enough) and plan again")
        if the_claim is not None:
            units, label = claim_units(df, the_claim), f"claim {the_claim.id} ({the_claim.test})"
        else:
            factor = factor or factor_of(df, a, b)
            units, label = contrast_units(df, factor, a, b), f"{factor}={a} − {factor}={b}"
        plan = plan_contrast(units, target, np.random.default_rng(0), power)
    except (ValueError, KeyError) as exc:
        raise _fail(exc) from None
    _print_plan(plan, grid_name, label, power)
    pick = plan.seeds if plan.seeds is not None else plan.datasets
    if pick is None:
        typer.echo("no design within 20 seeds or 20 datasets reaches that power: the effect is too small "
                   "for this contrast's noise")
        return
    try:
        spec, notes = _resized(grid_name, int(pick["n_seeds"]), int(pick["n_datasets"]), tracking_uri)
    except ValueError as exc:
        raise _fail(exc) from None
    text = yaml.safe_dump(spec, sort_keys=False)
    typer.echo(f"\nresized grid{' (' + '; '.join(notes) + ')' if notes else ''}:\n{text}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        typer.echo(f"wrote {out}")
    if forecast and not notes:
        path = out
        if path is None:
            import tempfile

            path = Path(tempfile.mkdtemp(prefix="study-plan-")) / f"{spec['name']}-planned.yaml"
            path.write_text(text)
        try:
            _forecast(path, tracking_uri)
        except Exception as exc:  # noqa: BLE001 - the plan stands without a forecast
            typer.echo(f"no forecast: {' '.join(str(exc).split())}")


def _pilot_width(units) -> str:
    from analysis.smallsample import t_interval

    low, high = t_interval(units["value"].to_numpy(dtype=float))
    return f"{high - low:.2f} points" if math.isfinite(high - low) else "not defined"


def _print_plan(plan, grid: str, label: str, power: float) -> None:
    from analysis.power import expected_width

    c = plan.components
    typer.echo(f"pilot: grid {grid}, {label}: {plan.units['value'].mean():+.2f} points over "
               f"{len(plan.units)} units ({int(c['n_datasets'])} datasets × {c['n_seeds']:g} seeds); seed s.d. "
               f"{c['seed_sd']:.2f}, dataset s.d. {c['dataset_sd']:.2f}, unit s.d. {c['unit_sd']:.2f} points; "
               f"its 95% interval is {_pilot_width(plan.units)} wide")
    mde = "∞ (too few units for a verdict)" if math.isinf(plan.pilot_mde) else f"{plan.pilot_mde:.2f} points"
    typer.echo(f"the pilot design detects {mde} with {power:.0%} power; planning for {plan.effect:.2f} points "
               f"({plan.effect_source})")
    for route, row in (("seeds", plan.seeds), ("datasets", plan.datasets)):
        trail = plan.table[plan.table["route"] == route]
        steps = ", ".join(f"{r.n_datasets}×{r.n_seeds}: {r.power:.2f}" for r in trail.itertuples())
        got = "not within 20" if row is None else f"{int(row['n_datasets'])} datasets × {int(row['n_seeds'])} seeds"
        if row is not None:
            width = expected_width(c, int(row["n_datasets"]), int(row["n_seeds"]))
            got += f", expected 95% interval width about {width:.2f} points"
        typer.echo(f"more {route}: {got} (simulated power, datasets×seeds: {steps})")
