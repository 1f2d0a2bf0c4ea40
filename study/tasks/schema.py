"""The task-YAML schema: pydantic models of what every task declares (``TaskDoc``) and of the
sequence-level file formats (``SequenceDoc``), and ``parse_task``, which hands a YAML to its task
type. A task type subclasses one of these models for its own keys (``study.tasktypes``).

Every refusal is one line naming the YAML, the key and what is expected
(``study.core.schema.validate_model``); validators raise ``ValueError`` with such a message.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean
from study.core.schema import validate_model
from study.tasks.formats import FORMATS, HEADERLESS_FORMATS, LINE_FORMATS
from study.tasks.spec import FileEntry, HubSource, SplitRule, TaskSpec
from study.tasks.types import TASK_TYPES

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def fail(where: str, message: str) -> StudyConfigError:
    """The error of a task YAML named ``where`` (its quoted path)."""
    return StudyConfigError(f"Task file {where}: {message}")


def names_list(value: Any, key: str, *, ints: bool = False) -> tuple:
    """``value`` as a tuple of unique strings (ints kept as positions where ``ints``; else a
    label set of 0, 1, ... is read as the strings "0", "1", ...).

    Raises:
        ValueError: not a non-empty list of strings (or ints), or an entry repeats.
    """
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key!r} must be a non-empty list, got {value!r}.")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ValueError(f"{key!r} entries must be strings (quote true/false), got {v!r}.")
        out.append(v if isinstance(v, str) or ints else str(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{key!r} repeats an entry: {value!r}.")
    return tuple(out)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileDoc(_Doc):
    """One file of a ``lines`` split: its path and the class of every line."""

    path: str
    label: str | int


class SplitDoc(_Doc):
    """``split:`` a seeded split of one declared file set into named parts (``SplitRule``)."""

    source: str
    seed: StrictInt = Field(ge=0)
    fractions: dict[str, float]
    group_by: str | None = None
    held_out: str | None = None


class HubDoc(_Doc):
    """``hub:`` a dataset on the hub (``HubSource``); ``text_fields`` default to the task's."""

    path: str
    config: str | None = None
    splits: dict[str, str] = {"train": "train", "dev": "validation"}
    text_fields: list[str] | None = None
    label_field: str = "label"


