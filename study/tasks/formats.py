"""Readers of the sequence-level file formats: one example per line or record.

``glue_tsv``: the official GLUE TSV (tabs, literal quotes, UTF-8 with an optional byte-order
mark). ``tsv``/``csv``/``jsonl``: a header row (or JSON keys) names the fields, or, for a
header-less csv/tsv, the task's ``columns``. Line formats, whose fields are ``text`` and
``label``: ``label_text`` (``<label> <sentence>``, SST-5), ``trec`` (``COARSE:fine question``;
``fine`` is also a field), ``lines`` (one sentence per line, every line of a file carrying the
label its ``files`` entry names; MR, SUBJ).

The readers return raw label values; the task type turns them into targets (``label`` below),
so a reader never knows whether a label is a class or a score. Every malformed line is refused
with its file and line number; nothing is skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from study.core.errors import StudyConfigError
from study.tasks.spec import FileEntry, Split, TaskSpec

FORMATS = ("glue_tsv", "tsv", "csv", "jsonl", "label_text", "trec", "lines")
LINE_FORMATS = ("label_text", "trec", "lines")
#: formats whose files may have no header row (``header: false`` with positions, or ``columns``)
HEADERLESS_FORMATS = ("glue_tsv", "tsv", "csv")

#: (raw label value, "Data file '<path>' line N") -> the example's target; raises StudyConfigError
LabelParser = Callable[[Any, str], Any]
_Record = tuple[int, dict]  # (line number, field -> value)


def decode_error(path: Path, raw: bytes, exc: UnicodeDecodeError, encoding: str, hint: str) -> StudyConfigError:
    """A StudyConfigError naming the file, the line and the byte that is not ``encoding``."""
    offset = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
    lineno = raw[:offset].count(b"\n") + 1
    return StudyConfigError(
        f"Data file {str(path)!r} line {lineno}: byte {raw[offset:offset + 1]!r} is not valid "
        f"{encoding} ({exc.reason}). {hint}"
    )


def split_lines(text: str) -> list[str]:
    """Lines of ``text``, without their ``\\r\\n`` or ``\\n`` and without a trailing empty line."""
    # Only "\n" ends a line: str.splitlines would also break at the NEL (\x85) and other
    # separators that latin-1 text such as MR holds inside sentences.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline; CoLA dev has none, the others do
    return [line.rstrip("\r") for line in lines]


def _split_tsv(lines: list[str], path: Path) -> list[list[str]]:
    records = [line.split("\t") for line in lines]
    if not records:
        raise StudyConfigError(f"Data file {str(path)!r} is empty.")
    width = len(records[0])
    for lineno, fields in enumerate(records, start=1):
        if len(fields) != width:
            raise StudyConfigError(
                f"Data file {str(path)!r} line {lineno}: {len(fields)} tab-separated fields, "
                f"expected {width}. Malformed rows are not skipped; fix the file."
            )
    return records


def read_tsv(path: Path, has_header: bool = True) -> tuple[list[str] | None, list[list[str]]]:
    """Read a GLUE TSV strictly: returns (header or None, rows of string fields).

    Quotes are literal characters (GLUE files are not CSV-quoted), a UTF-8 byte-order mark is
    dropped, and every row must have as many fields as the first line. Written by hand rather
    than with pandas because pandas pads a short row with empty fields without a word, even
    with ``on_bad_lines="error"``, and a quote-aware reader merges lines.

    Raises:
        StudyConfigError: the file is missing, is not UTF-8 (the message names the line and
            byte), or a row has the wrong number of fields.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"Data file {str(path)!r} does not exist.")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise decode_error(path, raw, exc, "UTF-8", "GLUE files must be UTF-8; re-encode the file "
                           "(e.g. iconv -f latin1 -t utf-8).") from None
    records = _split_tsv(split_lines(text), path)
    if has_header:
        return records[0], records[1:]
    return None, records


