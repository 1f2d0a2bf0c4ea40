"""Run a grid: validate everything, plan the pending cells, and hand them to an executor.

Resumability: a cell is done when the store holds a FINISHED run with its ``study.cell_id``, in
any grid's experiment (the paper grids overlap: a cell one grid trained is tagged as a member of
the next grid that contains it, not retrained); done cells are skipped. Where the pending cells
run is the executor's business (``study.execution.executors``: ``serial`` in this process, ``ray`` on a
cluster); how a worker claims, trains and logs one is ``study.execution.work``. A cell is claimed by its
MLflow run (``study.execution.locks``), which holds across machines, with a file lock
(``runs/locks/<cell_id>.lock``) as a fast path on one; a RUNNING run whose process died (e.g.
SIGKILL) is marked KILLED and the cell retrained. A cell that raises is logged FAILED with its
error, and the grid goes on; so is a cell whose teacher could not be prepared. A fault of the
environment (``study.core.faults``: a full disk, a read-only store, a lost data folder, a tracking
server that stopped answering) stops the grid at once with ``EnvironmentFault``, the cells in
progress ended KILLED (pending, retrained by the next run). An interruption
(Ctrl-C, or SIGTERM under ``study.execution.interrupt.signals_as_interrupt``) ends the cell's run KILLED
and stops the grid; the next run retrains that cell.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from study.core import contract
from study.core.device import select_device
from study.core.errors import StudyConfigError
from study.corpora import packed_corpus
from study.execution import forecast as fc
from study.execution import locks
from study.execution.datacache import DataCache
from study.execution.executors import Executor, make_executor
from study.execution.stages import pending_stages, reap_stage_runs
from study.execution.students import remove_stale
from study.execution.teacher import load_tokenizer, teacher_dir
from study.execution.tracking import STAGE_EXPERIMENT, TEACHER_EXPERIMENT, Tracker, set_server_patience
from study.execution.units import work_units
from study.execution.work import CellOutcome, RunContext, check_precisions, data_dir_arg
from study.grid import Cell, Grid
from study.grid.schema import KEEP_STUDENT
from study.tasks.catalogue import TASKS, resolve_data_dir


@dataclass
class RunSummary:
    """What one ``study run`` did."""

    grid: str
    total: int
    finished: list[tuple[Cell, float]] = field(default_factory=list)
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    skipped: int = 0
    busy: int = 0
    wall_time_s: float = 0.0
    tracking_uri: str = ""
    teachers: dict[str, float] = field(default_factory=dict)


def plan(grid: Grid, tracker: Tracker, retry_failed: bool = True, adopt: bool = True,
         cells: list[Cell] | None = None) -> tuple[list[Cell], list[Cell], dict[str, str]]:
    """Split the grid's cells into (pending, done) by what the store holds (in any grid).

    With ``adopt``, finished cells that another grid trained are tagged as this grid's members
    (a dry run passes False and writes nothing).
    """
    cells = grid.validate() if cells is None else cells  # ``cells``: already validated
    if adopt:
        # cells another grid (or an earlier version of this one) trained are this grid's too:
        # tag them with its current version, never retrain them
        tracker.set_grid_version(grid.name, grid.version, grid.description, grid.source)
        tracker.adopt(grid.name, cells, tracker.cell_runs(), grid.version)
    status = tracker.cell_status(grid.name)
    done = [c for c in cells if status.get(c.cell_id) == "done"]
    pending = [c for c in cells if status.get(c.cell_id) != "done"
               and (retry_failed or status.get(c.cell_id) != "failed")]
    return pending, done, status


def run_grid(grid: Grid, data_dir: str | Path | None = None, device: str = "auto",
             tracking_uri: str | None = None, retry_failed: bool = True,
             console: Console | None = None, executor: Executor | None = None,
             claim_timeout_s: float = locks.DEFAULT_CLAIM_TIMEOUT_S, group_size: int = 1,
             keep_student: str | None = None, system_metrics: bool = False,
             checkpoint_every_min: float | None = None, checkpoint_dir: str | Path | None = None) -> RunSummary:
    """Train every pending cell of ``grid`` with ``executor`` (default ``serial``); see the
    module docstring for the guarantees. ``claim_timeout_s``: seconds without a heartbeat after
    which another machine's RUNNING run of a cell counts as dead; ``group_size``: cells that
    share their batches (``study.execution.units.group_key``) train together, up to this many at once;
    ``keep_student``: ``all`` keeps every trained student as an artifact of its run, ``none`` none
    (default: the grid's ``keep_student``); ``system_metrics``: log MLflow's system metrics (CPU,
    memory, GPU) to every cell run; ``checkpoint_every_min``: minutes between checkpoints inside a
    group (``study.execution.checkpoints``; None: 5 on CPU, 10 on a GPU; 0: none), written under
    ``checkpoint_dir`` (default ``runs/checkpoints``; with workers on several machines, a shared path).

    Raises:
        StudyConfigError: a bad grid, data directory, device, precision the device cannot run
            (``training.precision``/``teacher.precision``), executor setting, claim timeout,
            group size or checkpoint interval, before any training.
    """
    console = console or Console(stderr=True)
    start = time.perf_counter()
    executor = executor or make_executor("serial")
    keep_student = _check_options(grid, claim_timeout_s, group_size, keep_student, checkpoint_every_min)
    dev = select_device(device)
    cells = grid.validate()  # a cell the teacher's architecture refuses fails here, before the store is opened
    check_precisions(cells, dev)  # so does a precision this device cannot run, before any teacher
    data = DataCache(resolve_data_dir(data_dir))
    for dataset in grid.axes["dataset"]:
        data.raw(dataset)  # a missing or malformed data set fails here, before anything is logged
    tracker = Tracker(tracking_uri, claim_timeout_s=claim_timeout_s)
    tracker.require_writable()
    set_server_patience(tracker.uri)  # a server that dies mid-grid stops it in ~45 s, not minutes
    remove_stale()  # students' staging folders that a killed process left
    reap_dead_runs(tracker, grid.name, log=console.print)
    ctx = RunContext(grid=grid.name, grid_version=grid.version, tracking_uri=tracker.uri,
                     data_dir=data_dir_arg(data_dir), device=device, claim_timeout_s=claim_timeout_s,
                     tasks={c.dataset: TASKS[c.dataset] for c in cells}, keep_student=keep_student,
                     system_metrics=system_metrics,
                     checkpoint_every_s=None if checkpoint_every_min is None else 60.0 * checkpoint_every_min,
                     checkpoint_dir=data_dir_arg(checkpoint_dir))
    executor.check(ctx, tracker.shared)
    pending, done, status = plan(grid, tracker, retry_failed, cells=cells)
    summary = RunSummary(grid=grid.name, total=len(done) + len(pending), skipped=len(done),
                         tracking_uri=tracker.uri)
    console.print(f"[bold]grid {grid.name}[/]: {summary.total} cells, {len(done)} already done, "
                  f"{len(pending)} to train on {dev.type} ({executor.name} executor); store {tracker.uri}"
                  + ("; students kept" if keep_student == "all" else ""))
    if not pending:
        console.print("Nothing to train: every cell is already finished.")
        summary.wall_time_s = time.perf_counter() - start
        return summary
    if torch.cuda.is_available() and dev.type == "cpu":
        console.print("[yellow]note[/]: a GPU is present but --device cpu was given")

    by_id = {c.cell_id: c for c in pending}
    with tqdm(total=len(pending), desc=f"grid {grid.name}", unit="cell") as bar:
        def report(outcome: CellOutcome) -> None:
            cell = by_id[outcome.cell_id]
            if outcome.state == "finished":
                summary.finished.append((cell, outcome.score))
                tqdm.write(f"{cell.name}: dev score {outcome.score:.4f}")
            elif outcome.state == "failed":
                summary.failed.append((cell, outcome.error))
                tqdm.write(f"{cell.name}: FAILED: {outcome.error}")
            elif outcome.state == "skipped":
                summary.skipped += 1  # finished by another worker since we planned
            else:
                summary.busy += 1  # another worker is training it right now
            if outcome.teacher_score is not None:
                summary.teachers[outcome.dataset] = outcome.teacher_score
            bar.update(1)
            bar.set_postfix_str(cell.name)

        executor.run(work_units(pending, group_size), ctx, report, log=tqdm.write)
    summary.wall_time_s = time.perf_counter() - start
    return summary


def _check_options(grid: Grid, claim_timeout_s: float, group_size: int, keep_student: str | None,
                   checkpoint_every_min: float | None) -> str:
    """Check ``study run``'s options; return the ``keep_student`` in force (the grid's by default).

    Raises:
        StudyConfigError: the first option out of range, naming it and what is allowed."""
    locks.check_claim_timeout(claim_timeout_s)
    if group_size < 1:
        raise StudyConfigError(f"--group-size must be at least 1, got {group_size}")
    if checkpoint_every_min is not None and not checkpoint_every_min >= 0:
        raise StudyConfigError(f"--checkpoint-every must be minutes >= 0 (0: no checkpoints), got {checkpoint_every_min}")
    keep_student = grid.keep_student if keep_student is None else keep_student
    if keep_student not in KEEP_STUDENT:
        raise StudyConfigError(f"--keep-student must be one of {', '.join(KEEP_STUDENT)}, got {keep_student!r}")
    return keep_student


def print_summary(summary: RunSummary, tracker_uri: str, console: Console) -> None:
    """The one-screen end-of-run summary."""
    table = Table(title=f"grid {summary.grid}: {summary.wall_time_s:.0f} s", show_header=False)
    table.add_row("cells in grid", str(summary.total))
    table.add_row("finished now", str(len(summary.finished)))
    table.add_row("failed", str(len(summary.failed)))
    table.add_row("skipped (already done)", str(summary.skipped))
    if summary.busy:
        table.add_row("skipped (another worker has it)", str(summary.busy))
    for dataset, score in summary.teachers.items():
        table.add_row(f"teacher dev score ({dataset})", f"{score:.4f}")
    if summary.finished:
        best, score = max(summary.finished, key=lambda x: x[1])
        table.add_row("best cell this run", f"{best.name}  ({score:.4f})")
    table.add_row("MLflow store", tracker_uri)
    table.add_row("next", f"study status --grid {summary.grid} | study ui | study report --grid {summary.grid}")
    console.print(table)
    for cell, err in summary.failed:
        console.print(f"[red]failed[/] {cell.name}: {err}")


def dry_run(grid: Grid, tracker: Tracker, data_dir: str | Path | None, device: str, retry_failed: bool,
            console: Console, group_size: int = 1) -> None:
    """What ``study run --dry-run`` prints: every cell, its state and the group it would train
    in (``study.execution.units.work_units`` with ``group_size``), the teachers still to fine-tune, and a
    forecast of the wall time on this device (``study.execution.forecast``: cell by cell, less the teacher
    passes that grouped students share). Writes nothing.

    Raises:
        StudyConfigError: a bad grid or data directory.
    """
    pending, done, status = plan(grid, tracker, retry_failed, adopt=False)
    dev = select_device(device).type
    units = work_units(pending, group_size)
    group = {c.cell_id: f"{n}/{len(units)} ({len(u.cells)} cells)" for n, u in enumerate(units, 1) for c in u.cells}
    table = Table(title=f"grid {grid.name}: {len(pending)} pending, {len(done)} done (dry run)")
    for col in ("cell", "id", "state", "group"):
        table.add_column(col)
    for cell in grid.cells():
        table.add_row(cell.name, cell.cell_id, status.get(cell.cell_id, "pending"), group.get(cell.cell_id, ""))
    console.print(table)
    if pending:
        console.print(f"{len(pending)} pending cells train in {len(units)} groups of at most {group_size} "
                      "(cells that share data, seed, budget shape and teacher; one teacher pass per batch)")
    stages = pending_stages(pending)
    if stages:
        st = Table(title=f"{len(stages)} stages to train first (each once, shared by the cells that start from it)")
        for col in ("stage", "id", "kind", "starts from"):
            st.add_column(col)
        for stage in stages:
            start = stage.start.stage_id if stage.chain[:-1] else stage.start
            st.add_row(stage.name, stage.stage_id, stage.kind, start)
        console.print(st)
    teachers = {c.teacher.teacher_id: c.teacher for c in pending}
    to_fit = [t for tid, t in teachers.items() if not (teacher_dir(t) / "teacher.json").exists()]
    try:  # the forecast needs the training sets' sizes; the listing above does not
        data = DataCache(resolve_data_dir(data_dir))
        sizes = {d: len(data.raw(d)["train"]) for d in grid.axes["dataset"]}
    except StudyConfigError as exc:
        console.print(f"teachers to fine-tune: {len(to_fit)}; no forecast: the data cannot be read ({exc})")
        return
    teacher_runs = [r for runs in tracker.runs(TEACHER_EXPERIMENT, contract.KIND_TEACHER,
                                               contract.TAG_TEACHER_ID).values() for r in runs]
    cell_runs = tracker.cell_runs()
    keys = {(c.dataset, c.training["max_length"], c.teacher.settings["model"]) for c in pending}
    keys |= {(t.dataset, t.settings["max_length"], t.settings["model"]) for t in to_fit}
    for run in [r for rs in cell_runs.values() for r in rs] + teacher_runs:  # the store's, to calibrate
        p = run.data.params
        if run.info.status == "FINISHED" and {contract.PARAM_DATASET, "max_length", contract.PARAM_TEACHER} <= set(p):
            keys.add((p[contract.PARAM_DATASET], int(p["max_length"]), p[contract.PARAM_TEACHER]))
    tokens = fc.example_tokens(keys, data)
    shipped = fc.shipped_calibration()
    calibration = fc.merged(fc.store_calibration(cell_runs, teacher_runs, tokens, shipped), shipped)
    try:
        f = fc.forecast(pending, to_fit, sizes, calibration, dev, groups=units, tokens=tokens)
    except LookupError as exc:
        console.print(f"teachers to fine-tune: {len(to_fit)}; no forecast: {exc}")
        return
    if stages:
        try:
            f.stage_seconds, how = fc.stage_seconds(stages, _train_blocks(stages, data), sizes, calibration, dev,
                                                    _stage_rates(tracker), tokens)
            f.basis.update(how)
        except (LookupError, StudyConfigError, KeyError) as exc:
            console.print(f"stages: no forecast ({exc})")
        console.print(f"stages to train: {len(stages)} ({sum(f.stage_seconds.values()) / 60:.1f} min)")
    console.print(f"teachers to fine-tune: {len(to_fit)} ({sum(f.teacher_seconds.values()) / 60:.1f} min); "
                  f"cells to train: {len(pending)} ({sum(f.cell_seconds.values()) / 60:.1f} min"
                  + (f", less {f.group_saving_s / 60:.1f} min of teacher passes shared in groups)"
                     if f.group_saving_s else ")"))
    console.print(f"forecast on {dev}: {f.total_s / 60:.1f} min in all "
                  f"(rates: {f.source}; {', '.join(f'{k}: {v}' for k, v in sorted(f.basis.items()))})")


def _train_blocks(stages: list, data: DataCache) -> dict[str, int]:
    """Per general stage, the packed blocks its corpus gives for training (the dev blocks out)."""
    out: dict[str, int] = {}
    for stage in stages:
        if stage.kind == "general":
            tr = stage.training
            packed = packed_corpus(stage.data, data.data_dir, load_tokenizer(stage.teacher), tr["max_length"])
            n = packed.input_ids.shape[0]
            out[stage.stage_id] = n - -(-n // tr["dev_every"])
    return out


def _stage_rates(tracker: Tracker) -> dict[tuple[str, int], float]:
    """Seconds per packed block of this store's finished general stages, by (student, max_length)."""
    rates: dict[tuple[str, int], list[float]] = {}
    for runs in tracker.runs(STAGE_EXPERIMENT, contract.KIND_STAGE, contract.TAG_STAGE_ID).values():
        for run in runs:
            p, m = run.data.params, run.data.metrics
            rate = m.get(contract.METRIC_EXAMPLES_PER_S)
            if run.info.status == "FINISHED" and p.get("kind") == "general" and rate:
                rates.setdefault((p["student"], int(p["max_length"])), []).append(1.0 / rate)
    return {k: min(v) for k, v in rates.items()}


def reap_dead_runs(tracker: Tracker, grid: str, log: Callable[[str], None] | None = None) -> int:
    """Mark KILLED the RUNNING runs a dead process left (``Tracker.kill_orphans``): every stage run,
    whichever grid needs it (``study.execution.stages.reap_stage_runs``), and every cell run of
    ``grid``'s experiment, including cells an edit of the grid dropped (no claim would reap those).
    A live holder's runs are left alone. Says how many to ``log``, when any; returns how many."""
    cells = [r for runs in tracker.runs(grid, contract.KIND_CELL, contract.TAG_CELL_ID).values()
             for r in runs if r.info.status == "RUNNING"]
    n = reap_stage_runs(tracker) + (tracker.kill_orphans(cells) if cells else 0)
    if n and log is not None:
        log(f"{n} earlier run(s) ended without finishing (their holders are dead: a pid gone from this "
            "machine, or no heartbeat within the claim timeout): marked KILLED; their cells are retrained")
    return n
