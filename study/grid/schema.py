"""The grid file's schema: the budgets (``TrainingSettings``, ``TeacherSettings``), the top-level
keys (``GridFile``) and the axis names; validated through ``study.core.schema``.

What is checked here is each key on its own (its type, its names, its values' ranges); what
depends on other keys (an exclude naming an axis value, an override naming a dataset on the
axis) is checked when the grid is parsed (``study.grid.parse``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationInfo, field_validator

from study import augment as augment_mod
from study.core import contract
from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean, lookup
from study.core.schema import integer, validate_settings
from study.objectives import mixup as mixup_mod
from study.objectives import prediction as prediction_mod
from study.objectives.presets import legacy_params

#: Axes that name a whole slot (the others are dotted: prediction.K, intermediate.K, ...).
SLOT_AXES = ("dataset", "student", "objective", "initialisation", "augmentation", "seed", "intermediate", "schedule")
DOTTED_ROOTS = ("prediction", "intermediate", "mixup", "teacher", "training", "general")
REQUIRED_AXES = ("dataset", "student")

PosInt = Annotated[int, Strict(), Field(gt=0)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class TrainingSettings(BaseModel):
    """A training budget; every field is part of the identity (``precision`` only when it is not
    the default fp32, so cells from before it keep their ids). Learning rate in 1/step units."""

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
    #: autocast precision (``study.core.device``); fp32, the default, stays out of the identity
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


class TeacherSettings(TrainingSettings):
    """The teacher's fine-tuning: its model (a known alias, a hub id or a local directory) and budget."""

    model: Annotated[str, Field(min_length=1)] = "all-MiniLM-L6-v2"
    checkpoint: Literal["last", "best_metric", "lowest_loss"] = "last"
    epochs: PosInt = 3
    learning_rate: PosFloat = 5e-5
    seed: NonNegInt = 0


class GeneralSettings(BaseModel):
    """The general (task-agnostic) stage: its corpus, objective, start and budget. Every field but
    ``objective``/``intermediate`` (which resolve to entries) is part of the stage's identity as
    given. Learning rate in 1/step units; ``max_steps`` caps the optimiser steps (None: every
    packed block, ``epochs`` times); ``max_length`` is the packed block length in tokens."""

    model_config = ConfigDict(extra="forbid")
    corpus: Annotated[str, Field(min_length=1)] = "wiki-offline"
    objective: str | None = "minilm_v2"
    intermediate: Any = None  # entries; replaces the objective's when given
    prediction: dict[str, Any] | None = None  # masked-LM KD slot (DistilBERT); None: no prediction-layer term
    initialisation: str = "random"
    epochs: PosInt = 1
    max_steps: PosInt | None = None
    learning_rate: PosFloat = 5e-4
    batch_size: PosInt = 32
    warmup_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.06
    weight_decay: NonNegFloat = 0.01
    max_grad_norm: PosFloat = 1.0
    max_length: PosInt = 128
    #: blocks held out of the packed corpus for the stage's dev loss (every ``dev_every``-th block)
    dev_every: PosInt = 50
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


TRAINING_DEFAULTS: dict[str, Any] = TrainingSettings().model_dump()
TEACHER_DEFAULTS: dict[str, Any] = TeacherSettings().model_dump()
GENERAL_DEFAULTS: dict[str, Any] = GeneralSettings().model_dump()

#: ``keep_student``: which trained students are saved as their runs' artifacts (not part of any cell).
KEEP_STUDENT = ("none", "all")

GroupSize = integer(1, "an integer >= 1 (how many cells `study run` trains together unless "
                       "--group-size says otherwise)")


