"""Grids: a YAML declaration of axes, fixed settings and excludes, expanded into cells.

A cell is a set of named slots, each filled from a registry:

| slot             | what                                                             | registry / check                 |
|------------------|------------------------------------------------------------------|----------------------------------|
| ``dataset``      | the task: a shipped name or a task YAML (``study/tasks/``)       | ``study.tasks.catalogue.TASKS``             |
| ``student``      | ``L{layers}_H{hidden}`` in the teacher's family                  | ``study.models.StudentSize``     |
| ``initialisation`` | how the student starts                                         | ``study.models.INITIALISATIONS`` |
| ``teacher``      | model and fine-tuning budget                                     | ``TeacherSettings``              |
| ``prediction``   | distance, teacher_temperature, student_temperature, alpha        | ``study.objectives.prediction``  |
| ``intermediate`` | a list of {features, loss, mapping, weight, parameters}          | ``study.objectives.intermediate``|
| ``augmentation`` | an augmentation policy and its parameters                        | ``study.augment.AUGMENTATIONS``  |
| ``mixup``        | mix-up distillation (alpha of Beta(a, a), weight; alpha 0 = off) | ``study.objectives.mixup``       |
| ``seed``         | the cell's random streams                                        | int >= 0                         |
| ``training``     | the student's budget                                             | ``TrainingSettings``             |

A grid file (``study/grids/NAME.yaml``)::

    name: smoke
    axes:                              # the cross product of these is the set of cells
      dataset: [sst2]
      student: [L2_H384]
      objective: [ce, logit_kd]        # a named preset of prediction + intermediate
      initialisation: [teacher_lower, teacher_upper]
      prediction.student_temperature: [1, 2]   # any slot parameter, by dotted name
      intermediate.mapping: [skip, last]       # applies to every intermediate entry
      seed: [0]
    teacher: {model: all-MiniLM-L6-v2, epochs: 2}
    training: {epochs: 1, learning_rate: 1.0e-4}
    prediction: {alpha: 0.5}           # fixed slot settings, on top of the preset
    intermediate: [{features: hidden, loss: mse}]
    augmentation_params: {eda: {n_aug: 1}}
    exclude:                           # drop cells matching all keys (a list matches any value)
      - {student: L4_H256, initialisation: [teacher_lower, teacher_upper]}
    overrides:                         # a budget per dataset: these settings replace the grid's
      - {when: {dataset: squad-devsplit}, training: {max_length: 256}, teacher: {max_length: 256}}
    group_size: 8                      # cells trained together by default (not part of any cell)

``overrides`` give some datasets their own budget (settings, not factors): each entry's
``training``/``teacher`` values replace the grid's fixed ones for the datasets its ``when``
names, before the cell's axis values; they are the cell's resolved settings, so they enter its
identity like any other. A key set by an override may not also be a grid axis, and two entries
may not set the same key for one dataset.

``group_size`` is how many cells ``study run`` trains together on shared batches when
``--group-size`` is not given (default 1: one at a time). It is how the grid is run, not what it
holds: no cell's identity or result depends on it (grouped training is bit-identical on CPU).

Axis names: ``dataset``, ``student``, ``initialisation``, ``objective``, ``augmentation``,
``seed``, ``intermediate`` (whole entry lists), and ``prediction.K``, ``intermediate.K``,
``intermediate.N.K``, ``teacher.K``, ``training.K``. A cell is resolved in this order: defaults,
the preset (``objective``) and its legacy ``objective_params``, the grid's fixed slot settings,
then the cell's axis values. Cells that resolve to the same choices are one cell.

A cell's identity is every resolved choice and each component's version, nothing else (no paths,
device, tracking URI, grid name): its id is the sha256 of the canonical JSON of that identity
(sorted keys, floats written with ``repr``), cut to 16 hex digits.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict

from study.core.hashing import stable_hash
from study.core.schema import validate_settings
from study.core import contract
from study import augment as augment_mod
from study.tasks import catalogue as data_mod
from study.models import (
    INIT_VERSION,
    StudentSize,
    check_initialisation,
    check_initialisation_name,
    initialisation_identity,
    load_teacher_config,
    student_model_config,
    teacher_identity,
)
from study.objectives import mixup as mixup_mod
from study.objectives import prediction as prediction_mod
from study.objectives.distillation import Distillation, ModelDims
from study.objectives.intermediate import entry_versions, resolve_entry
from study.objectives.presets import PRESETS, legacy_params, preset
from study.core.paths import grids_dir
from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean, lookup
from study.tasks.types import get_type

TOP_KEYS = ("name", "description", "axes", "teacher", "training", "prediction", "intermediate", "mixup",
            "objective_params", "augmentation_params", "exclude", "overrides", "group_size")
#: Axes that name a whole slot (the others are dotted: prediction.K, intermediate.K, ...).
SLOT_AXES = ("dataset", "student", "objective", "initialisation", "augmentation", "seed", "intermediate")
DOTTED_ROOTS = ("prediction", "intermediate", "mixup", "teacher", "training")
REQUIRED_AXES = ("dataset", "student")
AXIS_DEFAULTS: dict[str, list] = {"initialisation": ["random"], "augmentation": ["none"], "seed": [0]}
#: The display name's leading parts, always logged as params (older stores and reports read them).
NAME_PARTS = ("dataset", "student", "objective", "initialisation", "augmentation")

#: Version of the training recipe (loop, optimiser, schedule); part of every cell's identity.
#: 2: features from Q/K/V hooks before attention dropout; alpha weighs the teacher term.
TRAINER_VERSION = "2"

PosInt = Annotated[int, Strict(), Field(gt=0)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class TrainingSettings(BaseModel):
    """A training budget; every field is part of the identity. Learning rate in 1/step units."""

    model_config = ConfigDict(extra="forbid")
    epochs: PosInt = 1
    learning_rate: PosFloat = 1e-4
    batch_size: PosInt = 32
    warmup_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.1
    weight_decay: NonNegFloat = 0.01
    max_grad_norm: PosFloat = 1.0
    max_length: PosInt = 128
    max_train_examples: PosInt | None = None
    max_eval_examples: PosInt | None = None
    data_seed: NonNegInt = 0


class TeacherSettings(TrainingSettings):
    """The teacher's fine-tuning: its model (a known alias, a hub id or a local directory) and budget."""

    model: Annotated[str, Field(min_length=1)] = "all-MiniLM-L6-v2"
    checkpoint: Literal["last", "best_metric", "lowest_loss"] = "last"
    epochs: PosInt = 3
    learning_rate: PosFloat = 5e-5
    seed: NonNegInt = 0


