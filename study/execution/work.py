"""What an executor runs: work units of cells, and the worker that trains them where it runs.

A ``WorkUnit`` is a list of cells that share one ``group_key`` (data, seed, budget shape,
teacher): ``work_units`` makes units of up to ``group_size`` such cells (1: one unit a cell). A
``Worker`` trains a unit in its process: it claims each cell (a local file lock as a fast path on
one machine, then the store's claim, ``study.execution.locks``, which holds across machines), gets the
teacher (``study.execution.teacher_store``), trains the claimed cells together on the same batches and logs
each to its own run (``study.execution.runner.run_group``), and returns one ``CellOutcome`` per cell. Only
plain data crosses process boundaries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from study.execution import locks as claims
from study.grid import Cell, TeacherSpec
from study.core.hashing import stable_hash

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


def group_key(cell: Cell) -> str:
    """What cells must share to train together on the same batches (``study.training.trainer.train_group``):
    dataset, training subsample, augmentation, seed (hence data order and dropout seed), sequence
    length, batch size, epochs, dev subsample, and the teacher with its checkpoint. A hash; the
    cell's id is untouched."""
    tr = cell.training
    return stable_hash({
        "dataset": cell.dataset, "seed": cell.seed, "augmentation": cell.identity["augmentation"],
        "training": {k: tr[k] for k in ("max_train_examples", "data_seed", "max_length", "batch_size", "epochs",
                                        "max_eval_examples")},
        "teacher": cell.teacher.teacher_id, "teacher_checkpoint": cell.teacher.checkpoint,
    })


def work_units(cells: list[Cell], group_size: int = 1) -> list[WorkUnit]:
    """Units of up to ``group_size`` cells that share a ``group_key`` (trained together on the
    same batches), in the grid's order of each unit's first cell; ``group_size`` 1: one unit per
    cell.

    Raises:
        ValueError: ``group_size`` below 1.
    """
    if group_size < 1:
        raise ValueError(f"group size must be at least 1, got {group_size}")
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(group_key(cell), []).append(cell)
    units = [WorkUnit(tuple(g[i:i + group_size])) for g in groups.values() for i in range(0, len(g), group_size)]
    position = {c.cell_id: i for i, c in enumerate(cells)}
    return sorted(units, key=lambda u: position[u.cells[0].cell_id])


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
        from study.tasks.catalogue import TASKS, resolve_data_dir
        from study.execution.datacache import DataCache
        from study.core.paths import runs_dir
        from study.execution.tracking import Tracker
        from study.core.device import select_device

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
        """Train the cells of ``unit`` that are neither done nor held elsewhere, together on the
        same batches (``study.execution.runner.run_group``); one outcome per cell. A cell's failure is
        logged FAILED on its run and reported; the other cells still finish. ``KeyboardInterrupt``
        (Ctrl-C, SIGTERM) ends the claimed cells' runs KILLED and propagates."""
        from study.execution.runner import run_group
        from study.execution.teacher_store import obtain_teacher

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
                key = (unit.teacher.teacher_id, unit.teacher.checkpoint)
                stage = "teacher"
                if key not in self.teachers:
                    self.teachers[key] = obtain_teacher(unit.teacher, self.data, tracker, self.device,
                                                        checkpoint=unit.teacher.checkpoint, log=log)
                teacher, source = self.teachers[key]
                self.teachers[key] = (teacher, "local cache")  # loaded in this process from now on
                for i, *_ in held:
                    outs[i].teacher_score = teacher.dev_score
                stage = "cell"
                t0 = time.perf_counter()
                scores = run_group([unit.cells[i] for i, *_ in held], teacher, self.data, tracker, self.device,
                                   self.ctx.grid_version, [run_id for _, _, run_id, _ in held], source,
                                   [lookup for *_, lookup in held])
            except BaseException as exc:  # the runs end FAILED (KILLED when interrupted) unless they have
                for i, _, run_id, _ in held:
                    if tracker.client.get_run(run_id).info.status == "RUNNING":
                        if stage == "teacher" and isinstance(exc, Exception):  # so `study status` counts it failed
                            tracker.client.set_tag(run_id, "study.failed_stage", "teacher")
                        tracker.fail(run_id, exc)
                    if isinstance(exc, Exception):
                        outs[i].state, outs[i].error = "failed", f"{type(exc).__name__}: {exc}"
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

    def run_cell(self, cell: Cell, log=print) -> CellOutcome:
        """``run`` on a unit of one cell."""
        return self.run(WorkUnit((cell,)), log)[0]

    def _claim(self, cell: Cell, out: CellOutcome, log) -> tuple[FileLock, str, Callable] | None:
        """Claim ``cell`` (the local file lock, then the store's claim): (the held lock, the
        claimed RUNNING run's id, a lookup of the cell's runs), or None with ``out`` saying why
        (busy, skipped when done, failed when the store refused)."""
        from study.execution.runner import cell_tags

        lock = FileLock(str(self.locks / f"{cell.cell_id}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            out.note = "another worker on this machine has it"
            return None
        tracker = self.tracker

        def lookup() -> list:
            return tracker.cell_runs(cell.cell_id).get(cell.cell_id, [])

        try:
            got = claims.claim(tracker, cell.grid, cell.name, cell_tags(cell, self.ctx.grid_version), lookup,
                               timeout_s=tracker.claim_timeout_s)
            if got.state == "done":
                tracker.adopt(self.ctx.grid, [cell], {cell.cell_id: lookup()}, self.ctx.grid_version)
                out.state = "skipped"
            elif got.state == "busy":
                out.note = f"held by {got.holder}"
            else:
                for why in got.reaped:
                    log(f"{cell.name}: an earlier run ended without finishing ({why}); retraining it")
                return lock, got.run_id, lookup
        except Exception as exc:  # one cell's failure never stops the grid
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

