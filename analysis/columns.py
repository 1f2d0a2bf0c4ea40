"""Column names and levels, checked once for the whole package: does a table have the columns a
function needs (with a did-you-mean), do they play one role each, and which levels a factor has."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from study.core.registry import did_you_mean


def column_list(names: Iterable[str] | str) -> list[str]:
    """``"a, b"`` or ``["a", " b", ""]`` -> ``["a", "b"]``: names from a comma string or a list."""
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n and n.strip()]


def require_columns(
    columns: Iterable[object],
    wanted: Sequence[tuple[str, str]],
    source: str = "the table",
    error: type[Exception] = ValueError,
) -> None:
    """Raise unless every ``(role, name)`` of ``wanted`` names one of ``columns`` (role may be "").

    The message names the role and the column, lists the available columns and the closest
    one, e.g. ``factor column 'objectiv' is not in the table. Available columns: ... Did you
    mean 'objective'?``.

    Raises:
        ``error`` (default ``ValueError``): the first missing column.
    """
    columns = list(columns)
    available = [str(c) for c in columns]
    for role, name in wanted:
        if name not in columns:
            raise error(f"{f'{role} ' if role else ''}column {name!r} is not in {source}. Available columns: "
                        f"{', '.join(available)}.{did_you_mean(name, available)}")


def check_roles(columns: Iterable[object], metric: str, factors: Sequence[str], block: Sequence[str],
                source: str = "the table") -> None:
    """Raise ``ValueError`` unless metric, factors and block are distinct columns of ``columns``
    and there is at least one factor (messages as ``require_columns``; a column given two roles
    is named with both)."""
    if not factors:
        raise ValueError("no factors given: name at least one column whose effect to analyse")
    require_columns(columns, [("metric", metric), *(("factor", f) for f in factors),
                              *(("block", b) for b in block)], source)
    seen: dict[str, str] = {}
    for role, names in (("metric", [metric]), ("factor", factors), ("block", block)):
        for name in names:
            if name in seen:
                raise ValueError(
                    f"column {name!r} is given as both {seen[name]} and {role}: "
                    "a column can play one role only"
                )
            seen[name] = role


def observed_levels(series: pd.Series) -> list:
    """The levels that occur in ``series``: in category order for a categorical, else sorted."""
    observed = set(series.dropna().unique())
    if isinstance(series.dtype, pd.CategoricalDtype):
        return [lv for lv in series.cat.categories if lv in observed]
    return sorted(observed, key=lambda v: (str(type(v)), v))
