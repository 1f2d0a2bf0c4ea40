"""Train one cell, or a group of cells that share their batches, each logged to its own run.

A cell's run is tagged with the contract's names and given its params (``open_cell_run``), its
student, data and objective are built from the cell's seed streams (``prepare_cell``), the group
trains together on the same batches (``study.training.trainer.train_group``), and each run ends
FINISHED with its costs (``finish_cell``), or FAILED with its error while the others go on
(``run_group``). Cells with a checkpoint resume from it and every cell in training writes one now
and then (``study.execution.checkpoints``). Claiming the runs is the worker's business (``study.execution.work``); this
module trains what it is handed.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from study.core import contract
from study.core.faults import environment_fault
from study.core.hashing import derive_seed
from study.execution import interrupt, locks
from study.execution.checkpoints import CheckpointStore, GroupCheckpointer, resume_plan
from study.execution.datacache import DataCache
from study.execution.students import keep_student
from study.execution.teacher import Teacher
from study.execution.tracking import Tracker, environment_tags
from study.execution.units import group_key
from study.grid import Cell
from study.grid.cell import label
from study.models import StudentSize, build_student, load_pretrained_classifier
from study.objectives import ModelDims
from study.tasks.catalogue import TASKS
from study.tasks.types import get_type
from study.tasktypes.sequence import TokenizedSplit
from study.training.state import Position
from study.training.trainer import Student, TrainResult, train_group


def cell_tags(cell: Cell, grid_version: str | None = None) -> dict[str, str]:
    """The contract's tags of a cell run: kind, id, grid, membership (name, factor values and the
    grid's version), teacher."""
    return {contract.TAG_KIND: contract.KIND_CELL, contract.TAG_CELL_ID: cell.cell_id,
            contract.TAG_GRID: cell.grid,
            contract.membership_tag(cell.grid): contract.encode_membership(cell.name, cell.factors, grid_version),
            contract.TAG_TEACHER_ID: cell.teacher.teacher_id}


def recipe(cell: Cell) -> str:
    """The cell's recipe in one line: the run's description in MLflow's UI."""
    tr = cell.training
    prediction = ", ".join(f"{k}={v}" for k, v in cell.prediction.items())
    extra = f"; intermediate {label(cell.intermediate)}" if cell.intermediate else ""
    mixup = f", mix-up {label(cell.mixup)}" if cell.mixup else ""
    return (f"{cell.student} student of {cell.teacher.model} ({cell.initialisation} initialisation) on "
            f"{cell.dataset}: objective {cell.objective} ({prediction}{extra}), augmentation "
            f"{cell.augmentation}{mixup}; {tr.get('epochs')} epoch(s), learning rate {tr.get('learning_rate')}, "
            f"batch {tr.get('batch_size')}, {tr.get('max_train_examples') or 'all'} training examples, "
            f"seed {cell.seed}")


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
            contract.TAG_AUGMENTATION_VERSION: cell.identity["augmentation"]["version"],
            contract.TAG_MLFLOW_NOTE: recipe(cell),
            **environment_tags(device.type, f"study run --grid {cell.grid}")}
    if teacher_source is not None:
        tags[contract.TAG_TEACHER_SOURCE] = teacher_source
    task = TASKS[cell.dataset]
    # what the task is, so that the analysis (which imports no task catalogue) can describe it
    params = {**cell.params(), contract.PARAM_SCORE_METRIC: "+".join(task.score),
              contract.PARAM_N_LABELS: str(get_type(task.task_type).num_labels(task)),
              contract.PARAM_TASK_TYPE: task.task_type}
    if run_id is None:
        return tracker.start(cell.grid, cell.name, tags, params)
    tracker.annotate(run_id, tags, params)
    return run_id