class TaskDoc(_Doc):
    """The keys every task YAML has, whatever its type (see ``resolve_dataset`` for an example)."""

    name: str | int | float
    version: str | int | float
    task_type: str
    format: str
    metrics: list[Any]
    score: list[Any] | None = None
    files: dict[str, str | list[FileDoc]] | None = None
    split: SplitDoc | None = None
    hub: HubDoc | None = None
    encoding: str = "utf-8"
    folder: str = ""
    collection: str | None = None
    notes: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _common(self):
        if not NAME.match(str(self.name)):
            raise ValueError(f"name {str(self.name)!r} must be letters, digits, '_', '.' or '-'.")
        metrics = names_list(self.metrics, "metrics")
        score = names_list(self.score, "score") if self.score is not None else ()
        if set(score) - set(metrics):
            raise ValueError(f"score averages {sorted(set(score) - set(metrics))}, which metrics does not list.")
        self._check_files()
        self._check_split()
        return self

    def _check_files(self) -> None:
        if self.files is None:
            return
        if not self.files:
            raise ValueError(f"files must map split names to files, got {self.files!r}.")
        for split, entry in self.files.items():
            if self.format == "lines" and (isinstance(entry, str) or not entry):
                raise ValueError(f"files.{split}: the lines format takes a list of {{path, label}} (one file per class).")
            if self.format != "lines" and (not isinstance(entry, str) or not entry):
                raise ValueError(f"files.{split} must be one file path, got {entry!r}.")

    def _check_split(self) -> None:
        rule = self.split
        if rule is None:
            return
        declared = list(self.files or {})
        if rule.source not in declared:
            raise ValueError(f"split.source {rule.source!r} is not one of the files' splits {declared}.")
        fractions = rule.fractions
        if len(fractions) < 2 or not all(0 < f < 1 for f in fractions.values()) \
                or not math.isclose(sum(fractions.values()), 1.0):
            raise ValueError(f"split.fractions must map two or more split names to fractions in (0, 1) "
                             f"summing to 1, got {fractions!r}.")
        if rule.held_out is not None and rule.held_out not in fractions:
            raise ValueError(f"split.held_out {rule.held_out!r} is not one of the parts {list(fractions)}.")
        clash = sorted(set(fractions) & (set(declared) - {rule.source}))
        if clash:
            raise ValueError(f"split.fractions names {clash}, which files already declares.")

    # ------------------------------------------------------------------ toward a TaskSpec
    def file_entries(self) -> tuple[tuple[str, tuple[FileEntry, ...]], ...]:
        """``files`` as ``TaskSpec.files``: (split, file entries) in declared order."""
        out = []
        for split, entry in (self.files or {}).items():
            if isinstance(entry, str):
                out.append((split, (FileEntry(entry),)))
            else:
                out.append((split, tuple(FileEntry(e.path, str(e.label)) for e in entry)))
        return tuple(out)

    def split_rule(self) -> SplitRule | None:
        """``split`` as a ``SplitRule``, or None."""
        if self.split is None:
            return None
        s = self.split
        return SplitRule(s.source, s.seed, tuple((k, float(v)) for k, v in s.fractions.items()), s.group_by,
                         s.held_out)

    def hub_source(self, text_fields: tuple) -> HubSource | None:
        """``hub`` as a ``HubSource`` (its text fields default to ``text_fields``), or None."""
        if self.hub is None:
            return None
        h = self.hub
        hub_text = h.text_fields if h.text_fields is not None else list(text_fields)
        return HubSource(h.path, h.config, tuple(h.splits.items()), tuple(map(str, hub_text)), h.label_field)

    def common(self, where: str, root: Path | None) -> dict[str, Any]:
        """The ``TaskSpec`` fields every type fills the same way."""
        return dict(
            name=str(self.name), task_type=self.task_type, metrics=names_list(self.metrics, "metrics"),
            format=self.format, folder=self.folder, collection=self.collection, files=self.file_entries(),
            split=self.split_rule(), encoding=self.encoding,
            score_metrics=names_list(self.score, "score") if self.score is not None else (),
            version=str(self.version), notes=self.notes, root=str(root) if root is not None else None,
            source=where,
        )


class SequenceDoc(TaskDoc):
    """A task with one example per line or record (``study.tasks.formats``): which fields hold the
    text (one, or two for a pair) and the label; ``header: false`` names them by 0-based position
    (tsv, glue_tsv); ``columns`` names the columns of a header-less csv/tsv (AG News style)."""

    text_fields: list[Any] | None = None
    label_field: str | StrictInt | None = None
    header: StrictBool = True
    columns: list[str] | None = None
    labels: list[Any] | None = None
    label_range: list[Any] | None = None

    @model_validator(mode="after")
    def _fields(self):
        fmt = self.format
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}." + did_you_mean(fmt, FORMATS))
        given = self.model_fields_set
        if fmt in LINE_FORMATS:
            for key in ("text_fields", "label_field", "header", "columns"):
                if key in given:
                    raise ValueError(f"format {fmt!r} has fixed fields (text, label); remove {key!r}.")
            return self
        for key in ("text_fields", "label_field"):
            if key not in given:
                raise ValueError(f"format {fmt!r} needs {key!r} (the column names).")
        text_fields = names_list(self.text_fields, "text_fields", ints=fmt in ("glue_tsv", "tsv"))
        if len(text_fields) > 2:
            raise ValueError(f"text_fields names {len(text_fields)} fields; a task has one or two (a pair).")
        if not self.header and fmt not in ("glue_tsv", "tsv"):
            raise ValueError("header: false is only for tsv/glue_tsv files (columns then named by position).")
        if not self.header and not all(isinstance(f, int) for f in (*text_fields, self.label_field)):
            raise ValueError("with header: false, text_fields and label_field are 0-based column positions.")
        if self.columns is not None:
            self._check_columns(text_fields)
        if self.split is not None and self.split.group_by is not None and fmt == "glue_tsv":
            raise ValueError("split.group_by is not available for glue_tsv files; use tsv.")
        return self

    def _check_columns(self, text_fields: tuple) -> None:
        if self.format not in HEADERLESS_FORMATS or self.format == "glue_tsv" or "header" in self.model_fields_set:
            raise ValueError("columns names the columns of a header-less csv or tsv file (no header row); "
                             "remove header, or remove columns.")
        columns = names_list(self.columns, "columns")
        group_by = [self.split.group_by] if self.split and self.split.group_by else []
        for field in (*text_fields, self.label_field, *group_by):
            if field not in columns:
                raise ValueError(f"{field!r} is not one of the declared columns {list(columns)}.")

    def fields(self) -> dict[str, Any]:
        """The ``TaskSpec`` fields naming where text and label are (and the hub's columns)."""
        if self.format in LINE_FORMATS:
            text_fields, label_field = ("text",), "label"
        else:
            text_fields = names_list(self.text_fields, "text_fields", ints=self.format in ("glue_tsv", "tsv"))
            label_field = self.label_field
        hub = self.hub_source(text_fields)
        return dict(text_fields=text_fields, label_field=label_field, has_header=self.header,
                    columns=tuple(self.columns or ()), hub=hub, hub_config=hub.config if hub else None)


