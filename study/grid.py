"""Grids: a YAML declaration of axes, fixed settings and excludes, expanded into cells.

A grid file (``study/grids/NAME.yaml``)::

    name: smoke
    axes:                      # the cross product of these is the set of cells
      dataset: [sst2]
      student: [L2_H384]
      objective: [ce, logit_kd]
      initialisation: [random, teacher_lower]
      augmentation: [none]
      seed: [0]
    teacher: {model: all-MiniLM-L6-v2, epochs: 2, ...}
    training: {epochs: 1, learning_rate: 1.0e-4, ...}
    objective_params: {logit_kd: {temperature: 2.0}}
    augmentation_params: {eda: {n_aug: 1}}
    exclude:                   # drop every cell matching all keys (a list matches any of its values)
      - {student: L4_H256, initialisation: [teacher_lower, teacher_upper]}

A cell's identity is every choice that changes its result and nothing else (no paths, device,
tracking URI): its id is the sha256 of the canonical JSON of that identity (sorted keys, floats
written with ``repr``), cut to 16 hex digits.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from study import augment as augment_mod
from study import data as data_mod
from study import objectives as objectives_mod
from study.models import (
    INITIALISATIONS,
    StudentSize,
    canonical_teacher,
    check_initialisation,
    load_teacher_config,
)
from study.paths import grids_dir
from study.registry import StudyConfigError, did_you_mean, lookup

AXES = ("dataset", "student", "objective", "initialisation", "augmentation", "seed")
TOP_KEYS = ("name", "description", "axes", "teacher", "training", "objective_params",
            "augmentation_params", "exclude")

#: Version of the training recipe (loop, optimiser, schedule); part of every cell's identity.
TRAINER_VERSION = "1"

TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "learning_rate": 1e-4,
    "batch_size": 32,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "max_length": 128,
    "max_train_examples": None,
    "max_eval_examples": None,
    "data_seed": 0,
}

#: The teacher's fine-tuning budget: the students' settings, with its own model, length of
#: training, learning rate and seed.
TEACHER_DEFAULTS: dict[str, Any] = {
    **TRAINING_DEFAULTS,
    "model": "all-MiniLM-L6-v2",
    "epochs": 3,
    "learning_rate": 5e-5,
    "seed": 0,
}


def _canonical(obj: Any) -> Any:
    """Canonical JSON-able form: floats via repr (stable), tuples as lists, dict keys sorted later."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    raise TypeError(f"cannot canonicalise {type(obj).__name__}: {obj!r}")


