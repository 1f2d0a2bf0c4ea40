"""Run a grid: validate everything, plan the pending cells, and hand them to an executor.

Resumability: a cell is done when the store holds a FINISHED run with its ``study.cell_id``, in
any grid's experiment (the paper grids overlap: a cell one grid trained is tagged as a member of
the next grid that contains it, not retrained); done cells are skipped. Where the pending cells
run is the executor's business (``study.execution.executors``: ``serial`` in this process, ``ray`` on a
cluster); how a worker claims, trains and logs one is ``study.execution.work``. A cell is claimed by its
MLflow run (``study.execution.locks``), which holds across machines, with a file lock
(``runs/locks/<cell_id>.lock``) as a fast path on one; a RUNNING run whose process died (e.g.
SIGKILL) is marked KILLED and the cell retrained. A cell that raises is logged FAILED with its
error, and the grid goes on; so is a cell whose teacher could not be prepared. An interruption
(Ctrl-C, or SIGTERM under ``study.execution.interrupt.signals_as_interrupt``) ends the cell's run KILLED
and stops the grid; the next run retrains that cell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from study.core import contract
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from study.execution import locks as claims
from study.tasks.catalogue import TASKS, resolve_data_dir
from study.execution.datacache import DataCache
from study.grid import Cell, Grid
from study.models import StudentSize, build_student
from study.objectives import ModelDims
from study.execution.executors.base import Executor
from study.tasks.types import get_type
from study.execution.teacher import Teacher
from study.core.errors import StudyConfigError
from study.execution.tracking import Tracker, environment_tags
from study.training.trainer import Student, TrainResult, train_group
from study.tasktypes.sequence_classification import TokenizedSplit
from study.core.device import select_device
from study.core.hashing import derive_seed
from study.execution.work import CellOutcome, RunContext, data_dir_arg, group_key, work_units


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


def cell_tags(cell: Cell, grid_version: str | None = None) -> dict[str, str]:
    """The contract's tags of a cell run: kind, id, grid, membership (name, factor values and the
    grid's version), teacher."""
    return {contract.TAG_KIND: contract.KIND_CELL, contract.TAG_CELL_ID: cell.cell_id,
            contract.TAG_GRID: cell.grid,
            contract.membership_tag(cell.grid): contract.encode_membership(cell.name, cell.factors, grid_version),
            contract.TAG_TEACHER_ID: cell.teacher.teacher_id}


def run_cell(cell: Cell, teacher: Teacher, data: DataCache, tracker: Tracker, device: torch.device,
             grid_version: str | None = None, run_id: str | None = None, teacher_source: str | None = None,
             lookup=None) -> float:
    """Train one cell's student against ``teacher`` and log it; return its dev score (a fraction).

    ``run_id``: the cell's claimed RUNNING run (``study.execution.locks``), else a new run is started;
    ``lookup``: returns the cell's runs, to end this one as a duplicate if another finished first
    (``claims.finish``). The MLflow run is FINISHED only after every metric is logged; any
    exception marks it FAILED (with the error) and is re-raised.
    """
    out = run_group([cell], teacher, data, tracker, device, grid_version, [run_id], teacher_source,
                    None if lookup is None else [lookup])[0]
    if isinstance(out, BaseException):
        raise out
    return out


@dataclass
class PreparedCell:
    """A cell ready to train: its run, the trainer's ``Student`` and its data."""

    cell: Cell
    run_id: str
    student: Student
    train_ds: TokenizedSplit
    dev_ds: TokenizedSplit
    dev_labels: list
    needs_teacher: bool  # the teacher model is handed to the trainer (features, mix-up)


