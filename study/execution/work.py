"""The worker: where an executor runs, it claims, trains and logs the cells of work units.

A ``Worker`` trains a unit (``study.execution.units``) in its process: it claims each cell (a
local file lock as a fast path on one machine, then the store's claim, ``study.execution.locks``,
which holds across machines), gets the teacher (``study.execution.teacher_store``), trains the
claimed cells together on the same batches and logs each to its own run
(``study.execution.cell.run_group``), and returns one ``CellOutcome`` per cell. Only plain data
(``RunContext``, ``CellOutcome``) crosses process boundaries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from study.core import contract
from study.core.device import check_precision, select_device
from study.core.errors import EnvironmentFault
from study.core.faults import environment_fault, server_stopped
from study.core.paths import runs_dir
from study.execution import locks
from study.execution.cell import cell_tags, run_group
from study.execution.checkpoints import CheckpointStore, checkpoints_dir, default_every_s
from study.execution.datacache import DataCache
from study.execution.stages import StageRunner
from study.execution.teacher import Teacher
from study.execution.teacher_store import obtain_teacher
from study.execution.tracking import Tracker
from study.execution.units import WorkUnit
from study.grid import Cell, TeacherSpec
from study.tasks.catalogue import TASKS, resolve_data_dir

#: What a cell's attempt came to: trained now, failed (logged FAILED), already done (skipped),
#: or held by a live worker elsewhere (busy).
STATES = ("finished", "failed", "skipped", "busy")


@dataclass(frozen=True)
class RunContext:
    """Everything a worker needs besides its unit, as plain values (sent to other machines):
    the grid's name and version, the tracking URI, the data folder (None: the worker's
    ``STUDY_DATA_DIR`` or the hub), the device, the claim timeout in seconds, the task specs
    of the grid's datasets, which students to keep (a task YAML outside the package is registered where it runs)."""

    grid: str
    grid_version: str
    tracking_uri: str
    data_dir: str | None
    device: str
    claim_timeout_s: float = locks.DEFAULT_CLAIM_TIMEOUT_S
    #: ``study run --system-metrics``: MLflow's system metrics on every cell run
    system_metrics: bool = False
    tasks: dict = field(default_factory=dict, hash=False, compare=False)
    #: ``keep_student``: ``all`` saves every trained student as an artifact of its run
    keep_student: str = "none"
    #: seconds between checkpoints inside a group (``study.execution.checkpoints``); None: the
    #: device's default (5 min on CPU, 10 on a GPU); 0: none
    checkpoint_every_s: float | None = None
    #: where checkpoints go (a path every worker shares); None: ``runs/checkpoints`` where it runs
    checkpoint_dir: str | None = None
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


def check_precisions(cells: list[Cell], device: torch.device) -> None:
    """Refuse, before any training, a cell whose ``training.precision`` or ``teacher.precision``
    ``device`` cannot run (fp16 on a CPU; bf16 on a CPU without native bf16).

    Raises:
        StudyConfigError: the first such cell and setting, naming the device and what it supports.
    """
    seen: set[tuple[str, str]] = set()
    for cell in cells:
        for what, precision in (("training.precision", cell.training.get("precision", "fp32")),
                                ("teacher.precision", cell.teacher.precision)):
            if (what, precision) not in seen:
                seen.add((what, precision))
                check_precision(device, precision, f"cell {cell.name}: {what}")


