"""Splitting a task's examples: the seeded split rule of a task YAML (``split:``) and the seeded
training-set subsample of a cell."""

from __future__ import annotations

import numpy as np

from study.core.errors import StudyConfigError
from study.tasks.spec import Split, TaskSpec


def apply_split(spec: TaskSpec, split: Split, groups: list[str]) -> dict[str, Split]:
    """The parts of ``spec.split`` (a ``SplitRule``) of ``split``: deterministic in (examples,
    groups, seed), disjoint, covering; ``groups`` holds each example's ``group_by`` value.

    Raises:
        StudyConfigError: a part would be empty (names the task and the part).
    """
    rule = spec.split
    if rule.group_by:
        units = list(dict.fromkeys(groups))
        index = {g: i for i, g in enumerate(units)}
        unit_of = np.array([index[g] for g in groups], dtype=np.int64)
        n_units = len(units)
    else:
        n_units = len(split)
        unit_of = np.arange(n_units)
    perm = np.random.default_rng(rule.seed).permutation(n_units)
    part_of_unit = np.empty(n_units, dtype=np.int64)
    start = 0
    for k, (name, fraction) in enumerate(rule.fractions):
        count = n_units - start if k == len(rule.fractions) - 1 else int(round(fraction * n_units))
        part_of_unit[perm[start:start + count]] = k
        start += count
    part_of = part_of_unit[unit_of]
    out = {}
    for k, (name, _) in enumerate(rule.fractions):
        keep = np.flatnonzero(part_of == k)
        if len(keep) == 0:
            raise StudyConfigError(f"Task {spec.name!r}: the seeded split of {rule.source!r} ({n_units} "
                                   f"units) leaves {name!r} empty; use larger fractions or more data.")
        out[name] = Split(texts=[split.texts[i] for i in keep], labels=[split.labels[i] for i in keep])
    return out


def subsample(split: Split, n: int | None, seed: int) -> Split:
    """Return ``n`` examples drawn without replacement with ``numpy.random.default_rng(seed)``.

    The chosen examples keep their original relative order, so the result depends only on
    (split, n, seed). ``n`` None or ``n >= len(split)`` returns ``split`` unchanged.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n is None or n >= len(split):
        return split
    if n < 0:
        raise ValueError(f"subsample size must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(split), size=n, replace=False))
    return Split(
        texts=[split.texts[i] for i in keep],
        labels=[split.labels[i] for i in keep],
    )