TRAINING_DEFAULTS: dict[str, Any] = TrainingSettings().model_dump()
TEACHER_DEFAULTS: dict[str, Any] = TeacherSettings().model_dump()


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher fine-tuning: model and budget on one dataset. One cached teacher per id."""

    dataset: str
    settings: dict[str, Any]

    @cached_property
    def identity(self) -> dict[str, Any]:
        """The fine-tuning's identity; which checkpoint a cell reads is the cell's choice (one
        fine-tuning keeps every checkpoint), so ``checkpoint`` is not part of it."""
        s = {k: v for k, v in self.settings.items() if k != "checkpoint"}
        s["model"] = teacher_identity(s["model"])  # never a path: a local folder is its weights' hash
        return {"dataset": self.dataset, "teacher": s, "trainer_version": TRAINER_VERSION,
                "data_version": data_mod.VERSION}

    @cached_property
    def teacher_id(self) -> str:
        return stable_hash(self.identity)

    @property
    def model(self) -> str:
        return self.settings["model"]

    @property
    def checkpoint(self) -> str:
        """``last``, ``best_metric`` or ``lowest_loss`` (``study.execution.teacher.CHECKPOINTS``)."""
        return self.settings.get("checkpoint", "last")


def _label(value: Any) -> str:
    """An axis value as text for names, params and tables; intermediate entries read as
    ``hidden:mse+attention:kl(mapping=last)`` and an empty list as ``none``."""
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        if not value:
            return "none"
        if all(isinstance(e, dict) for e in value):
            parts = []
            for e in value:
                rest = ",".join(f"{k}={e[k]}" for k in sorted(e) if k not in ("features", "loss"))
                parts.append(f"{e.get('features', 'hidden')}:{e.get('loss', 'mse')}" + (f"({rest})" if rest else ""))
            return "+".join(parts)
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


@dataclass(frozen=True)
class Cell:
    """One training run of a grid: every resolved slot, and the grid's view of it.

    ``factors`` maps each axis the grid varies (more than one value) to this cell's value; the
    grid name and ``factors`` are not part of the identity.
    """

    grid: str
    dataset: str
    student: str
    initialisation: str
    seed: int
    objective: str  # the preset's name, or "custom" when the cell names none
    augmentation: str  # the pipeline's label: "none", "eda", "eda+mlm"
    augmentation_steps: list[dict[str, Any]] = field(hash=False)
    prediction: dict[str, Any] = field(hash=False)
    intermediate: list[dict[str, Any]] = field(hash=False)
    mixup: dict[str, Any] = field(hash=False)
    training: dict[str, Any] = field(hash=False)
    teacher: TeacherSpec = field(hash=False)
    factors: dict[str, str] = field(hash=False, default_factory=dict)

    @cached_property
    def identity(self) -> dict[str, Any]:
        """The choices that define this cell (what the id hashes)."""
        return {
            "dataset": self.dataset,
            "student": self.student,
            "initialisation": initialisation_identity(self.initialisation),
            "seed": self.seed,
            "prediction": {**self.prediction, "version": prediction_mod.VERSION},
            "intermediate": [{**e, "version": entry_versions(e)} for e in self.intermediate],
            **({"mixup": {**self.mixup, "version": mixup_mod.VERSION}} if self.mixup else {}),
            "augmentation": _augmentation_identity(self.augmentation_steps),
            "training": self.training,
            "teacher": self.teacher.identity,
            # the final weights keep the identity cells had before checkpoints could be chosen
            **({"teacher_checkpoint": self.teacher.checkpoint} if self.teacher.checkpoint != "last" else {}),
            "trainer_version": TRAINER_VERSION,
            "initialisation_version": INIT_VERSION,
            "data_version": data_mod.VERSION,
        }

    @cached_property
    def cell_id(self) -> str:
        return stable_hash(self.identity)

    @property
    def name(self) -> str:
        """Display name: ``sst2-L2_H384-attention_kl-teacher_lower-none[-k=v...]-s0``."""
        parts = [str(getattr(self, p)) for p in NAME_PARTS]
        parts += [f"{axis.rsplit('.', 1)[-1]}={value}" for axis, value in self.factors.items()
                  if axis not in (*NAME_PARTS, "seed")]
        return "-".join(parts + [f"s{self.seed}"])

    def params(self) -> dict[str, str]:
        """Flat MLflow params: every resolved choice by dotted name, and every grid factor."""
        out: dict[str, Any] = {p: getattr(self, p) for p in (*NAME_PARTS, "seed")}
        out["teacher"] = teacher_identity(self.teacher.model)
        out.update(self.training)
        out.update({f"teacher.{k}": v for k, v in self.teacher.settings.items() if k != "model"})
        out.update({f"prediction.{k}": v for k, v in self.prediction.items()})
        for i, entry in enumerate(self.intermediate):
            out.update({f"intermediate.{i}.{k}": v for k, v in entry.items()})
        out["intermediate.count"] = len(self.intermediate)
        out.update({f"mixup.{k}": v for k, v in (self.mixup or {"alpha": 0.0}).items()})
        for i, step in enumerate(self.augmentation_steps):
            prefix = "augmentation." if len(self.augmentation_steps) == 1 else f"augmentation.{i}."
            out.update({f"{prefix}{k}": v for k, v in step["params"].items()})
        out.update(self.factors)
        return {k: str(v) for k, v in out.items()}

    def build_objective(self, task_type: str, student: ModelDims, teacher: ModelDims,
                        train_size: int = 0) -> Distillation:
        """The cell's ``Distillation`` for models of these dimensions."""
        return Distillation(self.prediction, self.intermediate, task_type=task_type, student=student,
                            teacher=teacher, train_size=train_size)


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

    @property
    def axis_order(self) -> list[str]:
        """Axis names in a canonical order (slots first, then dotted names sorted), so that the
        order of keys in the YAML never changes the order of cells."""
        order = {a: i for i, a in enumerate(("dataset", "student", "objective", "initialisation",
                                             "augmentation", "seed", "intermediate"))}
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
            if any(all(_label(choice[k]) in v for k, v in ex.items()) for ex in self.exclude):
                continue
            cell = self._cell(choice)
            out.setdefault(cell.cell_id, cell)
        return list(out.values())

    def _cell(self, choice: dict[str, Any]) -> Cell:
        where = f"grid {self.name!r}, cell " + ", ".join(f"{k}={_label(v)}" for k, v in choice.items())
        objective = choice.get("objective")
        if objective is not None:
            slots = (legacy_params(objective, self.objective_params[objective])
                     if objective in self.objective_params else preset(objective))
        else:
            slots = {"prediction": {}, "intermediate": []}
        pred = {**slots["prediction"], **self.prediction}
        entries = copy.deepcopy(self.intermediate) if self.intermediate is not None else slots["intermediate"]
        teacher, training, mixup = dict(self.teacher), dict(self.training), dict(self.mixup)
        for datasets, settings in self.overrides:
            if choice["dataset"] in datasets:
                teacher.update(settings.get("teacher", {}))
                training.update(settings.get("training", {}))
        if "intermediate" in choice:
            entries = copy.deepcopy(_entries(choice["intermediate"], "axis intermediate"))
        for axis, value in choice.items():
            root, _, rest = axis.partition(".")
            if not rest:
                continue
            if root == "prediction":
                pred[rest] = value
            elif root == "mixup":
                mixup[rest] = value
            elif root == "teacher":
                teacher[rest] = value
            elif root == "training":
                training[rest] = value
            elif root == "intermediate":
                index, _, key = rest.partition(".")
                if key:
                    if int(index) >= len(entries):
                        raise StudyConfigError(f"{where}: axis {axis!r} names entry {index}, but the cell has "
                                               f"{len(entries)} intermediate entries.")
                    entries[int(index)][key] = value
                else:
                    for entry in entries:
                        entry[rest] = value
        try:
            pred = prediction_mod.resolve(pred)
            mixup = mixup_mod.resolve(mixup)
            entries = [resolve_entry(e, f"intermediate[{i}]") for i, e in enumerate(entries)]
            teacher = validate_settings(TeacherSettings, teacher, "teacher")
            training = validate_settings(TrainingSettings, training, "training")
        except StudyConfigError as exc:
            raise StudyConfigError(f"{where}: {exc}") from None
        steps = augment_mod.resolve_pipeline(choice.get("augmentation", "none"), self.augmentation_params)
        factors = {a: _label(choice[a]) for a in self.factors}
        return Cell(grid=self.name, dataset=choice["dataset"], student=choice["student"],
                    initialisation=choice.get("initialisation", "random"), seed=choice.get("seed", 0),
                    objective=objective or "custom", augmentation=augment_mod.pipeline_label(steps),
                    augmentation_steps=steps,
                    prediction=pred, intermediate=entries, mixup=mixup, training=training,
                    teacher=TeacherSpec(choice["dataset"], teacher), factors=factors)

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
                               "p": cell.prediction, "e": cell.intermediate})
            if key in checked:
                continue
            checked.add(key)
            if cell.teacher.model not in configs:
                configs[cell.teacher.model] = load_teacher_config(cell.teacher.model)
            tcfg = configs[cell.teacher.model]
            try:
                size = StudentSize.parse(cell.student)
                scfg = student_model_config(tcfg, size, cell.initialisation)
                check_initialisation(cell.initialisation, size, tcfg)
                task = data_mod.TASKS[cell.dataset]
                cell.build_objective(task.task_type, ModelDims.of(scfg), ModelDims.of(tcfg))
            except StudyConfigError as exc:
                raise StudyConfigError(f"Grid {self.name!r}, cell {cell.name}: {exc}") from None
        return cells