def open_cell_run(cell: Cell, teacher: Teacher, tracker: Tracker, device: torch.device,
                  grid_version: str | None = None, run_id: str | None = None,
                  teacher_source: str | None = None) -> str:
    """Tag (and give params to) the cell's claimed run ``run_id``, or start one; return its id."""
    tags = {**cell_tags(cell, grid_version), contract.TAG_TEACHER_RUN_ID: teacher.run_id,
            # which EDA operations this machine offers (synonyms need WordNet), as in the cell id
            "study.augmentation_version": cell.identity["augmentation"]["version"],
            **environment_tags(device.type)}
    if teacher_source is not None:
        tags[contract.TAG_TEACHER_SOURCE] = teacher_source
    params = {**cell.params(), contract.PARAM_SCORE_METRIC: "+".join(TASKS[cell.dataset].score)}
    if run_id is None:
        return tracker.start(cell.grid, cell.name, tags, params)
    tracker.annotate(run_id, tags, params)
    return run_id


def prepare_cell(cell: Cell, teacher: Teacher, data: DataCache, tracker: Tracker, device: torch.device,
                 run_id: str) -> PreparedCell:
    """Build the cell's student (seeded by its ``init`` stream), data and objective (its
    ``objective_init`` stream), and the teacher's cached logits where the objective reads only them."""
    task = TASKS[cell.dataset]
    tr = cell.training
    size = StudentSize.parse(cell.student)
    torch.manual_seed(derive_seed(cell.seed, "init"))
    # Attention-like features come from Q/K/V hooks, so both models keep the fast sdpa kernel.
    ttype = get_type(task.task_type)
    student = build_student(teacher.model, size, cell.initialisation, ttype.num_labels(task), "sdpa",
                            auto_class=ttype.auto_class)
    train_ds = data.tokenized(cell.dataset, "train", teacher.tokenizer, tr["max_length"],
                              max_examples=tr["max_train_examples"], data_seed=tr["data_seed"],
                              augmentation=cell.augmentation_steps, augmentation_seed=cell.seed)
    dev_ds, dev_labels = data.tokenized_dev(cell.dataset, teacher.tokenizer, tr["max_length"],
                                            tr["max_eval_examples"])
    torch.manual_seed(derive_seed(cell.seed, "objective_init"))  # learned projections, critics
    objective = cell.build_objective(task.task_type, ModelDims.of(student.config),
                                     ModelDims.of(teacher.model.config), train_size=len(train_ds))
    cached = None
    if objective.needs_teacher and not objective.needs_teacher_forward:
        # Logit-only objectives read the frozen teacher's logits from a per-split cache.
        cached = data.teacher_logits(f"{cell.teacher.teacher_id}:{cell.teacher.checkpoint}", teacher.model, train_ds,
                                     teacher.tokenizer, device)
    spec = Student(student, objective, tr, cell.seed, log_metrics=lambda pts: tracker.log_metrics(run_id, pts),
                   desc=cell.name, cached_teacher_logits=cached, mixup=cell.mixup)
    return PreparedCell(cell, run_id, spec, train_ds, dev_ds, dev_labels,
                        needs_teacher=bool(objective.needs_teacher or cell.mixup))


def finish_cell(prep: PreparedCell, result: TrainResult, teacher: Teacher, tracker: Tracker,
                lookup=None) -> float:
    """Log the cell's costs and end its run FINISHED (``claims.finish`` with ``lookup``); return
    its dev score (a fraction)."""
    n_params = sum(p.numel() for p in prep.student.model.parameters())
    tracker.log_metrics(prep.run_id, [
        ("teacher_dev_score", teacher.dev_score, 0),
        ("wall_time_s", result.wall_time_s, 0),
        ("train_time_s", result.train_time_s, 0),
        ("train_examples_per_s", result.train_examples_per_s, 0),
        ("peak_memory_mb", result.peak_memory_mb, 0),
        ("train_examples", len(prep.train_ds), 0),
        ("student_parameters", n_params, 0),
        ("group_size", result.group_size, 0),
        ("cpu_time_s", result.cpu_time_s, 0),
        ("cpu_threads", result.cpu_threads, 0),
    ])
    if lookup is None:
        tracker.finish(prep.run_id)
    else:
        claims.finish(tracker, prep.run_id, lookup)
    return result.dev_metrics["score"]


