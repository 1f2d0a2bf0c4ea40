"""Name lookup with "did you mean" errors, shared by every plug-in table (objectives, tasks, ...)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from study.core.errors import StudyConfigError

T = TypeVar("T")


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``table[name]``.

    Raises:
        StudyConfigError: ``name`` is not a key; the message lists the allowed keys and the
            closest one.
    """
    if name in table:
        return table[name]
    allowed = ", ".join(sorted(table))
    raise StudyConfigError(
        f"Unknown {kind} {name!r}. Allowed: {allowed}.{did_you_mean(name, table)}"
    )
