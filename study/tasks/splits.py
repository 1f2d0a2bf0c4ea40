"""Splitting a task's examples: the seeded split rule of a task YAML (``split:``) and the seeded
training-set subsample of a cell."""

from __future__ import annotations

import re

import numpy as np

from study.core.errors import StudyConfigError
from study.tasks.spec import Split, TaskSpec

#: The length of a shared word span that marks two passages as overlapping: the contamination test
#: of GPT-3 (Brown et al. 2020, appendix C).
LEAK_NGRAM = 13
_WORD = re.compile(r"\w+")


def word_spans(text: str, n: int = LEAK_NGRAM) -> set[str]:
    """The ``n``-word spans of ``text`` (lower-cased ``\\w+`` words joined by one space)."""
    words = _WORD.findall(text.lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def apply_split(spec: TaskSpec, split: Split, groups: list[str]) -> dict[str, Split]:
    """The parts of ``spec.split`` (a ``SplitRule``) of ``split``: deterministic in (examples,
    groups, seed), disjoint; ``groups`` holds each example's ``group_by`` value. They cover the
    examples, except with ``held_out``: an example of another part whose passage (its last text
    field) shares a ``LEAK_NGRAM``-word span with a passage of the held-out part is dropped (BoolQ
    holds edits of one Wikipedia paragraph, which a split by exact passage puts on both sides).

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
    if rule.held_out is not None:
        part_of = _drop_overlaps(split, part_of, [name for name, _ in rule.fractions].index(rule.held_out))
    out = {}
    for k, (name, _) in enumerate(rule.fractions):
        keep = np.flatnonzero(part_of == k)
        if len(keep) == 0:
            raise StudyConfigError(f"Task {spec.name!r}: the seeded split of {rule.source!r} ({n_units} "
                                   f"units) leaves {name!r} empty; use larger fractions or more data.")
        out[name] = Split(texts=[split.texts[i] for i in keep], labels=[split.labels[i] for i in keep])
    return out


def _drop_overlaps(split: Split, part_of: np.ndarray, held: int) -> np.ndarray:
    """``part_of`` with -1 (dropped) for every example outside part ``held`` whose last text field
    shares a ``LEAK_NGRAM``-word span with one of part ``held``'s."""
    passages = [texts[-1] for texts in split.texts]
    spans: set[str] = set()
    for text in dict.fromkeys(passages[i] for i in np.flatnonzero(part_of == held)):
        spans |= word_spans(text)
    leaks = {text for text in dict.fromkeys(passages[i] for i in np.flatnonzero(part_of != held))
             if not word_spans(text).isdisjoint(spans)}
    out = part_of.copy()
    out[[i for i, text in enumerate(passages) if part_of[i] != held and text in leaks]] = -1
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