def read_text(spec: TaskSpec, path: Path, entry: FileEntry) -> str:
    """A data file's text in the task's encoding, after checking its sha256 (a user's task).

    Raises:
        StudyConfigError: the file is missing (with the task's notes), changed since the task was
            resolved, empty, or not in the declared encoding (names the line and byte).
    """
    if not path.is_file():
        raise StudyConfigError(f"Data file {str(path)!r} does not exist." + (f" {spec.notes}" if spec.notes else ""))
    raw = path.read_bytes()
    if entry.sha256 and hashlib.sha256(raw).hexdigest() != entry.sha256:
        raise StudyConfigError(
            f"Data file {str(path)!r} changed since task {spec.name!r} was resolved (its sha256 is "
            "part of the dataset id); load the grid again."
        )
    if not raw.strip():
        raise StudyConfigError(f"Data file {str(path)!r} is empty; every split needs at least one example.")
    utf8 = spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    try:
        return raw.decode("utf-8-sig" if utf8 else spec.encoding)
    except UnicodeDecodeError as exc:
        raise decode_error(path, raw, exc, spec.encoding, "Declare the file's encoding in the task "
                           "YAML (encoding: latin-1) or re-encode it.") from None


def _column(header: list[str] | None, field: str | int, path: Path) -> int:
    if isinstance(field, int):
        return field
    if header is None or field not in header:
        raise StudyConfigError(f"Data file {str(path)!r} has no column {field!r}; header: {header}")
    return header.index(field)


def read_glue(spec: TaskSpec, path: Path, label: LabelParser) -> Split:
    """The examples of one GLUE TSV; ``label(value, "<path> line N")`` reads each label."""
    header, rows = read_tsv(path, has_header=spec.has_header)
    if not rows:
        raise StudyConfigError(
            f"Data file {str(path)!r} holds no examples"
            + (" (only a header line)" if header is not None else "")
            + "; every split needs at least one row."
        )
    text_cols = [_column(header, f, path) for f in spec.text_fields]
    label_col = _column(header, spec.label_field, path)
    texts, labels = [], []
    first_row = 2 if spec.has_header else 1
    for i, row in enumerate(rows):
        texts.append(tuple(row[c] for c in text_cols))
        labels.append(label(row[label_col], f"{path} line {i + first_row}"))
    return Split(texts=texts, labels=labels)


