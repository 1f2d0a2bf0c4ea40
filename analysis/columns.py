"""The one check that a table has the columns a function needs, with a did-you-mean."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from study.core.registry import did_you_mean


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