class GridFile(BaseModel):
    """A grid file's top level (the package docstring describes each key). Each key is checked
    on its own; ``validate_settings(GridFile, spec, "the grid")`` returns them with defaults."""

    model_config = ConfigDict(extra="forbid")
    name: Any
    description: Any = ""
    axes: Any
    teacher: dict[str, Any] | None = Field(default_factory=dict)
    training: dict[str, Any] | None = Field(default_factory=dict)
    prediction: dict[str, Any] | None = Field(default_factory=dict)
    intermediate: Any = None  # None: the preset's entries; see ``entries``
    mixup: dict[str, Any] | None = Field(default_factory=dict)
    #: the general (task-agnostic) stage's settings (``GeneralSettings``; ``study.grid.stages``)
    general: dict[str, Any] | None = Field(default_factory=dict)
    objective_params: dict[str, Any] | None = Field(default_factory=dict)
    augmentation_params: dict[str, Any] | None = Field(default_factory=dict)
    exclude: list[Any] | None = Field(default_factory=list)
    overrides: Any = Field(default_factory=list)
    group_size: GroupSize = 1
    keep_student: Literal[KEEP_STUDENT] = "none"

    @field_validator("name")
    @classmethod
    def _name(cls, value: Any) -> str:
        name = str(value) if value is not None else ""
        try:
            contract.membership_tag(name)
        except ValueError as exc:
            raise StudyConfigError(str(exc)) from None
        return name

    @field_validator("axes")
    @classmethod
    def _axes(cls, value: Any) -> dict[str, Any]:
        value = value or {}
        if not isinstance(value, Mapping):
            raise StudyConfigError(f"'axes' must be a mapping of axis: values, got {value!r}.")
        for axis in value:
            check_axis_name(str(axis))
        missing = [a for a in REQUIRED_AXES if a not in value]
        if missing:
            raise StudyConfigError(f"Grid axes missing: {', '.join(missing)} (every grid names its datasets and "
                                   "students).")
        return dict(value)

    @field_validator("teacher", "training", "prediction", "mixup", "objective_params", "augmentation_params",
                     "general")
    @classmethod
    def _slot(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any]:
        value = dict(value or {})
        SLOT_CHECKS[info.field_name](value)
        return value

    @field_validator("intermediate")
    @classmethod
    def _intermediate(cls, value: Any) -> list[dict[str, Any]]:
        return entries(value, "intermediate")  # given: a list (none is []); absent: None, the preset's

    @field_validator("exclude")
    @classmethod
    def _exclude(cls, value: list[Any] | None) -> list[dict[str, Any]]:
        for i, ex in enumerate(value or []):
            if not isinstance(ex, Mapping) or not ex:
                raise StudyConfigError(f"exclude[{i}] must be a non-empty mapping of axis: value(s).")
        return [dict(ex) for ex in value or []]

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: Any) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise StudyConfigError(f"overrides must be a list of {{when: {{dataset: NAME}}, training: {{...}}, "
                                   f"teacher: {{...}}}}, got {value!r}.")
        return [check_override(entry, f"overrides[{i}]") for i, entry in enumerate(value)]


def entries(value: Any, where: str) -> list[dict[str, Any]]:
    """An ``intermediate`` value: a list of entry mappings, one mapping, or ``none``/``[]``.

    Raises:
        StudyConfigError: anything else.
    """
    if value in (None, "none", []):
        return []
    if isinstance(value, Mapping):
        return [dict(value)]
    if isinstance(value, list) and all(isinstance(e, Mapping) for e in value):
        return [dict(e) for e in value]
    raise StudyConfigError(f"{where}: an intermediate value is a list of entries such as "
                           f"[{{features: hidden, loss: mse}}], one entry, or none; got {value!r}.")


def _prediction_keys(values: dict[str, Any]) -> None:
    for key in values:
        lookup(prediction_mod.DEFAULTS, key, "prediction parameter")


def _objective_params(values: dict[str, Any]) -> None:
    for objective, params in values.items():
        legacy_params(objective, params)


def _augmentation_params(values: dict[str, Any]) -> None:
    for policy, params in values.items():
        lookup(augment_mod.AUGMENTATIONS, policy, "augmentation in augmentation_params")
        augment_mod.resolve_params(policy, params)


