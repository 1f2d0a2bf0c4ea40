"""What an executor runs: work units of cells, and the worker that trains them where it runs.

A ``WorkUnit`` is a list of cells that share one teacher; today ``work_units`` makes one unit a
cell, and a later unit may be every cell of one teacher pass without touching the executors. A
``Worker`` trains a unit's cells in its process: it claims each cell (a local file lock as a fast
path on one machine, then the store's claim, ``study.claims``, which holds across machines),
gets the teacher (``study.teacher_store``), trains and logs the cell (``study.runner.run_cell``),
and returns one ``CellOutcome`` per cell. Only plain data crosses process boundaries.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from study import claims
from study.grid import Cell, TeacherSpec

#: What a cell's attempt came to: trained now, failed (logged FAILED), already done (skipped),
#: or held by a live worker elsewhere (busy).
STATES = ("finished", "failed", "skipped", "busy")


@dataclass(frozen=True)
class WorkUnit:
    """Cells that one executor task trains, in order; they share ``teacher``."""

    cells: tuple[Cell, ...]

    @property
    def teacher(self) -> TeacherSpec:
        return self.cells[0].teacher

    @property
    def name(self) -> str:
        return self.cells[0].name if len(self.cells) == 1 else f"{self.cells[0].name} (+{len(self.cells) - 1})"


def work_units(cells: list[Cell]) -> list[WorkUnit]:
    """One unit per cell, in the grid's order."""
    return [WorkUnit((cell,)) for cell in cells]


@dataclass(frozen=True)
class RunContext:
    """Everything a worker needs besides its unit, as plain values (sent to other machines):
    the grid's name and version, the tracking URI, the data folder (None: the worker's
    ``STUDY_DATA_DIR`` or the hub), the device, the claim timeout in seconds, and the task specs
    of the grid's datasets (a task YAML outside the package is registered where it runs)."""

    grid: str
    grid_version: str
    tracking_uri: str
    data_dir: str | None
    device: str
    claim_timeout_s: float = claims.DEFAULT_CLAIM_TIMEOUT_S
    tasks: dict = field(default_factory=dict, hash=False, compare=False)
    #: one per ``study run``: a worker process keeps its teachers for one run only
    run_token: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class CellOutcome:
    """One cell's result as a worker reports it: ``state`` one of ``STATES``; ``score`` the dev
    score (a fraction) when finished; ``error`` one line when failed; ``teacher_score`` the
    teacher's dev score when it was loaded."""

    cell_id: str
    name: str
    state: str
    score: float | None = None
    error: str = ""
    teacher_score: float | None = None
    dataset: str = ""
    note: str = ""


class Worker:
    """Trains units in this process, keeping teachers loaded across units."""

    def __init__(self, ctx: RunContext):
        from study.data import TASKS, resolve_data_dir
        from study.datacache import DataCache
        from study.paths import runs_dir
        from study.tracking import Tracker
        from study.trainer import select_device

        for name, spec in ctx.tasks.items():
            TASKS.setdefault(name, spec)
        self.ctx = ctx
        self.device = select_device(ctx.device)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.data = DataCache(resolve_data_dir(ctx.data_dir))
        self.tracker = Tracker(ctx.tracking_uri, claim_timeout_s=ctx.claim_timeout_s)
        self.teachers: dict[tuple[str, str], tuple[object, str]] = {}
        self.locks = runs_dir() / "locks"
        self.locks.mkdir(parents=True, exist_ok=True)

    def run(self, unit: WorkUnit, log=print) -> list[CellOutcome]:
        """Train each cell of ``unit`` unless done or held elsewhere; one outcome per cell. A
        cell's failure is logged FAILED on its run and reported; the next cell still runs.
        ``KeyboardInterrupt`` (Ctrl-C, SIGTERM) ends the cell's run KILLED and propagates."""
        return [self.run_cell(cell, log) for cell in unit.cells]

    def run_cell(self, cell: Cell, log=print) -> CellOutcome:
        from study.runner import cell_tags, run_cell
        from study.teacher_store import obtain_teacher

        out = CellOutcome(cell.cell_id, cell.name, "busy", dataset=cell.dataset)
        lock = FileLock(str(self.locks / f"{cell.cell_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            out.note = "another worker on this machine has it"
            return out
        tracker = self.tracker

        def lookup() -> list:
            return tracker.cell_runs(cell.cell_id).get(cell.cell_id, [])

        try:
            got = claims.claim(tracker, cell.grid, cell.name, cell_tags(cell, self.ctx.grid_version), lookup,
                               timeout_s=tracker.claim_timeout_s)
            if got.state == "done":
                tracker.adopt(self.ctx.grid, [cell], {cell.cell_id: lookup()}, self.ctx.grid_version)
                out.state = "skipped"
                return out
            if got.state == "busy":
                out.note = f"held by {got.holder}"
                return out
            run_id = got.run_id
            key = (cell.teacher.teacher_id, cell.teacher.checkpoint)
            stage = "teacher"
            try:
                for why in got.reaped:
                    log(f"{cell.name}: an earlier run ended without finishing ({why}); retraining it")
                if key not in self.teachers:
                    self.teachers[key] = obtain_teacher(cell.teacher, self.data, tracker, self.device,
                                                        checkpoint=cell.teacher.checkpoint, log=log)
                teacher, source = self.teachers[key]
                self.teachers[key] = (teacher, "local cache")  # loaded in this process from now on
                out.teacher_score = teacher.dev_score
                stage = "cell"
                t0 = time.perf_counter()
                out.score = run_cell(cell, teacher, self.data, tracker, self.device, self.ctx.grid_version,
                                     run_id=run_id, teacher_source=source, lookup=lookup)
            except BaseException as exc:  # the run ends FAILED (KILLED when interrupted) unless it has
                if tracker.client.get_run(run_id).info.status == "RUNNING":
                    if stage == "teacher" and isinstance(exc, Exception):  # so `study status` counts it failed
                        tracker.client.set_tag(run_id, "study.failed_stage", "teacher")
                    tracker.fail(run_id, exc)
                raise
            out.state = "finished"
            out.note = f"{time.perf_counter() - t0:.0f} s"
        except Exception as exc:  # one cell's failure never stops the grid
            out.state = "failed"
            out.error = f"{type(exc).__name__}: {exc}"
        finally:
            lock.release()
        return out


_WORKERS: dict[RunContext, Worker] = {}


def worker_for(ctx: RunContext) -> Worker:
    """This process's ``Worker`` for ``ctx`` (a Ray worker process runs many tasks of one
    ``study run``: teachers stay loaded between them, never into the next run)."""
    if ctx not in _WORKERS:
        _WORKERS.clear()
        _WORKERS[ctx] = Worker(ctx)
    return _WORKERS[ctx]


def data_dir_arg(data_dir: str | Path | None) -> str | None:
    """The data folder as workers receive it: an absolute path, or None."""
    return None if data_dir is None else str(Path(data_dir).resolve())