def _csv_records(spec: TaskSpec, text: str, where: str) -> tuple[list[str], list[_Record]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, last = [], 0
    try:
        for row in reader:
            rows.append((last + 1, row))
            last = reader.line_num
    except csv.Error as exc:
        raise StudyConfigError(f"{where} line {last + 1}: not valid CSV ({exc}); is a quoted field "
                               "left open?") from None
    header, body, whose = (list(spec.columns), rows, "the declared columns'") if spec.columns else \
        (rows[0][1], rows[1:], "the header's")
    out = []
    for lineno, row in body:
        if len(row) != len(header):
            raise StudyConfigError(f"{where} line {lineno}: {len(row)} comma-separated fields, expected "
                                   f"{len(header)} ({whose}). Malformed rows are not skipped; fix the file.")
        out.append((lineno, dict(zip(header, row))))
    return header, out


def _tsv_records(spec: TaskSpec, lines: list[str], path: Path) -> tuple[list | None, list[_Record]]:
    records = _split_tsv(lines, path)
    if spec.columns:
        if len(records[0]) != len(spec.columns):
            raise StudyConfigError(f"Data file {str(path)!r} line 1: {len(records[0])} tab-separated fields, "
                                   f"but the task declares {len(spec.columns)} columns {list(spec.columns)}.")
        return list(spec.columns), [(n, dict(zip(spec.columns, r))) for n, r in enumerate(records, start=1)]
    if spec.has_header:
        header = records[0]
        return header, [(n, dict(zip(header, r))) for n, r in enumerate(records[1:], start=2)]
    return None, [(n, dict(enumerate(r))) for n, r in enumerate(records, start=1)]


def _line_record(spec: TaskSpec, line: str, lineno: int, where: str, entry: FileEntry) -> dict:
    if spec.format == "jsonl":
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StudyConfigError(f"{where} line {lineno}: not valid JSON ({exc.msg}, column {exc.colno}); "
                                   "expected one JSON object per line.") from None
        if not isinstance(obj, dict):
            raise StudyConfigError(f"{where} line {lineno}: a JSON {type(obj).__name__}, expected one JSON object per line.")
        return obj
    if spec.format == "lines":
        if not line.strip():
            raise StudyConfigError(f"{where} line {lineno}: empty; expected one sentence per line.")
        return {"text": line, "label": entry.label}
    label, _, sentence = line.partition(" ")
    if spec.format == "trec":
        coarse, colon, fine = label.partition(":")
        if not (colon and coarse and fine and sentence.strip()):
            raise StudyConfigError(f"{where} line {lineno}: {line[:60]!r} is not 'COARSE:fine question'.")
        return {"label": coarse, "fine": fine, "text": sentence}
    if not (label and sentence.strip()):  # label_text
        raise StudyConfigError(f"{where} line {lineno}: {line[:60]!r} is not '<label> <sentence>'.")
    return {"label": label, "text": sentence}


def records(spec: TaskSpec, path: Path, text: str, entry: FileEntry) -> tuple[list[Any] | None, list[_Record]]:
    """(header or None, records) of one file in any format but ``glue_tsv``: each record a
    ``(line number, field -> value)``.

    Raises:
        StudyConfigError: a malformed line (names the file and the line).
    """
    where = f"Data file {str(path)!r}"
    if spec.format == "csv":
        return _csv_records(spec, text, where)
    lines = split_lines(text)
    if spec.format == "tsv":
        return _tsv_records(spec, lines, path)
    return None, [(n, _line_record(spec, line, n, where, entry)) for n, line in enumerate(lines, start=1)]


def _check_fields(spec: TaskSpec, path: Path, header: list | None, first: dict, needed: tuple) -> None:
    if header is not None:
        absent = [f for f in needed if f not in header]
        if absent:
            hint = "" if spec.columns else (" If the file has no header row, name its columns in the task "
                                            "YAML: columns: [...].")
            raise StudyConfigError(f"Data file {str(path)!r} line 1 (header): no column {absent[0]!r}; "
                                   f"the columns are {header}.{hint}")
    elif spec.has_header is False and spec.format == "tsv":
        width = len(first)
        if any(f >= width for f in needed):
            raise StudyConfigError(f"Data file {str(path)!r} line 1: {width} columns, but the task reads "
                                   f"position {max(needed)} (0-based).")


def read_examples(spec: TaskSpec, path: Path, entry: FileEntry, group_by: str | None,
                  label: LabelParser) -> tuple[Split, list[str]]:
    """One file's examples (one per line or record) and each one's ``group_by`` value (empty
    without one); ``label(value, where)`` turns a raw label into the example's target.

    Raises:
        StudyConfigError: see ``read_text``, ``records``; a missing field or column, empty text,
            or a label ``label`` refuses (names the file and the line).
    """
    if spec.format == "glue_tsv":
        if entry.sha256:
            read_text(spec, path, entry)  # a user's GLUE-style file: its checksum first
        return read_glue(spec, path, label), []
    header, recs = records(spec, path, read_text(spec, path, entry), entry)
    if not recs:
        raise StudyConfigError(f"Data file {str(path)!r} holds no examples (only a header line); "
                               "every split needs at least one row.")
    needed = (*spec.text_fields, spec.label_field, *([group_by] if group_by else []))
    _check_fields(spec, path, header, recs[0][1], needed)
    texts, labels, groups = [], [], []
    for lineno, record in recs:
        where = f"Data file {str(path)!r} line {lineno}"
        absent = [f for f in needed if f not in record]
        if absent:
            raise StudyConfigError(f"{where}: no field {absent[0]!r}; the line has {sorted(map(str, record))}.")
        text = tuple(record[f] for f in spec.text_fields)
        for f, value in zip(spec.text_fields, text):
            if not isinstance(value, str) or not value.strip():
                raise StudyConfigError(f"{where}: field {f!r} is {value!r}; expected non-empty text.")
        texts.append(text)
        labels.append(label(record[spec.label_field], where))
        if group_by:
            groups.append(str(record[group_by]))
    return Split(texts=texts, labels=labels), groups
