"""Read any results CSV into the tidy form the analysis expects, and the Distiller table.

``load_csv`` is the door for results that did not come from this package's MLflow store (a
published table, another lab's sweep): one row per run, a numeric metric column, and factor and
block columns that become categoricals. Everything it refuses, it refuses with a ``ValueError``
that names the bad column or value and what is allowed; the CLI turns those into exit code 2.

``load_distiller`` reads the results table released with He et al. (2021), "Distiller: A
Systematic Study of Model Distillation Methods in Natural Language Processing", and joins the
teachers' scores from ``teacher_baseline.csv``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.columns import check_roles, column_list

log = logging.getLogger(__name__)

SHARED_DIR_ENV = "STUDY_SHARED_DIR"
DISTILLER_SUBDIR = Path("data") / "published" / "distiller"
DISTILLER_TABLE = "auto_distiller_tabular_data.csv"
DISTILLER_TEACHERS = "teacher_baseline.csv"

#: The KD choices the Distiller search varied, as this package analyses them.
DISTILLER_FACTORS = ("intermediate_loss_type", "intermediate_strategy", "kd_loss_type", "mixup")
#: What a Distiller run is compared within: the task, the student and the teacher.
DISTILLER_BLOCK = ("task", "Model", "Teacher")
#: Columns counting augmentation steps of each kind (0 = not used).
DISTILLER_AUG_COLUMNS = ("contextual", "backtranslation", "random")


def _level_order(values: pd.Series) -> list[str]:
    """Levels sorted numerically when they all parse as numbers, else alphabetically."""
    levels = list(pd.unique(values))
    numeric = pd.to_numeric(pd.Series(levels), errors="coerce")
    if numeric.notna().all():
        return [lv for _, lv in sorted(zip(numeric, levels))]
    return sorted(levels)


def load_csv(
    path: str | os.PathLike,
    metric: str,
    factors: Sequence[str] | str,
    block: Sequence[str] | str = (),
) -> pd.DataFrame:
    """Read a results CSV with one row per run.

    Args:
        path: the CSV (a leading UTF-8 byte-order mark is ignored).
        metric: the numeric column to analyse (higher is better is assumed downstream).
        factors: the KD choices whose effect to analyse; a list or a comma string.
        block: columns the comparison is made within (dataset, student, ...); may be empty.

    Returns:
        The table with every column of the file. Factor and block columns are categoricals of
        their values as written in the file (so ``TRUE``/``FALSE`` and ``0.9`` stay as written),
        ordered numerically where every level is a number, else alphabetically; ``metric`` is
        float. ``df.attrs["load_notes"]`` lists what was dropped, one sentence each.

    Rows with an empty metric, factor or block are dropped and the count is logged and noted.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty, not UTF-8 text or not parseable as CSV (the message names
            it); a metric, factor or block column is missing (the message lists the columns and
            the closest name), a column is given two roles, the metric has a non-numeric or
            infinite value (the message shows it and its line), no row is left, or a factor has
            a single level.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such CSV file: {path}")
    factors, block = column_list(factors), column_list(block)
    header = _read(path, nrows=0)
    header.columns = [str(c).strip() for c in header.columns]
    check_roles(header.columns, metric, factors, block, source=str(path))

    as_text = {c: str for c in [metric, *factors, *block]}
    df = _read(path, dtype=as_text, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    df[metric] = _parse_metric(df[metric], metric, path)
    df, notes = _drop_incomplete(df, metric, [*factors, *block])
    if df.empty:
        raise ValueError(f"no run left in {path} after dropping rows with missing values")
    for col in [*factors, *block]:
        df[col] = pd.Categorical(df[col], categories=_level_order(df[col]))
    for col in factors:
        levels = df[col].cat.categories
        if len(levels) < 2:
            raise ValueError(
                f"factor {col!r} has a single level {levels[0]!r}: it cannot explain anything; "
                "drop it"
            )
    for note in notes:
        log.info("%s: %s", path.name, note)
    df.attrs["load_notes"] = notes
    return df


def _parse_metric(raw: pd.Series, metric: str, path: Path) -> pd.Series:
    """The metric column (text as read) as floats; an empty cell is NaN. Refuses text and
    infinities, naming the first bad value and its line in ``path``."""
    raw = raw.str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw != "")
    if bad.any():
        first = bad.idxmax()
        raise ValueError(
            f"metric column {metric!r} is not numeric: {path} line {first + 2} holds {raw[first]!r} "
            f"({int(bad.sum())} such value(s)); choose a numeric column"
        )
    infinite = np.isinf(values)
    if infinite.any():
        first = infinite.idxmax()
        raise ValueError(
            f"metric column {metric!r} is not finite: {path} line {first + 2} holds "
            f"{raw[first]!r} ({int(infinite.sum())} such value(s)); a score must be a finite "
            "number (leave the cell empty for a run with no score)"
        )
    return values.astype(float)


