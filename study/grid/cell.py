"""A cell: one training run of a grid, every slot resolved, and its identity.

A cell's identity is every resolved choice and each component's version, nothing else (no paths,
device, tracking URI, grid name): its id is the sha256 of the canonical JSON of that identity
(sorted keys, floats written with ``repr``), cut to 16 hex digits (``study.core.hashing``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from study import augment as augment_mod
from study.core.hashing import stable_hash
from study.models import INIT_VERSION, initialisation_identity, teacher_identity
from study.objectives import mixup as mixup_mod
from study.objectives import prediction as prediction_mod
from study.objectives.distillation import Distillation, ModelDims
from study.objectives.intermediate import entry_versions
from study.tasks import catalogue as data_mod

#: The display name's leading parts, always logged as params (older stores and reports read them).
NAME_PARTS = ("dataset", "student", "objective", "initialisation", "augmentation")

#: Version of the training recipe (loop, optimiser, schedule); part of every cell's identity.
#: 2: features from Q/K/V hooks before attention dropout; alpha weighs the teacher term.
TRAINER_VERSION = "2"

#: The precision every cell ran in before it was a setting; it stays out of identities.
DEFAULT_PRECISION = "fp32"


def without_default_precision(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without ``precision`` when it is the default fp32 (so ids from before the
    setting stand); any other precision stays and changes the id."""
    if settings.get("precision", DEFAULT_PRECISION) == DEFAULT_PRECISION:
        return {k: v for k, v in settings.items() if k != "precision"}
    return dict(settings)


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher fine-tuning: model and budget on one dataset. One cached teacher per id."""

    dataset: str
    settings: dict[str, Any]

    @cached_property
    def identity(self) -> dict[str, Any]:
        """The fine-tuning's identity; which checkpoint a cell reads is the cell's choice (one
        fine-tuning keeps every checkpoint), so ``checkpoint`` is not part of it."""
        s = without_default_precision({k: v for k, v in self.settings.items() if k != "checkpoint"})
        s["model"] = teacher_identity(s["model"])  # never a path: a local folder is its weights' hash
        return {"dataset": self.dataset, "teacher": s, "trainer_version": TRAINER_VERSION,
                "data_version": data_mod.VERSION, **data_mod.version_identity(self.dataset)}

    @cached_property
    def teacher_id(self) -> str:
        return stable_hash(self.identity)

    @property
    def model(self) -> str:
        return self.settings["model"]

    @property
    def precision(self) -> str:
        """The fine-tuning's precision, which its logit cache and its passes in a cell use too."""
        return self.settings.get("precision", DEFAULT_PRECISION)

    @property
    def checkpoint(self) -> str:
        """``last``, ``best_metric`` or ``lowest_loss`` (``study.execution.teacher.CHECKPOINTS``)."""
        return self.settings.get("checkpoint", "last")


def label(value: Any) -> str:
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
    #: ``study.grid.stages``: how the cell's objective is staged, and the stages before its own
    schedule: str = "one_stage"
    stages: tuple = field(hash=False, default=())

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
            "augmentation": augmentation_identity(self.augmentation_steps),
            "training": without_default_precision(self.training),
            "teacher": self.teacher.identity,
            # the final weights keep the identity cells had before checkpoints could be chosen
            **({"teacher_checkpoint": self.teacher.checkpoint} if self.teacher.checkpoint != "last" else {}),
            "trainer_version": TRAINER_VERSION,
            "initialisation_version": INIT_VERSION,
            "data_version": data_mod.VERSION,
            **data_mod.version_identity(self.dataset),
            # a cell in one stage keeps the identity it had before stages (study.grid.stages)
            **({"stages": [s.stage_id for s in self.stages]} if self.stages else {}),
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
        out["schedule"] = self.schedule
        out["stages.count"] = len(self.stages)
        for i, stage in enumerate(self.stages):
            out.update({f"stages.{i}.kind": stage.kind, f"stages.{i}.id": stage.stage_id, f"stages.{i}.data": stage.data})
            if stage.kind == "general":
                out.update({f"general.{k}": v for k, v in stage.training.items()})
                out["general.corpus"] = stage.data
                out["general.initialisation"] = stage.initialisation
                out["general.intermediate"] = label(list(stage.intermediate))
        out.update(self.factors)
        return {k: str(v) for k, v in out.items()}

    def build_objective(self, task_type: str, student: ModelDims, teacher: ModelDims,
                        train_size: int = 0) -> Distillation:
        """The cell's ``Distillation`` for models of these dimensions."""
        return Distillation(self.prediction, self.intermediate, task_type=task_type, student=student,
                            teacher=teacher, train_size=train_size)


_MODEL_PARAMS = ("model", "forward_model", "backward_model")


def augmentation_identity(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The augmentation part of a cell's identity. One policy keeps the form it had before
    pipelines (name, params, version), so those cells keep their ids; a model given as a local
    folder enters as its weights' hash, never as a path."""
    steps = [{"name": s["name"], "params": {k: teacher_identity(v) if k in _MODEL_PARAMS and isinstance(v, str) else v
                                            for k, v in s["params"].items()}} for s in steps]
    if len(steps) <= 1:
        name = steps[0]["name"] if steps else "none"
        return {"name": name, "params": steps[0]["params"] if steps else {}, "version": augment_mod.version(name)}
    return {"name": augment_mod.pipeline_label(steps), "steps": steps, "version": augment_mod.pipeline_version(steps)}