class Worker:
    """Trains units in this process, keeping teachers loaded across units."""

    def __init__(self, ctx: RunContext):
        for name, spec in ctx.tasks.items():
            TASKS.setdefault(name, spec)
        self.ctx = ctx
        self.device = select_device(ctx.device)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.data = DataCache(resolve_data_dir(ctx.data_dir))
        self.tracker = Tracker(ctx.tracking_uri, claim_timeout_s=ctx.claim_timeout_s)
        self.teachers: dict[tuple[str, str], tuple[Teacher, str]] = {}
        self.lock_dir = runs_dir() / "locks"
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = Path(ctx.checkpoint_dir) if ctx.checkpoint_dir else checkpoints_dir()
        self.checkpoint_every_s = (default_every_s(self.device.type) if ctx.checkpoint_every_s is None
                                   else ctx.checkpoint_every_s)

    def run(self, unit: WorkUnit, log=print) -> list[CellOutcome]:
        """Train the cells of ``unit`` that are neither done nor held elsewhere, together on the
        same batches (``study.execution.cell.run_group``), resuming from their checkpoints
        (``study.execution.checkpoints``) where they have them; one outcome per cell. A cell's failure is
        logged FAILED on its run and reported; the other cells still finish. ``KeyboardInterrupt``
        (Ctrl-C, SIGTERM) ends the claimed cells' runs KILLED and propagates."""
        outs = [CellOutcome(cell.cell_id, cell.name, "busy", dataset=cell.dataset) for cell in unit.cells]
        held: list[tuple[int, FileLock, str, Callable]] = []  # (position, lock, claimed run, lookup)
        tracker = self.tracker
        try:
            stage = "claim"
            try:
                for i, cell in enumerate(unit.cells):
                    got = self._claim(cell, outs[i], log)
                    if got is not None:
                        held.append((i, *got))
                if not held:
                    return outs
                stage = "teacher"
                check_precisions(list(unit.cells), self.device)  # this machine's device may differ
                teacher, source = self._teacher(unit.teacher, log)
                for i, *_ in held:
                    outs[i].teacher_score = teacher.dev_score
                stage = "stages"
                t0 = time.perf_counter()
                cells = [unit.cells[i] for i, *_ in held]
                starts = StageRunner(self.data, tracker, self.device, lambda spec: self._teacher(spec, log)[0],
                                     log).ensure(cells)
                stage = "cell"
                scores = run_group(cells, teacher, self.data, tracker, self.device,
                                   self.ctx.grid_version, [run_id for _, _, run_id, _ in held], source,
                                   [lookup for *_, lookup in held], self.ctx.keep_student == "all",
                                   system_metrics=self.ctx.system_metrics, starts=starts,
                                   checkpoints=CheckpointStore(self.checkpoint_dir, log),
                                   checkpoint_every_s=self.checkpoint_every_s)
            except BaseException as exc:
                fault = environment_fault(exc, tracker.uri) if isinstance(exc, Exception) else None
                self._end_held(held, outs, fault or exc, stage)
                if fault is not None:  # a full disk, a dead server: the grid stops, cells pending
                    raise fault from exc
                if isinstance(exc, Exception):  # one unit's failure never stops the grid
                    return outs
                raise
            note = f"{time.perf_counter() - t0:.0f} s" + (f" (a group of {len(held)})" if len(held) > 1 else "")
            for (i, *_), score in zip(held, scores):
                if isinstance(score, Exception):
                    outs[i].state, outs[i].error = "failed", f"{type(score).__name__}: {score}"
                else:
                    outs[i].state, outs[i].score, outs[i].note = "finished", score, note
        finally:
            for _, lock, _, _ in held:
                lock.release()
        return outs

    def _teacher(self, spec: TeacherSpec, log) -> tuple[Teacher, str]:
        """The teacher of ``spec`` and where it came from (``teacher_store.SOURCES``); loaded
        once per process and checkpoint, then kept."""
        key = (spec.teacher_id, spec.checkpoint)
        if key not in self.teachers:
            self.teachers[key] = obtain_teacher(spec, self.data, self.tracker, self.device,
                                                checkpoint=spec.checkpoint, log=log)
        teacher, source = self.teachers[key]
        self.teachers[key] = (teacher, "local cache")  # loaded in this process from now on
        return teacher, source

    def _end_held(self, held: list, outs: list[CellOutcome], exc: BaseException, stage: str) -> None:
        """End the held cells' runs FAILED (KILLED when interrupted) unless they have ended; an
        ``Exception`` makes their outcomes failed."""
        tracker = self.tracker
        for i, _, run_id, _ in held:
            if server_stopped(exc):  # asking it again costs a timeout a run; the next run reaps them
                if isinstance(exc, Exception):
                    outs[i].state, outs[i].error = "failed", f"{type(exc).__name__}: {exc}"
                continue
            try:
                with tracker.quickly():
                    running = tracker.client.get_run(run_id).info.status == "RUNNING"
                if running:
                    if stage == "teacher" and isinstance(exc, Exception) and not isinstance(exc, EnvironmentFault):
                        tracker.client.set_tag(run_id, contract.TAG_FAILED_STAGE, "teacher")  # counted failed
                    tracker.fail(run_id, exc)
            except Exception:
                if isinstance(exc, Exception) and not isinstance(exc, EnvironmentFault):
                    raise
                # interrupted, or the store is away: never hide that; `study run` reaps the run
            if isinstance(exc, Exception):
                outs[i].state, outs[i].error = "failed", f"{type(exc).__name__}: {exc}"

    def _claim(self, cell: Cell, out: CellOutcome, log) -> tuple[FileLock, str, Callable] | None:
        """Claim ``cell`` (the local file lock, then the store's claim): (the held lock, the
        claimed RUNNING run's id, a lookup of the cell's runs), or None with ``out`` saying why
        (busy, skipped when done, failed when the store refused)."""
        lock = FileLock(str(self.lock_dir / f"{cell.cell_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            out.note = "another worker on this machine has it"
            return None
        tracker = self.tracker

        def lookup() -> list:
            return tracker.cell_runs(cell.cell_id).get(cell.cell_id, [])

        try:
            got = locks.claim(tracker, cell.grid, cell.name, cell_tags(cell, self.ctx.grid_version), lookup,
                               timeout_s=tracker.claim_timeout_s)
            if got.state == "done":
                tracker.adopt(self.ctx.grid, [cell], {cell.cell_id: lookup()}, self.ctx.grid_version)
                out.state = "skipped"
            elif got.state == "busy":
                out.note = f"held by {got.holder}"
            else:
                try:
                    for why in got.reaped:
                        log(f"{cell.name}: an earlier run ended without finishing ({why}); retraining it")
                except BaseException as exc:  # interrupted between the claim and its holder: end the run
                    tracker.fail(got.run_id, exc)
                    raise
                return lock, got.run_id, lookup
        except Exception as exc:  # one cell's failure never stops the grid; the environment's does
            if (fault := environment_fault(exc, tracker.uri)) is not None:
                lock.release()
                raise fault from exc
            out.state = "failed"
            out.error = f"{type(exc).__name__}: {exc}"
        except BaseException:
            lock.release()
            raise
        lock.release()
        return None


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

