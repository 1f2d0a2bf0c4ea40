"""A grid's expansion: the cross product of its axes, minus excludes, each choice resolved into a
``Cell`` (defaults, the preset and legacy ``objective_params``, the grid's fixed settings and the
dataset's overrides, then the cell's axis values), and the check of every cell against its
teacher's architecture and its task type.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from study import augment as augment_mod
from study.core.errors import StudyConfigError
from study.core.hashing import stable_hash
from study.core.schema import validate_settings
from study.grid.cell import Cell, TeacherSpec, augmentation_identity, label, without_default_precision
from study.grid.schema import SLOT_AXES, TeacherSettings, TrainingSettings, entries
from study.grid.stages import DEFAULT_SCHEDULE, check_stage, stages_for
from study.models import StudentSize, check_initialisation, load_teacher_config, student_model_config
from study.objectives import mixup as mixup_mod
from study.objectives import prediction as prediction_mod
from study.objectives.distillation import ModelDims
from study.objectives.intermediate import resolve_entry
from study.objectives.presets import legacy_params, preset
from study.tasks import catalogue as data_mod
from study.tasks.types import get_type


@dataclass
class Grid:
    """A parsed grid: its axes (dotted names -> values) and fixed settings."""

    name: str
    description: str
    axes: dict[str, list]
    teacher: dict[str, Any]
    training: dict[str, Any]
    prediction: dict[str, Any]
    intermediate: list[dict[str, Any]] | None
    mixup: dict[str, Any]
    objective_params: dict[str, dict]
    augmentation_params: dict[str, dict]
    exclude: list[dict[str, list]]
    source: Path | None = None
    #: (datasets, {"training": {...}, "teacher": {...}}) per ``overrides`` entry
    overrides: list[tuple[list[str], dict[str, dict[str, Any]]]] = field(default_factory=list)
    #: cells ``study run`` trains together when ``--group-size`` is not given
    group_size: int = 1
    #: which students ``study run`` keeps as artifacts when ``--keep-student`` is not given
    keep_student: str = "none"
    #: the general (task-agnostic) stage's settings (``study.grid.stages``)
    general: dict[str, Any] = field(default_factory=dict)

    @property
    def axis_order(self) -> list[str]:
        """Axis names in a canonical order (slots first, then dotted names sorted), so that the
        order of keys in the YAML never changes the order of cells."""
        order = {a: i for i, a in enumerate(SLOT_AXES)}
        return sorted(self.axes, key=lambda a: (order.get(a, len(order)), a))

    @property
    def factors(self) -> list[str]:
        """The axes with more than one value (what the analysis compares), in canonical order."""
        return [a for a in self.axis_order if len(self.axes[a]) > 1]

    def cells(self) -> list[Cell]:
        """Expand the cross product of the axes, minus excludes, in a stable order; a choice that
        resolves to an existing cell's identity is that cell (kept once). Expanded once per grid
        (validation, teachers, the version and the runner all read the same list)."""
        return list(self._expanded)

    @cached_property
    def _expanded(self) -> list[Cell]:
        out: dict[str, Cell] = {}
        names = self.axis_order
        for values in itertools.product(*(self.axes[a] for a in names)):
            choice = dict(zip(names, values))
            if any(all(label(choice[k]) in v for k, v in ex.items()) for ex in self.exclude):
                continue
            cell = self._cell(choice)
            out.setdefault(cell.cell_id, cell)
        return list(out.values())

    def _cell(self, choice: dict[str, Any]) -> Cell:
        """The cell of one choice of axis values, every slot resolved and checked."""
        where = f"grid {self.name!r}, cell " + ", ".join(f"{k}={label(v)}" for k, v in choice.items())
        slots = self._slots(choice, where)
        try:
            pred = prediction_mod.resolve(slots["prediction"])
            mixup = mixup_mod.resolve(slots["mixup"])
            intermediate = [resolve_entry(e, f"intermediate[{i}]") for i, e in enumerate(slots["intermediate"])]
            teacher = validate_settings(TeacherSettings, slots["teacher"], "teacher")
            training = validate_settings(TrainingSettings, slots["training"], "training")
        except StudyConfigError as exc:
            raise StudyConfigError(f"{where}: {exc}") from None
        steps = augment_mod.resolve_pipeline(choice.get("augmentation", "none"), self.augmentation_params)
        teacher_spec = TeacherSpec(choice["dataset"], teacher)
        initialisation, seed = choice.get("initialisation", "random"), choice.get("seed", 0)
        schedule = choice.get("schedule", DEFAULT_SCHEDULE)
        try:
            stages, pred, intermediate = stages_for(
                schedule, initialisation, student=choice["student"], seed=seed, teacher=teacher_spec,
                dataset=choice["dataset"], training=without_default_precision(training), prediction=pred,
                intermediate=intermediate, augmentation=augmentation_identity(steps), augmentation_steps=steps,
                general=slots["general"], where=where)
        except StudyConfigError as exc:
            raise StudyConfigError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
        return Cell(grid=self.name, dataset=choice["dataset"], student=choice["student"],
                    initialisation=initialisation, seed=seed,
                    objective=choice.get("objective") or "custom", augmentation=augment_mod.pipeline_label(steps),
                    augmentation_steps=steps, prediction=pred, intermediate=intermediate, mixup=mixup,
                    training=training, teacher=teacher_spec,
                    factors={a: label(choice[a]) for a in self.factors}, schedule=schedule, stages=tuple(stages))

    def _slots(self, choice: dict[str, Any], where: str) -> dict[str, Any]:
        """The unresolved slot settings of one choice, in the order of the module docstring:
        the preset (or legacy ``objective_params``), the grid's fixed settings and the dataset's
        overrides, then the choice's axis values."""
        objective = choice.get("objective")
        if objective is None:
            slots = {"prediction": {}, "intermediate": []}
        elif objective in self.objective_params:
            slots = legacy_params(objective, self.objective_params[objective])
        else:
            slots = preset(objective)
        slots["prediction"].update(self.prediction)
        if "intermediate" in choice:
            slots["intermediate"] = entries(choice["intermediate"], "axis intermediate")
        elif self.intermediate is not None:
            slots["intermediate"] = self.intermediate
        slots["intermediate"] = copy.deepcopy(slots["intermediate"])
        slots.update(teacher=dict(self.teacher), training=dict(self.training), mixup=dict(self.mixup),
                     general=dict(self.general))
        for datasets, settings in self.overrides:
            if choice["dataset"] in datasets:
                slots["teacher"].update(settings.get("teacher", {}))
                slots["training"].update(settings.get("training", {}))
        for axis, value in choice.items():
            root, _, rest = axis.partition(".")
            if root == "intermediate" and rest:
                _set_entry_value(slots["intermediate"], axis, value, where)
            elif rest:
                slots[root][rest] = value
        return slots

    @cached_property
    def version(self) -> str:
        """A hash of the grid's cell ids: it changes when an edit adds or removes cells."""
        return stable_hash({"cells": sorted(c.cell_id for c in self.cells())})

    def teachers(self) -> list[TeacherSpec]:
        """The distinct teachers the cells need, in first-use order."""
        seen: dict[str, TeacherSpec] = {}
        for cell in self.cells():
            seen.setdefault(cell.teacher.teacher_id, cell.teacher)
        return list(seen.values())

    def validate(self) -> list[Cell]:
        """Expand and check every cell before any training; return the cells.

        Checks each cell against its teacher's architecture: the student's width against the
        teacher's head size, a teacher_* initialisation against the teacher's width and depth, the
        layer mappings against both depths, the objective against the task type, and what the
        task type refuses (augmentation and mix-up on token classification and extractive QA).

        Raises:
            StudyConfigError: the first bad cell, naming it and what is allowed.
        """
        cells = self.cells()
        if not cells:
            raise StudyConfigError(f"Grid {self.name!r} expands to no cells (all excluded?).")
        configs: dict[str, Any] = {}
        checked: set[str] = set()
        for cell in cells:
            reason = get_type(data_mod.TASKS[cell.dataset].task_type).refuse(cell)
            if reason:
                raise StudyConfigError(f"Grid {self.name!r}, cell {cell.name}: dataset {cell.dataset!r} is "
                                       f"{data_mod.TASKS[cell.dataset].task_type}: {reason}")
            key = stable_hash({"d": cell.dataset, "s": cell.student, "i": cell.initialisation, "t": cell.teacher.model,
                               "p": cell.prediction, "e": cell.intermediate, "g": [s.stage_id for s in cell.stages]})
            if key in checked:
                continue
            checked.add(key)
            if cell.teacher.model not in configs:
                configs[cell.teacher.model] = load_teacher_config(cell.teacher.model)
            tcfg = configs[cell.teacher.model]
            try:
                size = StudentSize.parse(cell.student)
                start = cell.stages[0].initialisation if cell.stages else cell.initialisation  # who builds it
                scfg = student_model_config(tcfg, size, start)
                check_initialisation(start, size, tcfg)
                task = data_mod.TASKS[cell.dataset]
                # train_size 1: a labelled set of some size (a memory bank is sized at training)
                cell.build_objective(task.task_type, ModelDims.of(scfg), ModelDims.of(tcfg), train_size=1)
                for stage in cell.stages:
                    check_stage(stage, scfg, tcfg)
            except StudyConfigError as exc:
                raise StudyConfigError(f"Grid {self.name!r}, cell {cell.name}: {exc}") from None
        return cells


def _set_entry_value(entries: list[dict[str, Any]], axis: str, value: Any, where: str) -> None:
    """Apply axis ``intermediate.K`` (every entry) or ``intermediate.N.K`` (entry N) to ``entries``."""
    index, _, key = axis.split(".", 1)[1].partition(".")
    if not key:
        for entry in entries:
            entry[index] = value
    elif int(index) >= len(entries):
        raise StudyConfigError(f"{where}: axis {axis!r} names entry {index}, but the cell has "
                               f"{len(entries)} intermediate entries.")
    else:
        entries[int(index)][key] = value