def run_group(cells: list[Cell], teacher: Teacher, data: DataCache, tracker: Tracker, device: torch.device,
              grid_version: str | None = None, run_ids: list[str | None] | None = None,
              teacher_source: str | None = None, lookups: list | None = None) -> list[float | Exception]:
    """Train cells that share a ``group_key`` together (``study.training.trainer.train_group``), each
    logged to its own run as ``run_cell`` logs one; per cell, its dev score (a fraction) or the
    exception that ended its run FAILED (the others go on). ``run_ids``/``lookups``: per cell, as
    ``run_cell``'s. An interruption ends every open run KILLED and propagates.

    Raises:
        ValueError: the cells do not share a ``group_key``.
    """
    if len({group_key(c) for c in cells}) > 1:
        raise ValueError("cells of a group must share data, seed, budget shape and teacher (study.execution.work.group_key)")
    run_ids = list(run_ids or [None] * len(cells))
    lookups = list(lookups or [None] * len(cells))
    outcomes: list[float | Exception | None] = [None] * len(cells)
    prepared: dict[int, PreparedCell] = {}
    opened: dict[int, str] = {}  # runs not yet ended

    def fail(i: int, exc: BaseException) -> None:
        tracker.fail(opened.pop(i), exc)
        if isinstance(exc, Exception):
            outcomes[i] = exc

    try:
        for i, cell in enumerate(cells):
            try:
                opened[i] = open_cell_run(cell, teacher, tracker, device, grid_version, run_ids[i], teacher_source)
            except Exception as exc:  # the store refused this cell's run
                if run_ids[i] is not None:
                    opened[i] = run_ids[i]
                    fail(i, exc)
                else:
                    outcomes[i] = exc
                continue
            try:
                prepared[i] = prepare_cell(cell, teacher, data, tracker, device, opened[i])
            except Exception as exc:
                fail(i, exc)
        if prepared:
            first = next(iter(prepared.values()))
            with_teacher = any(p.needs_teacher for p in prepared.values())
            results = train_group([p.student for p in prepared.values()], first.train_ds, first.dev_ds,
                                  first.dev_labels, TASKS[first.cell.dataset], teacher.tokenizer, device,
                                  teacher=teacher.model if with_teacher else None)
            for (i, prep), result in zip(prepared.items(), results):
                try:
                    if isinstance(result, Exception):
                        raise result
                    outcomes[i] = finish_cell(prep, result, teacher, tracker, lookups[i])
                    opened.pop(i)
                except Exception as exc:
                    fail(i, exc)
        teacher.model.cpu()
    except BaseException as exc:
        for i in list(opened):
            fail(i, exc)
        raise
    return outcomes


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
        tracker.set_grid_version(grid.name, grid.version)
        tracker.adopt(grid.name, cells, tracker.cell_runs(), grid.version)
    status = tracker.cell_status(grid.name)
    done = [c for c in cells if status.get(c.cell_id) == "done"]
    pending = [c for c in cells if status.get(c.cell_id) != "done"
               and (retry_failed or status.get(c.cell_id) != "failed")]
    return pending, done, status