def stable_hash(identity: Mapping[str, Any], length: int = 16) -> str:
    """sha256 of the canonical JSON of ``identity`` (sorted keys), first ``length`` hex digits."""
    text = json.dumps(_canonical(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher fine-tuning: model and budget on one dataset. One cached teacher per id."""

    dataset: str
    settings: dict[str, Any]

    @cached_property
    def identity(self) -> dict[str, Any]:
        s = dict(self.settings)
        s["model"] = canonical_teacher(s["model"])
        return {"dataset": self.dataset, "teacher": s, "trainer_version": TRAINER_VERSION,
                "data_version": data_mod.VERSION}

    @cached_property
    def teacher_id(self) -> str:
        return stable_hash(self.identity)

    @property
    def model(self) -> str:
        return self.settings["model"]


@dataclass(frozen=True)
class Cell:
    """One training run of a grid: every choice that changes its result."""

    grid: str
    dataset: str
    student: str
    objective: str
    initialisation: str
    augmentation: str
    seed: int
    objective_params: dict[str, Any] = field(hash=False)
    augmentation_params: dict[str, Any] = field(hash=False)
    training: dict[str, Any] = field(hash=False)
    teacher: TeacherSpec = field(hash=False)

    @cached_property
    def identity(self) -> dict[str, Any]:
        """The choices that define this cell (what the id hashes); the grid name is not one."""
        return {
            "dataset": self.dataset,
            "student": self.student,
            "objective": {"name": self.objective, "params": self.objective_params,
                          "version": objectives_mod.OBJECTIVES[self.objective].version},
            "initialisation": self.initialisation,
            "augmentation": {"name": self.augmentation, "params": self.augmentation_params,
                             "version": augment_mod.version(self.augmentation)},
            "seed": self.seed,
            "training": self.training,
            "teacher": self.teacher.identity,
            "trainer_version": TRAINER_VERSION,
            "data_version": data_mod.VERSION,
        }

    @cached_property
    def cell_id(self) -> str:
        return stable_hash(self.identity)

    @property
    def name(self) -> str:
        """Display name, e.g. ``sst2-L2_H384-attention_kl-teacher_lower-none-s0``."""
        return (f"{self.dataset}-{self.student}-{self.objective}-{self.initialisation}-"
                f"{self.augmentation}-s{self.seed}")

    def params(self) -> dict[str, str]:
        """Flat MLflow params: every choice, with the field's names."""
        out: dict[str, Any] = {axis: getattr(self, axis) for axis in AXES}
        out["teacher"] = canonical_teacher(self.teacher.model)
        out.update(self.training)
        out.update({f"objective.{k}": v for k, v in self.objective_params.items()})
        out.update({f"augmentation.{k}": v for k, v in self.augmentation_params.items()})
        out.update({f"teacher.{k}": v for k, v in self.teacher.settings.items() if k != "model"})
        return {k: str(v) for k, v in out.items()}


@dataclass
class Grid:
    """A parsed and validated grid."""

    name: str
    description: str
    axes: dict[str, list]
    teacher: dict[str, Any]
    training: dict[str, Any]
    objective_params: dict[str, dict]
    augmentation_params: dict[str, dict]
    exclude: list[dict[str, list]]
    source: Path | None = None

    def cells(self) -> list[Cell]:
        """Expand the cross product of the axes, minus excludes, in a stable order."""
        out = []
        for values in itertools.product(*(self.axes[a] for a in AXES)):
            choice = dict(zip(AXES, values))
            if any(all(choice[k] in v for k, v in ex.items()) for ex in self.exclude):
                continue
            out.append(self._cell(choice))
        return out

    def _cell(self, choice: dict[str, Any]) -> Cell:
        objective_params = objectives_mod.resolve_params(
            choice["objective"], self.objective_params.get(choice["objective"]))
        augmentation_params = augment_mod.resolve_params(
            choice["augmentation"], self.augmentation_params.get(choice["augmentation"]))
        teacher = TeacherSpec(choice["dataset"], dict(self.teacher))
        return Cell(grid=self.name, objective_params=objective_params,
                    augmentation_params=augmentation_params, training=dict(self.training),
                    teacher=teacher, **choice)

    def teachers(self) -> list[TeacherSpec]:
        """The distinct teachers the cells need, in first-use order."""
        seen: dict[str, TeacherSpec] = {}
        for cell in self.cells():
            seen.setdefault(cell.teacher.teacher_id, cell.teacher)
        return list(seen.values())

    def validate(self) -> list[Cell]:
        """Expand and check every cell before any training; return the cells.

        Checks each (objective, student, dataset) against the teacher's architecture: a teacher_*
        initialisation needs the teacher's width, a layer mapping needs valid layer counts, an
        objective must apply to the task type.

        Raises:
            StudyConfigError: the first bad combination, naming it and what is allowed.
        """
        cells = self.cells()
        if not cells:
            raise StudyConfigError(f"Grid {self.name!r} expands to no cells (all excluded?).")
        tcfg = load_teacher_config(self.teacher["model"])
        checked: set[tuple] = set()
        for cell in cells:
            key = (cell.dataset, cell.student, cell.objective, cell.initialisation)
            if key in checked:
                continue
            checked.add(key)
            size = StudentSize.parse(cell.student)
            try:
                check_initialisation(cell.initialisation, size, tcfg)
                task = data_mod.TASKS[cell.dataset]
                objectives_mod.build_objective(
                    cell.objective, cell.objective_params, task_type=task.task_type,
                    teacher_layers=tcfg.num_hidden_layers, student_layers=size.layers,
                    teacher_hidden_size=tcfg.hidden_size, student_hidden_size=size.hidden)
            except StudyConfigError as exc:
                raise StudyConfigError(f"Grid {self.name!r}, cell {cell.name}: {exc}") from None
        return cells


def _as_list(axis: str, value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise StudyConfigError(f"Axis {axis!r} is empty: give at least one value.")
    return values


def _check_keys(given: Mapping, allowed: Mapping | tuple, where: str) -> None:
    for key in given:
        if key not in allowed:
            raise StudyConfigError(
                f"Unknown key {key!r} in {where}. Allowed: {', '.join(allowed)}."
                f"{did_you_mean(key, allowed)}")


def parse_grid(spec: Mapping[str, Any], source: Path | None = None) -> Grid:
    """Validate the names in a grid mapping (as loaded from YAML) and build a ``Grid``.

    Raises:
        StudyConfigError: a misspelt key, an unknown dataset/objective/initialisation/augmentation,
            a bad student size or seed; the message names the value and what is allowed.
    """
    if not isinstance(spec, Mapping):
        raise StudyConfigError(f"A grid must be a mapping of keys, got {type(spec).__name__}.")
    _check_keys(spec, TOP_KEYS, "the grid")
    if "name" not in spec or "axes" not in spec:
        raise StudyConfigError("A grid needs 'name' and 'axes'.")
    axes_in = spec["axes"] or {}
    _check_keys(axes_in, AXES, "axes")
    missing = [a for a in AXES if a not in axes_in]
    if missing:
        raise StudyConfigError(f"Grid axes missing: {', '.join(missing)} (every axis needs a value).")
    axes = {a: _as_list(a, axes_in[a]) for a in AXES}
    for d in axes["dataset"]:
        lookup(data_mod.TASKS, d, "dataset")
    for s in axes["student"]:
        StudentSize.parse(s)
    axes["student"] = [str(StudentSize.parse(s)) for s in axes["student"]]
    for o in axes["objective"]:
        lookup(objectives_mod.OBJECTIVES, o, "objective")
    for i in axes["initialisation"]:
        lookup(INITIALISATIONS, i, "initialisation")
    for a in axes["augmentation"]:
        lookup(augment_mod.AUGMENTATIONS, a, "augmentation")
    for s in axes["seed"]:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise StudyConfigError(f"Bad seed {s!r}: seeds are non-negative integers.")
    for axis, values in axes.items():
        if len(set(map(str, values))) != len(values):
            raise StudyConfigError(f"Axis {axis!r} repeats a value: {values}.")

    teacher = dict(TEACHER_DEFAULTS)
    _check_keys(spec.get("teacher") or {}, TEACHER_DEFAULTS, "teacher")
    teacher.update(spec.get("teacher") or {})
    training = dict(TRAINING_DEFAULTS)
    _check_keys(spec.get("training") or {}, TRAINING_DEFAULTS, "training")
    training.update(spec.get("training") or {})
    for where, settings in (("teacher", teacher), ("training", training)):
        for key in ("epochs", "batch_size", "max_length"):
            if not isinstance(settings[key], int) or settings[key] < 1:
                raise StudyConfigError(f"{where}.{key} must be a positive integer, got {settings[key]!r}.")
        for key in ("max_train_examples", "max_eval_examples"):
            v = settings[key]
            if v is not None and (not isinstance(v, int) or v < 1):
                raise StudyConfigError(f"{where}.{key} must be a positive integer or null, got {v!r}.")
        lr = settings["learning_rate"]
        if isinstance(lr, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                settings["learning_rate"] = float(lr)
            except ValueError:
                raise StudyConfigError(f"{where}.learning_rate must be a number, got {lr!r}.") from None
        settings["learning_rate"] = float(settings["learning_rate"])

    objective_params = dict(spec.get("objective_params") or {})
    for name, params in objective_params.items():
        lookup(objectives_mod.OBJECTIVES, name, "objective in objective_params")
        objectives_mod.resolve_params(name, params)
    augmentation_params = dict(spec.get("augmentation_params") or {})
    for name, params in augmentation_params.items():
        lookup(augment_mod.AUGMENTATIONS, name, "augmentation in augmentation_params")
        augment_mod.resolve_params(name, params)

    exclude = []
    for i, ex in enumerate(spec.get("exclude") or []):
        if not isinstance(ex, Mapping) or not ex:
            raise StudyConfigError(f"exclude[{i}] must be a non-empty mapping of axis: value(s).")
        _check_keys(ex, AXES, f"exclude[{i}]")
        norm = {}
        for k, v in ex.items():
            vals = v if isinstance(v, list) else [v]
            if k == "student":
                vals = [str(StudentSize.parse(x)) for x in vals]
            unknown = [x for x in vals if x not in axes[k]]
            if unknown:
                raise StudyConfigError(
                    f"exclude[{i}].{k} names {unknown}, which is not on the axis {axes[k]}.")
            norm[k] = vals
        exclude.append(norm)
    return Grid(name=str(spec["name"]), description=str(spec.get("description", "")), axes=axes,
                teacher=teacher, training=training, objective_params=objective_params,
                augmentation_params=augmentation_params, exclude=exclude, source=source)


def available_grids() -> list[str]:
    """Names of the grids shipped in ``study/grids/``."""
    return sorted(p.stem for p in grids_dir().glob("*.yaml"))


def load_grid(name_or_path: str | Path) -> Grid:
    """Load a grid by shipped name (``smoke``) or by path to a YAML file.

    Raises:
        StudyConfigError: no such grid (lists the shipped ones), bad YAML, or bad content.
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
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"Grid file {str(path)!r} is not valid YAML: {exc}") from None
    return parse_grid(spec, source=path)