_MODEL_PARAMS = ("model", "forward_model", "backward_model")


def _augmentation_identity(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The augmentation part of a cell's identity. One policy keeps the form it had before
    pipelines (name, params, version), so those cells keep their ids; a model given as a local
    folder enters as its weights' hash, never as a path."""
    steps = [{"name": s["name"], "params": {k: teacher_identity(v) if k in _MODEL_PARAMS and isinstance(v, str) else v
                                            for k, v in s["params"].items()}} for s in steps]
    if len(steps) <= 1:
        name = steps[0]["name"] if steps else "none"
        return {"name": name, "params": steps[0]["params"] if steps else {}, "version": augment_mod.version(name)}
    return {"name": augment_mod.pipeline_label(steps), "steps": steps, "version": augment_mod.pipeline_version(steps)}


def _entries(value: Any, where: str) -> list[dict]:
    """An ``intermediate`` value: a list of entry mappings, one mapping, or ``none``/``[]``."""
    if value in (None, "none", []):
        return []
    if isinstance(value, Mapping):
        return [dict(value)]
    if isinstance(value, list) and all(isinstance(e, Mapping) for e in value):
        return [dict(e) for e in value]
    raise StudyConfigError(f"{where}: an intermediate value is a list of entries such as "
                           f"[{{features: hidden, loss: mse}}], one entry, or none; got {value!r}.")


def _as_list(axis: str, value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    if axis == "intermediate" and isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        values = [value]  # one list of entries, not a list of alternatives
    if not values:
        raise StudyConfigError(f"Axis {axis!r} is empty: give at least one value.")
    return values


def _check_keys(given: Mapping, allowed: Mapping | tuple, where: str) -> None:
    for key in given:
        if key not in allowed:
            raise StudyConfigError(
                f"Unknown key {key!r} in {where}. Allowed: {', '.join(allowed)}."
                f"{did_you_mean(key, allowed)}")


def _check_axis_name(axis: str) -> None:
    if axis in SLOT_AXES:
        return
    root, _, rest = str(axis).partition(".")
    if root in DOTTED_ROOTS and rest:
        if root == "teacher":
            _check_keys({rest: 0}, TEACHER_DEFAULTS, "teacher (axis teacher.K)")
        elif root == "training":
            _check_keys({rest: 0}, TRAINING_DEFAULTS, "training (axis training.K)")
        elif root == "prediction":
            lookup(prediction_mod.DEFAULTS, rest, "prediction parameter (axis prediction.K)")
        elif root == "mixup":
            lookup(mixup_mod.DEFAULTS, rest, "mixup parameter (axis mixup.K)")
        elif root == "intermediate":
            index, _, key = rest.partition(".")
            if key and not index.isdigit():
                raise StudyConfigError(f"Axis {axis!r}: write intermediate.K or intermediate.N.K (N an entry index).")
        return
    allowed = [*SLOT_AXES, *(f"{r}.K" for r in DOTTED_ROOTS)]
    raise StudyConfigError(f"Unknown axis {axis!r}. Allowed: {', '.join(allowed)}.{did_you_mean(axis, SLOT_AXES)}")


def parse_grid(spec: Mapping[str, Any], source: Path | None = None) -> Grid:
    """Validate the names in a grid mapping (as loaded from YAML) and build a ``Grid``.

    Every cell is resolved here, so a bad value anywhere (an unknown component, a parameter out
    of range, a bad learning rate) fails before any training.

    Raises:
        StudyConfigError: a misspelt key or axis, an unknown dataset/objective/initialisation/
            augmentation, a bad student size, seed, grid name or setting; the message names the
            value and what is allowed.
    """
    if not isinstance(spec, Mapping):
        raise StudyConfigError(f"A grid must be a mapping of keys, got {type(spec).__name__}.")
    _check_keys(spec, TOP_KEYS, "the grid")
    if "name" not in spec or "axes" not in spec:
        raise StudyConfigError("A grid needs 'name' and 'axes'.")
    name = str(spec["name"]) if spec["name"] is not None else ""
    try:
        contract.membership_tag(name)
    except ValueError as exc:
        raise StudyConfigError(str(exc)) from None
    axes_in = spec["axes"] or {}
    if not isinstance(axes_in, Mapping):
        raise StudyConfigError(f"'axes' must be a mapping of axis: values, got {axes_in!r}.")
    for axis in axes_in:
        _check_axis_name(str(axis))
    missing = [a for a in REQUIRED_AXES if a not in axes_in]
    if missing:
        raise StudyConfigError(f"Grid axes missing: {', '.join(missing)} (every grid names its datasets and students).")
    axes = {a: _as_list(a, v) for a, v in axes_in.items()}
    for a, v in AXIS_DEFAULTS.items():
        axes.setdefault(a, list(v))
    # a shipped task, or a user's task YAML (its id hashes its content and files, never its path)
    base = source.parent if source is not None else None
    axes["dataset"] = [data_mod.resolve_dataset(d, base=base)[0] for d in axes["dataset"]]
    axes["student"] = [str(StudentSize.parse(s)) for s in axes["student"]]
    for o in axes.get("objective", []):
        lookup(PRESETS, o, "objective")
    for i in axes["initialisation"]:
        check_initialisation_name(i)
    for a in axes["augmentation"]:
        augment_mod.resolve_pipeline(a)  # a policy name or an ordered list of them
    for s in axes["seed"]:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise StudyConfigError(f"Bad seed {s!r}: seeds are non-negative integers.")
    for axis, values in axes.items():
        if len(set(map(_label, values))) != len(values):
            raise StudyConfigError(f"Axis {axis!r} repeats a value: {values}.")

    teacher = dict(spec.get("teacher") or {})
    training = dict(spec.get("training") or {})
    validate_settings(TeacherSettings, teacher, "teacher")
    validate_settings(TrainingSettings, training, "training")
    prediction = dict(spec.get("prediction") or {})
    for key in prediction:
        lookup(prediction_mod.DEFAULTS, key, "prediction parameter")
    intermediate = _entries(spec["intermediate"], "intermediate") if "intermediate" in spec else None
    mixup = dict(spec.get("mixup") or {})
    mixup_mod.resolve(mixup)

    objective_params = dict(spec.get("objective_params") or {})
    for obj, params in objective_params.items():
        legacy_params(obj, params)
    augmentation_params = dict(spec.get("augmentation_params") or {})
    for aug, params in augmentation_params.items():
        lookup(augment_mod.AUGMENTATIONS, aug, "augmentation in augmentation_params")
        augment_mod.resolve_params(aug, params)

    exclude = []
    for i, ex in enumerate(spec.get("exclude") or []):
        if not isinstance(ex, Mapping) or not ex:
            raise StudyConfigError(f"exclude[{i}] must be a non-empty mapping of axis: value(s).")
        _check_keys(ex, tuple(axes), f"exclude[{i}]")
        norm = {}
        for k, v in ex.items():
            vals = v if isinstance(v, list) else [v]
            if k == "student":
                vals = [str(StudentSize.parse(x)) for x in vals]
            labels = [_label(x) for x in vals]
            unknown = [x for x in labels if x not in map(_label, axes[k])]
            if unknown:
                raise StudyConfigError(f"exclude[{i}].{k} names {unknown}, which is not on the axis {axes[k]}.")
            norm[k] = labels
        exclude.append(norm)
    overrides = _overrides(spec.get("overrides"), axes, base)
    group_size = spec.get("group_size", 1)
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise StudyConfigError(f"group_size must be an integer >= 1 (how many cells `study run` trains "
                               f"together unless --group-size says otherwise), got {group_size!r}.")
    grid = Grid(name=name, description=str(spec.get("description", "")), axes=axes, teacher=teacher,
                training=training, prediction=prediction, intermediate=intermediate, mixup=mixup,
                objective_params=objective_params, augmentation_params=augmentation_params,
                exclude=exclude, source=source, overrides=overrides, group_size=group_size)
    grid.cells()  # resolve every cell now: bad values fail before anything else happens
    return grid


def _overrides(value: Any, axes: dict[str, list], base) -> list[tuple[list[str], dict[str, dict[str, Any]]]]:
    """Check a grid's ``overrides`` (see the module docstring); the (datasets, settings) entries.

    Raises:
        StudyConfigError: not a list of {when: {dataset: ...}, training/teacher: {...}}, a dataset
            not on the axis, an unknown or ill-typed setting, a key that is also an axis, or two
            entries setting one key for one dataset.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise StudyConfigError(f"overrides must be a list of {{when: {{dataset: NAME}}, training: {{...}}, "
                               f"teacher: {{...}}}}, got {value!r}.")
    out, seen = [], {}
    for i, entry in enumerate(value):
        where = f"overrides[{i}]"
        if not isinstance(entry, Mapping) or "when" not in entry or not set(entry) - {"when"}:
            raise StudyConfigError(f"{where} needs 'when' and at least one of training, teacher; got {entry!r}.")
        _check_keys(entry, ("when", "training", "teacher"), where)
        when = entry["when"]
        if not isinstance(when, Mapping) or set(when) != {"dataset"}:
            raise StudyConfigError(f"{where}.when must be {{dataset: NAME or [NAMES]}} (a budget is per dataset), "
                                   f"got {when!r}.")
        names = when["dataset"] if isinstance(when["dataset"], list) else [when["dataset"]]
        datasets = [data_mod.resolve_dataset(str(d), base=base)[0] for d in names]
        absent = [d for d in datasets if d not in axes["dataset"]]
        if absent:
            raise StudyConfigError(f"{where}.when names dataset {absent[0]!r}, which is not on the dataset axis "
                                   f"{axes['dataset']}." + did_you_mean(absent[0], axes["dataset"]))
        settings = {}
        for slot, model in (("training", TrainingSettings), ("teacher", TeacherSettings)):
            if slot not in entry:
                continue
            values = entry[slot]
            if not isinstance(values, Mapping) or not values:
                raise StudyConfigError(f"{where}.{slot} must be a non-empty mapping of settings, got {values!r}.")
            validate_settings(model, values, f"{where}.{slot}")  # unknown keys and bad values, named
            for key in values:
                if f"{slot}.{key}" in axes:
                    raise StudyConfigError(f"{where}.{slot}.{key} is also the grid axis {slot}.{key}: an override "
                                           "is a fixed budget per dataset; drop one of them.")
                for d in datasets:
                    if (d, slot, key) in seen:
                        raise StudyConfigError(f"{where}.{slot}.{key} sets {d!r} again (overrides[{seen[(d, slot, key)]}] "
                                               "already does).")
                    seen[(d, slot, key)] = i
            settings[slot] = dict(values)
        out.append((datasets, settings))
    return out


def available_grids() -> list[str]:
    """Names of the grids shipped in ``study/grids/``."""
    return sorted(p.stem for p in grids_dir().glob("*.yaml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (a later value would silently replace the first)",
                key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_grid(name_or_path: str | Path) -> Grid:
    """Load a grid by shipped name (``smoke``) or by path to a YAML file.

    Raises:
        StudyConfigError: no such grid (lists the shipped ones), bad YAML (a duplicate key
            included), or bad content.
    """
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        shipped = {p.stem: p for p in grids_dir().glob("*.yaml")}
        if str(name_or_path) not in shipped:
            if path.suffix in (".yaml", ".yml"):
                raise StudyConfigError(f"Grid file {str(path)!r} does not exist.")
            lookup(shipped, str(name_or_path), "grid")
        path = shipped[str(name_or_path)]
    try:
        spec = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"Grid file {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_grid(spec, source=path)
