"""Parsing a grid mapping (as loaded from YAML) into a ``Grid``: the schema check of each key
(``study.grid.schema.GridFile``), then what depends on several keys: the axis values (datasets,
students, objectives, initialisations, augmentations, seeds), the excludes against the axes and
the overrides against the dataset axis; then every cell is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from study import augment as augment_mod
from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean, lookup
from study.core.schema import validate_settings
from study.grid.cell import label
from study.grid.expansion import Grid
from study.grid.schema import GridFile
from study.grid.stages import GENERAL_INITIALISATION, SCHEDULES
from study.models import StudentSize, check_initialisation_name
from study.objectives.presets import PRESETS
from study.tasks import catalogue as data_mod

#: The slots an axis takes when the grid does not name it.
AXIS_DEFAULTS: dict[str, list] = {"initialisation": ["random"], "augmentation": ["none"], "seed": [0]}


def parse_grid(spec: Mapping[str, Any], source: Path | None = None) -> Grid:
    """Validate the names in a grid mapping (as loaded from YAML) and build a ``Grid``.

    Every cell is resolved here, so a bad value anywhere (an unknown component, a parameter out
    of range, a bad learning rate) fails before any training. A task YAML named on the dataset
    axis is read relative to ``source``'s folder.

    Raises:
        StudyConfigError: a misspelt key or axis, an unknown dataset/objective/initialisation/
            augmentation, a bad student size, seed, grid name or setting; the message names the
            value and what is allowed.
    """
    if not isinstance(spec, Mapping):
        raise StudyConfigError(f"A grid must be a mapping of keys, got {type(spec).__name__}.")
    top = validate_settings(GridFile, spec, "the grid")
    base = source.parent if source is not None else None
    axes = _axes(top["axes"], base)
    grid = Grid(name=top["name"], description=str(top["description"]), axes=axes, teacher=top["teacher"],
                training=top["training"], prediction=top["prediction"],
                intermediate=top["intermediate"], mixup=top["mixup"],
                objective_params=top["objective_params"], augmentation_params=top["augmentation_params"],
                exclude=[_exclude(ex, axes, f"exclude[{i}]") for i, ex in enumerate(top["exclude"])],
                source=source, overrides=_overrides(top["overrides"], axes, base), group_size=top["group_size"],
                keep_student=top["keep_student"], general=top["general"])
    grid.cells()  # resolve every cell now: bad values fail before anything else happens
    return grid


def _axes(given: dict[str, Any], base: Path | None) -> dict[str, list]:
    """Each axis as a list of values, defaults added, every slot value checked; datasets become
    their catalogue names (a user's task YAML: a name that hashes its content, never its path)."""
    axes = {a: _as_list(a, v) for a, v in given.items()}
    for a, v in AXIS_DEFAULTS.items():
        axes.setdefault(a, list(v))
    axes["dataset"] = [data_mod.resolve_dataset(d, base=base)[0] for d in axes["dataset"]]
    axes["student"] = [str(StudentSize.parse(s)) for s in axes["student"]]
    for o in axes.get("objective", []):
        lookup(PRESETS, o, "objective")
    for i in axes["initialisation"]:
        if i != GENERAL_INITIALISATION:  # a general stage first (study.grid.stages)
            check_initialisation_name(i)
    for schedule in axes.get("schedule", []):
        lookup(SCHEDULES, schedule, "schedule")
    for a in axes["augmentation"]:
        augment_mod.resolve_pipeline(a)  # a policy name or an ordered list of them
    for s in axes["seed"]:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise StudyConfigError(f"Bad seed {s!r}: seeds are non-negative integers.")
    for axis, values in axes.items():
        if len(set(map(label, values))) != len(values):
            raise StudyConfigError(f"Axis {axis!r} repeats a value: {values}.")
    return axes


def _as_list(axis: str, value: Any) -> list:
    values = value if isinstance(value, list) else [value]
    if axis == "intermediate" and isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        values = [value]  # one list of entries, not a list of alternatives
    if not values:
        raise StudyConfigError(f"Axis {axis!r} is empty: give at least one value.")
    return values


def _exclude(ex: dict[str, Any], axes: dict[str, list], where: str) -> dict[str, list[str]]:
    """An exclude entry as {axis: [value labels]}; every key an axis, every value on it."""
    out = {}
    for k, v in ex.items():
        if k not in axes:
            raise StudyConfigError(f"Unknown key {k!r} in {where}. Allowed: {', '.join(axes)}."
                                   f"{did_you_mean(k, axes)}")
        values = v if isinstance(v, list) else [v]
        if k == "student":
            values = [str(StudentSize.parse(x)) for x in values]
        labels = [label(x) for x in values]
        unknown = [x for x in labels if x not in map(label, axes[k])]
        if unknown:
            raise StudyConfigError(f"{where}.{k} names {unknown}, which is not on the axis {axes[k]}.")
        out[k] = labels
    return out


def _overrides(entries: list[dict[str, Any]], axes: dict[str, list],
               base: Path | None) -> list[tuple[list[str], dict[str, dict[str, Any]]]]:
    """The (datasets, settings) of each ``overrides`` entry (shapes checked by the schema).

    Raises:
        StudyConfigError: a dataset not on the axis, a key that is also an axis, or two entries
            setting one key for one dataset.
    """
    out, seen = [], {}
    for i, entry in enumerate(entries):
        where = f"overrides[{i}]"
        datasets = [data_mod.resolve_dataset(str(d), base=base)[0] for d in entry["datasets"]]
        absent = [d for d in datasets if d not in axes["dataset"]]
        if absent:
            raise StudyConfigError(f"{where}.when names dataset {absent[0]!r}, which is not on the dataset axis "
                                   f"{axes['dataset']}." + did_you_mean(absent[0], axes["dataset"]))
        settings = {slot: entry[slot] for slot in ("training", "teacher") if slot in entry}
        for slot, values in settings.items():
            for key in values:
                if f"{slot}.{key}" in axes:
                    raise StudyConfigError(f"{where}.{slot}.{key} is also the grid axis {slot}.{key}: an override "
                                           "is a fixed budget per dataset; drop one of them.")
                for d in datasets:
                    if (d, slot, key) in seen:
                        raise StudyConfigError(f"{where}.{slot}.{key} sets {d!r} again (overrides[{seen[(d, slot, key)]}] "
                                               "already does).")
                    seen[(d, slot, key)] = i
        out.append((datasets, settings))
    return out