def prepare_cell(cell: Cell, teacher: Teacher, data: DataCache, tracker: Tracker, device: torch.device,
                 run_id: str, start: Path | None = None) -> PreparedCell:
    """Build the cell's student (seeded by its ``init`` stream), data and objective (its
    ``objective_init`` stream), and the teacher's cached logits where the objective reads only them.
    ``start``: the folder of the cell's last stage (``study.execution.stages``), whose student the
    cell continues (a task head is added where the stage had none)."""
    task = TASKS[cell.dataset]
    tr = cell.training
    size = StudentSize.parse(cell.student)
    torch.manual_seed(derive_seed(cell.seed, "init"))
    # Attention-like features come from Q/K/V hooks, so both models keep the fast sdpa kernel.
    ttype = get_type(task.task_type)
    if start is not None:
        student = load_pretrained_classifier(str(start), ttype.num_labels(task), "sdpa", ignore_mismatched_sizes=True,
                                             auto_class=ttype.auto_class)
    elif cell.stages:
        raise ValueError(f"cell {cell.name} starts from stage {cell.stages[-1].stage_id}, whose folder was not given")
    else:
        student = build_student(teacher.model, size, cell.initialisation, ttype.num_labels(task), "sdpa",
                                auto_class=ttype.auto_class)
    if task.label_names and len(task.label_names) == student.config.num_labels:  # exported models name them
        student.config.id2label = dict(enumerate(task.label_names))
        student.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    train_ds = data.tokenized(cell.dataset, "train", teacher.tokenizer, tr["max_length"],
                              max_examples=tr["max_train_examples"], data_seed=tr["data_seed"],
                              augmentation=cell.augmentation_steps, augmentation_seed=cell.seed)
    dev_ds, dev_labels = data.tokenized_dev(cell.dataset, teacher.tokenizer, tr["max_length"],
                                            tr["max_eval_examples"])
    tracker.log_datasets(run_id, [data.record(cell.dataset, "train", train_ds, contract.DATASET_CONTEXT_TRAIN),
                                  data.record(cell.dataset, "dev", dev_ds, contract.DATASET_CONTEXT_DEV)])
    torch.manual_seed(derive_seed(cell.seed, "objective_init"))  # learned projections, critics
    objective = cell.build_objective(task.task_type, ModelDims.of(student.config),
                                     ModelDims.of(teacher.model.config), train_size=len(train_ds))
    cached = None
    if objective.needs_teacher and not objective.needs_teacher_forward:
        # Logit-only objectives read the frozen teacher's logits from a per-split cache.
        cached = data.teacher_logits(f"{cell.teacher.teacher_id}:{cell.teacher.checkpoint}", teacher.model, train_ds,
                                     teacher.tokenizer, device, cell.teacher.precision)
    spec = Student(student, objective, tr, cell.seed, log_metrics=lambda pts: tracker.log_metrics(run_id, pts),
                   desc=cell.name, cached_teacher_logits=cached, mixup=cell.mixup)
    return PreparedCell(cell, run_id, spec, train_ds, dev_ds, dev_labels,
                        needs_teacher=bool(objective.needs_teacher or cell.mixup))


def finish_cell(prep: PreparedCell, result: TrainResult, teacher: Teacher, tracker: Tracker,
                lookup=None, keep: bool = False) -> float:
    """Log the cell's costs, keep its student as the run's artifacts with ``keep``
    (``study.execution.students``), and end its run FINISHED (``locks.finish`` with ``lookup``);
    return its dev score (a fraction)."""
    if keep:
        keep_student(tracker, prep.run_id, prep.cell.cell_id, prep.student.model, teacher.tokenizer,
                     result.dev_metrics)
    n_params = sum(p.numel() for p in prep.student.model.parameters())
    tracker.log_metrics(prep.run_id, [
        (contract.METRIC_TEACHER_SCORE, teacher.dev_score, 0),
        (contract.METRIC_WALL_TIME, result.wall_time_s, 0),
        (contract.METRIC_TRAIN_TIME, result.train_time_s, 0),
        (contract.METRIC_EXAMPLES_PER_S, result.train_examples_per_s, 0),
        (contract.METRIC_PEAK_MEMORY, result.peak_memory_mb, 0),
        (contract.METRIC_TRAIN_EXAMPLES, len(prep.train_ds), 0),
        (contract.METRIC_STUDENT_PARAMETERS, n_params, 0),
        (contract.METRIC_GROUP_SIZE, result.group_size, 0),
        (contract.METRIC_CPU_TIME, result.cpu_time_s, 0),
        (contract.METRIC_CPU_THREADS, result.cpu_threads, 0),
    ])
    if lookup is None:
        tracker.finish(prep.run_id)
    else:
        locks.finish(tracker, prep.run_id, lookup)
    return result.dev_metrics["score"]