def _drop_incomplete(df: pd.DataFrame, metric: str, columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """``df`` without the rows lacking the metric or a value of ``columns`` (stripped text), and
    one note per kind of row dropped."""
    notes: list[str] = []
    missing = df[metric].isna()
    if missing.any():
        notes.append(f"dropped {int(missing.sum())} row(s) with no {metric!r} value")
        df = df[~missing]
    for col in columns:
        df[col] = df[col].str.strip()
    empty = df[columns].isna().any(axis=1) | (df[columns] == "").any(axis=1)
    if empty.any():
        notes.append(f"dropped {int(empty.sum())} row(s) with an empty factor or block value")
        df = df[~empty]
    return df.reset_index(drop=True), notes


def _read(path: Path, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` (UTF-8, BOM ignored) whose refusals name the file: an empty file, bytes
    that are not UTF-8 text (with the line), rows the parser cannot split."""
    try:
        return pd.read_csv(path, encoding="utf-8-sig", **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: a results CSV needs a header line and one row per run") from None
    except UnicodeDecodeError as exc:
        raw = path.read_bytes()
        line = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path} is not a UTF-8 text CSV: line {line} holds byte "
                         f"{raw[exc.start:exc.start + 1]!r}; give a results CSV (UTF-8, comma-separated, "
                         "one row per run)") from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path} is not a valid CSV ({' '.join(str(exc).split())}); give a results "
                         "CSV (comma-separated, a header line, one row per run)") from None


def shared_dir() -> Path:
    """The shared data folder: ``$STUDY_SHARED_DIR``, else ``shared/`` beside the project."""
    env = os.environ.get(SHARED_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


def distiller_path() -> Path:
    """Where the Distiller results table is expected."""
    return shared_dir() / DISTILLER_SUBDIR / DISTILLER_TABLE


def load_distiller(
    path: str | os.PathLike | None = None,
    metric: str = "score",
    factors: Sequence[str] | str = DISTILLER_FACTORS,
    block: Sequence[str] | str = DISTILLER_BLOCK,
) -> pd.DataFrame:
    """The Distiller results table (He et al. 2021), read with ``load_csv``, plus teacher scores.

    ``score`` is the dev metric as a fraction (accuracy, Matthews correlation for CoLA,
    correlation for STS-B, so it can be negative for a failed run); ``ratio`` is the student
    score over the teacher score as the authors computed it. This adds:

    - ``teacher_score``: the teacher's score from ``teacher_baseline.csv`` beside the table
      (percentages there, divided by 100 here), joined on (task, Teacher); NaN where no row
      matches. It differs from ``score / ratio`` by up to 0.009 for some (task, teacher) pairs,
      so use ``ratio`` to reproduce the authors' numbers and ``teacher_score`` for costs relative
      to the published teacher.
    - ``augmented``: see ``distiller_augmented``.

    Raises:
        FileNotFoundError: the table is not there (set ``$STUDY_SHARED_DIR``).
        ValueError: as ``load_csv``.
    """
    path = Path(path) if path is not None else distiller_path()
    df = load_csv(path, metric, factors, block)
    teachers_csv = path.parent / DISTILLER_TEACHERS
    if teachers_csv.is_file() and {"task", "Teacher"} <= set(df.columns):
        teachers = pd.read_csv(teachers_csv, encoding="utf-8-sig")
        teachers = teachers.rename(columns={"model": "Teacher", "score": "teacher_score"})
        teachers["teacher_score"] = teachers["teacher_score"].astype(float) / 100.0
        key = {
            (str(t), str(m)): s
            for t, m, s in teachers[["task", "Teacher", "teacher_score"]].itertuples(index=False)
        }
        df["teacher_score"] = [
            key.get((str(t), str(m)), np.nan) for t, m in zip(df["task"], df["Teacher"])
        ]
        unmatched = int(df["teacher_score"].isna().sum())
        if unmatched:
            df.attrs["load_notes"].append(f"{unmatched} run(s) have no teacher score")
    if set(DISTILLER_AUG_COLUMNS) <= set(df.columns) and "mixup" in df.columns:
        df["augmented"] = distiller_augmented(df)
    return df


def load_table(
    path: str | os.PathLike | None,
    metric: str,
    factors: Sequence[str] | str,
    block: Sequence[str] | str = (),
) -> pd.DataFrame:
    """``load_distiller`` for the Distiller table (or no path), ``load_csv`` for any other CSV.

    The Distiller table is recognised by its file name (``auto_distiller_tabular_data.csv``), so
    that ``study analyze --csv`` on it also gets the teachers' scores joined.
    """
    if path is None or Path(path).name == DISTILLER_TABLE:
        return load_distiller(path, metric, factors, block)
    return load_csv(path, metric, factors, block)


def distiller_augmented(df: pd.DataFrame) -> pd.Series:
    """Whether a Distiller run used any data augmentation: a bool Series.

    A run counts as augmented when it ran at least one ``contextual``, ``backtranslation`` or
    ``random`` augmentation step, or used ``mixup`` (``TRUE`` in the file). ``repeated_aug`` and
    ``aug_p`` are not used: they only shape augmentation when one of the above is on.
    """
    steps = df[list(DISTILLER_AUG_COLUMNS)].apply(pd.to_numeric, errors="coerce").fillna(0)
    mixup = df["mixup"].astype(str).str.strip().str.upper() == "TRUE"
    return (steps > 0).any(axis=1) | mixup