def run_grid(grid: Grid, data_dir: str | Path | None = None, device: str = "auto",
             tracking_uri: str | None = None, retry_failed: bool = True,
             console: Console | None = None, executor: Executor | None = None,
             claim_timeout_s: float = claims.DEFAULT_CLAIM_TIMEOUT_S, group_size: int = 1) -> RunSummary:
    """Train every pending cell of ``grid`` with ``executor`` (default ``serial``); see the
    module docstring for the guarantees. ``claim_timeout_s``: seconds without a heartbeat after
    which another machine's RUNNING run of a cell counts as dead; ``group_size``: cells that
    share their batches (``study.execution.work.group_key``) train together, up to this many at once.

    Raises:
        StudyConfigError: a bad grid, data directory, device, executor setting, claim timeout or
            group size, before any training.
    """
    from study.execution.executors import make_executor

    console = console or Console(stderr=True)
    start = time.perf_counter()
    executor = executor or make_executor("serial")
    claims.check_claim_timeout(claim_timeout_s)
    if group_size < 1:
        raise StudyConfigError(f"--group-size must be at least 1, got {group_size}")
    dev = select_device(device)
    cells = grid.validate()  # a cell the teacher's architecture refuses fails here, before the store is opened
    data = DataCache(resolve_data_dir(data_dir))
    for dataset in grid.axes["dataset"]:
        data.raw(dataset)  # a missing or malformed data set fails here, before anything is logged
    tracker = Tracker(tracking_uri, claim_timeout_s=claim_timeout_s)
    tracker.require_writable()
    ctx = RunContext(grid=grid.name, grid_version=grid.version, tracking_uri=tracker.uri,
                     data_dir=data_dir_arg(data_dir), device=device, claim_timeout_s=claim_timeout_s,
                     tasks={c.dataset: TASKS[c.dataset] for c in cells})
    executor.check(ctx, tracker.shared)
    pending, done, status = plan(grid, tracker, retry_failed, cells=cells)
    summary = RunSummary(grid=grid.name, total=len(done) + len(pending), skipped=len(done),
                         tracking_uri=tracker.uri)
    console.print(f"[bold]grid {grid.name}[/]: {summary.total} cells, {len(done)} already done, "
                  f"{len(pending)} to train on {dev.type} ({executor.name} executor); store {tracker.uri}")
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
    in (``study.execution.work.work_units`` with ``group_size``), the teachers still to fine-tune, and a
    forecast of the wall time on this device (``study.execution.forecast``: cell by cell, less the teacher
    passes that grouped students share). Writes nothing.

    Raises:
        StudyConfigError: a bad grid or data directory.
    """
    from study.execution import forecast as fc
    from study.execution.teacher import teacher_dir

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
    teachers = {c.teacher.teacher_id: c.teacher for c in pending}
    to_fit = [t for tid, t in teachers.items() if not (teacher_dir(t) / "teacher.json").exists()]
    try:  # the forecast needs the training sets' sizes; the listing above does not
        data = DataCache(resolve_data_dir(data_dir))
        sizes = {d: len(data.raw(d)["train"]) for d in grid.axes["dataset"]}
    except StudyConfigError as exc:
        console.print(f"teachers to fine-tune: {len(to_fit)}; no forecast: the data cannot be read ({exc})")
        return
    teacher_runs = [r for runs in tracker.runs("teachers", "teacher", "study.teacher_id").values() for r in runs]
    cell_runs = tracker.cell_runs()
    keys = {(c.dataset, c.training["max_length"], c.teacher.settings["model"]) for c in pending}
    keys |= {(t.dataset, t.settings["max_length"], t.settings["model"]) for t in to_fit}
    for run in [r for rs in cell_runs.values() for r in rs] + teacher_runs:  # the store's, to calibrate
        p = run.data.params
        if run.info.status == "FINISHED" and {"dataset", "max_length", "teacher"} <= set(p):
            keys.add((p["dataset"], int(p["max_length"]), p["teacher"]))
    tokens = fc.example_tokens(keys, data)
    shipped = fc.shipped_calibration()
    calibration = fc.merged(fc.store_calibration(cell_runs, teacher_runs, tokens, shipped), shipped)
    try:
        f = fc.forecast(pending, to_fit, sizes, calibration, dev, groups=units, tokens=tokens)
    except LookupError as exc:
        console.print(f"teachers to fine-tune: {len(to_fit)}; no forecast: {exc}")
        return
    console.print(f"teachers to fine-tune: {len(to_fit)} ({sum(f.teacher_seconds.values()) / 60:.1f} min); "
                  f"cells to train: {len(pending)} ({sum(f.cell_seconds.values()) / 60:.1f} min"
                  + (f", less {f.group_saving_s / 60:.1f} min of teacher passes shared in groups)"
                     if f.group_saving_s else ")"))
    console.print(f"forecast on {dev}: {f.total_s / 60:.1f} min in all "
                  f"(rates: {f.source}; {', '.join(f'{k}: {v}' for k, v in sorted(f.basis.items()))})")