def run_group(cells: list[Cell], teacher: Teacher, data: DataCache, tracker: Tracker, device: torch.device,
              grid_version: str | None = None, run_ids: list[str | None] | None = None,
              teacher_source: str | None = None, lookups: list | None = None,
              keep_students: bool = False, system_metrics: bool = False,
              starts: dict[str, Path] | None = None, checkpoints: CheckpointStore | None = None,
              checkpoint_every_s: float = 0.0) -> list[float | Exception]:
    """Train cells that share a ``group_key`` together (``study.training.trainer.train_group``), each
    logged to its own run; per cell, its dev score (a fraction) or the exception that ended its
    run FAILED (the others go on). An interruption ends every open run KILLED and propagates.

    Args:
        run_ids: per cell, its claimed RUNNING run (``study.execution.locks``), or None to start one.
        lookups: per cell, a function returning the cell's runs, to end its run as a duplicate if
            another finished first (``locks.finish``), or None.
        keep_students: save each trained student as an artifact of its run (``keep_student: all``).
        system_metrics: log MLflow's system metrics to each run while the group trains
            (``Tracker.system_metrics``; the machine's, shared by the group).
        starts: per cell id, the folder of its last stage (``study.execution.stages``), for cells
            with stages.
        checkpoints: where the cells' checkpoints are (``study.execution.checkpoints``): cells with
            one resume from it (those sharing a position together, the others start over in a
            group of their own); each is written every ``checkpoint_every_s`` seconds (0: never)
            and removed when the cell's run ends. None: no checkpoints.

    Raises:
        ValueError: the cells do not share a ``group_key``.
    """
    if len({group_key(c) for c in cells}) > 1:
        raise ValueError("cells of a group must share data, seed, budget shape and teacher (study.execution.units.group_key)")
    run_ids = list(run_ids or [None] * len(cells))
    lookups = list(lookups or [None] * len(cells))
    outcomes: list[float | Exception | None] = [None] * len(cells)
    prepared: dict[int, PreparedCell] = {}
    opened: dict[int, str] = {}  # runs not yet ended

    def fail(i: int, exc: BaseException) -> None:
        fault = environment_fault(exc, tracker.uri) if isinstance(exc, Exception) else None
        if fault is not None and fault is not exc:  # a full disk, a dead server: stop the grid
            raise fault from exc
        tracker.fail(opened.pop(i), exc)
        if isinstance(exc, Exception) and fault is None:
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
                prepared[i] = prepare_cell(cell, teacher, data, tracker, device, opened[i],
                                           (starts or {}).get(cell.cell_id))
            except Exception as exc:
                fail(i, exc)
        for members, position, states in _resume_parts(cells, prepared, checkpoints):
            preps = [prepared[i] for i in members]
            results = _train_part(preps, position, states, teacher, tracker, device, system_metrics, checkpoints,
                                  checkpoint_every_s)
            for i, prep, result in zip(members, preps, results):
                try:
                    if isinstance(result, Exception):
                        raise result
                    outcomes[i] = finish_cell(prep, result, teacher, tracker, lookups[i], keep_students)
                    opened.pop(i)
                except Exception as exc:
                    fail(i, exc)
                if checkpoints is not None and i not in opened:  # its run ended: FINISHED or FAILED
                    checkpoints.remove(prep.cell.cell_id)
        teacher.model.cpu()
    except BaseException as exc:
        for i in list(opened):
            fail(i, exc if not isinstance(exc, Exception) else environment_fault(exc, tracker.uri) or exc)
        raise
    return outcomes


def _resume_parts(cells: list[Cell], prepared: dict[int, PreparedCell], checkpoints: CheckpointStore | None
                  ) -> list[tuple[list[int], Position | None, list[dict]]]:
    """The prepared cells (indices into ``cells``) split by where their checkpoints stand
    (``checkpoints.resume_plan``): per part, its cells, the position to resume from (None: from
    the start) and their states. Without ``checkpoints``, one part from the start."""
    order = list(prepared)
    if not order:
        return []
    if checkpoints is None:
        return [(order, None, [])]
    return [([order[j] for j in idx], position, states)
            for idx, position, states in resume_plan(checkpoints, [cells[i].cell_id for i in order])]


def _train_part(preps: list[PreparedCell], position: Position | None, states: list[dict], teacher: Teacher,
                tracker: Tracker, device: torch.device, system_metrics: bool,
                checkpoints: CheckpointStore | None, every_s: float) -> list[TrainResult | Exception]:
    """Train ``preps`` together (``train_group``), from ``position`` (tagging each run with where it
    resumed) or from the start, checkpointing every ``every_s`` seconds into ``checkpoints``."""
    resume = None
    if position is not None:
        resume = (position, states)
        where = f"epoch {position.epoch}, batch {position.batches} (step {position.step})"
        checkpoints.log(f"{len(preps)} cell(s) resume from their checkpoint at {where}")
        for prep in preps:
            tracker.client.set_tag(prep.run_id, contract.TAG_RESUMED_FROM, where)
    checkpointer = (GroupCheckpointer(checkpoints, [p.cell.cell_id for p in preps], every_s)
                    if checkpoints is not None else None)
    # with checkpoints on, a SIGTERM/SIGHUP is held to the batch's end and checkpointed there
    hold = interrupt.held() if checkpointer is not None and every_s > 0 else nullcontext()
    with tracker.system_metrics([p.run_id for p in preps], system_metrics), hold:
        return train_group([p.student for p in preps], preps[0].train_ds, preps[0].dev_ds, preps[0].dev_labels,
                           TASKS[preps[0].cell.dataset], teacher.tokenizer, device,
                           teacher=teacher.model if any(p.needs_teacher for p in preps) else None,
                           teacher_precision=preps[0].cell.teacher.precision,
                           checkpointer=checkpointer, resume=resume)