def validate_task(model: type[TaskDoc], doc: dict, where: str) -> TaskDoc:
    """``doc`` validated by ``model``; ``where`` is the YAML's quoted path.

    Raises:
        StudyConfigError: "Task file <where>: ..." naming the key and what is expected.
    """
    return validate_model(model, doc, f"Task file {where}")


def check_splits(spec: TaskSpec, where: str) -> None:
    """Refuse an unknown encoding, and a task without a train and a dev split."""
    try:
        "".encode(spec.encoding)
    except LookupError:
        raise fail(where, f"unknown encoding {spec.encoding!r} (e.g. utf-8, latin-1).") from None
    if not spec.files and spec.hub is None:
        raise fail(where, "declare files (per split) or a hub dataset.")
    names = spec.split_names
    if "train" not in names or "dev" not in names:
        raise fail(where, f"the splits are {list(names)}; a task needs 'train' and 'dev' (declare them in "
                   "files, or derive them with split:).")


def parse_task(doc: Any, where: str, root: Path | None = None) -> TaskSpec:
    """Build a ``TaskSpec`` from a task YAML's content: its task type (``TASK_TYPES``) validates
    the keys and builds the spec; then its metrics and splits are checked.

    ``where`` names the YAML in messages; ``root`` is the folder a user's relative file paths
    start from (None for a shipped task, whose paths start at the data directory).

    Raises:
        StudyConfigError: a missing, unknown or ill-typed key, an unknown task type or metric
            (the message names the YAML, the key and what is expected).
    """
    if not isinstance(doc, dict):
        raise fail(where, f"expected a mapping of keys (name, task_type, files, ...), got {type(doc).__name__}.")
    task_type = doc.get("task_type")
    if task_type is None:
        validate_task(TaskDoc, doc, where)  # raises: names the missing keys
    if not isinstance(task_type, str) or task_type not in TASK_TYPES:
        raise fail(where, f"task_type {task_type!r} is not one of {', '.join(TASK_TYPES.names())}."
                   + did_you_mean(str(task_type), TASK_TYPES.names()))
    ttype = TASK_TYPES.get(task_type)
    spec = ttype.parse(doc, where, root)
    ttype.check_metrics(spec, where)
    check_splits(spec, where)
    return spec


def read_task_yaml(path: Path, root: Path | None = None) -> TaskSpec:
    """Parse one task YAML file (``parse_task``).

    Raises:
        StudyConfigError: the file is missing or not valid YAML (names file and line), or its
            content is not a valid task.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"Task file {str(path)!r} does not exist.")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise StudyConfigError(f"Task file {str(path)!r}{line}: not valid YAML ({getattr(exc, 'problem', exc)}).") from None
    except UnicodeDecodeError:
        raise StudyConfigError(f"Task file {str(path)!r} is not UTF-8 text.") from None
    return parse_task(doc, repr(str(path)), root)