#: How each fixed slot of a grid file is checked (values that are partial: defaults come later).
SLOT_CHECKS = {
    "teacher": lambda v: validate_settings(TeacherSettings, v, "teacher"),
    "training": lambda v: validate_settings(TrainingSettings, v, "training"),
    "general": lambda v: validate_settings(GeneralSettings, v, "general"),
    "prediction": _prediction_keys,
    "mixup": mixup_mod.resolve,
    "objective_params": _objective_params,
    "augmentation_params": _augmentation_params,
}

_OVERRIDE_SLOTS = {"training": TrainingSettings, "teacher": TeacherSettings}


def check_override(entry: Any, where: str) -> dict[str, Any]:
    """One ``overrides`` entry's shape: ``{when: {dataset: NAME or [NAMES]}, training/teacher:
    {settings}}``; returns ``{"datasets": [names as written], "training": ..., "teacher": ...}``.

    Raises:
        StudyConfigError: a missing or unknown key, a ``when`` on anything but datasets, an empty,
            unknown or ill-typed setting.
    """
    if not isinstance(entry, Mapping) or "when" not in entry or not set(entry) - {"when"}:
        raise StudyConfigError(f"{where} needs 'when' and at least one of training, teacher; got {entry!r}.")
    for key in entry:
        if key not in ("when", *_OVERRIDE_SLOTS):
            raise StudyConfigError(f"Unknown key {key!r} in {where}. Allowed: when, training, teacher."
                                   f"{did_you_mean(key, ('when', *_OVERRIDE_SLOTS))}")
    when = entry["when"]
    if not isinstance(when, Mapping) or set(when) != {"dataset"}:
        raise StudyConfigError(f"{where}.when must be {{dataset: NAME or [NAMES]}} (a budget is per dataset), "
                               f"got {when!r}.")
    out: dict[str, Any] = {"datasets": when["dataset"] if isinstance(when["dataset"], list) else [when["dataset"]]}
    for slot, model in _OVERRIDE_SLOTS.items():
        if slot in entry:
            values = entry[slot]
            if not isinstance(values, Mapping) or not values:
                raise StudyConfigError(f"{where}.{slot} must be a non-empty mapping of settings, got {values!r}.")
            validate_settings(model, values, f"{where}.{slot}")  # unknown keys and bad values, named
            out[slot] = dict(values)
    return out


def check_axis_name(axis: str) -> None:
    """Raise StudyConfigError unless ``axis`` is a slot axis or a known dotted parameter."""
    if axis in SLOT_AXES:
        return
    root, _, rest = str(axis).partition(".")
    if root not in DOTTED_ROOTS or not rest:
        allowed = [*SLOT_AXES, *(f"{r}.K" for r in DOTTED_ROOTS)]
        raise StudyConfigError(f"Unknown axis {axis!r}. Allowed: {', '.join(allowed)}.{did_you_mean(axis, SLOT_AXES)}")
    if root in ("teacher", "training"):
        allowed = TEACHER_DEFAULTS if root == "teacher" else TRAINING_DEFAULTS
        if rest not in allowed:
            raise StudyConfigError(f"Unknown key {rest!r} in {root} (axis {root}.K). Allowed: {', '.join(allowed)}."
                                   f"{did_you_mean(rest, allowed)}")
    elif root == "general":
        if rest not in GENERAL_DEFAULTS:
            raise StudyConfigError(f"Unknown key {rest!r} in general (axis general.K). Allowed: "
                                   f"{', '.join(GENERAL_DEFAULTS)}.{did_you_mean(rest, GENERAL_DEFAULTS)}")
    elif root == "prediction":
        lookup(prediction_mod.DEFAULTS, rest, "prediction parameter (axis prediction.K)")
    elif root == "mixup":
        lookup(mixup_mod.DEFAULTS, rest, "mixup parameter (axis mixup.K)")
    elif root == "intermediate":
        index, _, key = rest.partition(".")
        if key and not index.isdigit():
            raise StudyConfigError(f"Axis {axis!r}: write intermediate.K or intermediate.N.K (N an entry index).")
