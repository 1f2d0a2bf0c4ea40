"""Tasks declared as data: what each one is (``TASKS``), and reading its labelled splits.

Every task is a YAML file, ``study/tasks/<name>.yaml`` for the shipped ones (GLUE, SST-5, TREC,
MR, SUBJ, BoolQ), in the manner of lm-evaluation-harness: its files per split (relative to the
data directory) or a hub id, the file format, the text and label fields, the declared label set,
the metrics and a version. ``TASKS`` maps each shipped task's name to its ``TaskSpec``.

A grid may also name a user's own YAML (bring your own data): ``resolve_dataset(path)`` reads
it, checks every file, and registers it in ``TASKS`` under an id made of its declared name and a
hash of its declared content and file checksums, never of its path (cell ids never hold machine
paths). See ``resolve_dataset`` for the schema.

Two sources, same result for the GLUE tasks: a local directory in the official GLUE TSV layout
(``<data_dir>/<folder>/{train,dev}.tsv``, or ``<data_dir>/glue/<folder>/...``), or the
``nyu-mll/glue`` dataset on the hub when no directory is given. Labels follow the hub's ids
(e.g. RTE entailment=0, not_entailment=1) so the two sources agree.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import asdict, dataclass, replace
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean, lookup

#: Version of the loaders (parsing, label mapping); part of every cell's identity. Moving the
#: GLUE tasks to YAML kept their parsing byte for byte (tests/test_tasks.py pins it), so it stays.
VERSION = "1"
DATA_DIR_ENV = "STUDY_DATA_DIR"
HUB_DATASET = "nyu-mll/glue"
TASKS_DIR = Path(__file__).resolve().parent
#: The sequence-level task types, read by this module itself; every other ``task_type`` is a
#: plug-in of ``study.tasktypes`` (token_classification, extractive_qa) that parses and reads its
#: own files (``study.tasks.types``).
TASK_TYPES = ("classification", "regression")
#: File formats. ``glue_tsv``: the official GLUE TSV (tabs, literal quotes, UTF-8 with an optional
#: byte-order mark), a label is a class name or an int id. ``tsv``/``csv``/``jsonl``: a header
#: row (or JSON keys) naming the fields; a label must be one of the declared names. Line formats,
#: whose fields are ``text`` and ``label``: ``label_text`` (``<label> <sentence>``, SST-5),
#: ``trec`` (``COARSE:fine question``; ``fine`` is also a field), ``lines`` (one sentence per
#: line, every line of a file carrying the label its ``files`` entry names; MR, SUBJ).
FORMATS = ("glue_tsv", "tsv", "csv", "jsonl", "label_text", "trec", "lines")
LINE_FORMATS = ("label_text", "trec", "lines")
STS_RANGE = (0.0, 5.0)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class FileEntry:
    """One data file of a split: ``path`` relative to the task's folder (or absolute, in a
    user's YAML); ``label`` the class of every line (``lines`` format only); ``sha256`` its
    checksum, set for a user's task and checked on every read."""

    path: str
    label: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class SplitRule:
    """A seeded split of one declared file set (``source``) into named parts.

    The units (examples, or the distinct values of ``group_by`` in order of first appearance) are
    permuted with ``numpy.random.default_rng(seed)``; the parts take consecutive runs of that
    permutation in the declared order, ``round(fraction * units)`` each and the last part the
    rest. Each part keeps the file order of its examples.
    """

    source: str
    seed: int
    fractions: tuple[tuple[str, float], ...]
    group_by: str | None = None


@dataclass(frozen=True)
class HubSource:
    """A dataset on the hub: ``datasets.load_dataset(path, config)``; ``splits`` maps our split
    names to the hub's, ``text_fields`` and ``label_field`` name its columns."""

    path: str
    config: str | None
    splits: tuple[tuple[str, str], ...]
    text_fields: tuple[str, ...]
    label_field: str = "label"


@dataclass(frozen=True)
class TaskSpec:
    """One task, as its YAML declares it.

    ``text_fields`` and ``label_field`` name fields of a record: a header name (or JSON key), or a
    0-based position when a TSV has no header row (``has_header=False``, CoLA). ``label_names``
    are the declared classes in id order (the hub's order for GLUE). ``metrics`` are reported;
    ``score_metrics`` (default: all of them) are averaged into the task's ``score``.
    ``files`` maps a split name to its files; ``split`` derives further splits from one of them.
    ``root`` is set for a user's task only (the folder its relative paths start from) and, like
    ``source`` (the YAML's path), never enters an identity.
    """

    name: str
    text_fields: tuple[str | int, ...]
    label_field: str | int
    task_type: str  # "classification" | "regression"
    num_labels: int  # 1 for regression
    metrics: tuple[str, ...]
    hub_config: str | None = None
    has_header: bool = True
    label_names: tuple[str, ...] = ()
    format: str = "glue_tsv"
    folder: str = ""
    collection: str | None = None
    files: tuple[tuple[str, tuple[FileEntry, ...]], ...] = ()
    split: SplitRule | None = None
    encoding: str = "utf-8"
    label_range: tuple[float, float] | None = None
    score_metrics: tuple[str, ...] = ()
    version: str = "1"
    hub: HubSource | None = None
    notes: str = ""
    root: str | None = None
    source: str | None = None
    #: settings of a plug-in task type (e.g. extractive QA's doc_stride), as sorted (key, value)
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def option(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def glue_dir(self) -> str:
        """The task's folder (the GLUE folder name for GLUE tasks); kept for older callers."""
        return self.folder

    @property
    def score(self) -> tuple[str, ...]:
        """The metrics averaged into ``score``."""
        return self.score_metrics or self.metrics

    @property
    def split_names(self) -> tuple[str, ...]:
        """The labelled splits ``load_task`` returns: train, dev, then any others (test)."""
        names = [s for s, _ in self.files if not (self.split and s == self.split.source)]
        if self.split:
            names += [s for s, _ in self.split.fractions]
        if not self.files and self.hub:
            names = [s for s, _ in self.hub.splits]
        return tuple(sorted(names, key=lambda s: (s != "train", s != "dev", s)))


@dataclass
class Split:
    """Examples of one split: ``texts[i]`` is a 1-tuple (single sentence) or 2-tuple (pair);
    ``labels[i]`` is a class id (int) or a score (float, e.g. STS-B 0-5). Plug-in task types
    (``study.tasktypes``) keep their own forms: token classification a tuple of words and a list
    of tag ids; extractive QA a (question, context) pair and ``{"id", "texts", "starts"}``."""

    texts: list[tuple[str, ...]]
    labels: list[int] | list[float]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)


# --------------------------------------------------------------------------- task YAML

_KEYS = {
    "name", "version", "task_type", "format", "encoding", "header", "folder", "collection", "files",
    "split", "text_fields", "label_field", "labels", "label_range", "metrics", "score", "hub",
    "notes", "description", "doc_stride", "max_answer_length", "n_best",
}
_REQUIRED = ("name", "version", "task_type", "format", "metrics")


def _fail(where: str, message: str) -> StudyConfigError:
    return StudyConfigError(f"Task file {where}: {message}")


def _str_list(doc: dict, key: str, where: str, *, ints: bool = False) -> tuple:
    """``doc[key]`` as a tuple of unique strings (ints kept as positions where ``ints``; else a
    label set of 0, 1, ... is read as the strings "0", "1", ...)."""
    value = doc[key]
    if not isinstance(value, list) or not value:
        raise _fail(where, f"{key!r} must be a non-empty list, got {value!r}.")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise _fail(where, f"{key!r} entries must be strings (quote true/false), got {v!r}.")
        out.append(v if isinstance(v, str) or ints else str(v))
    if len(set(out)) != len(out):
        raise _fail(where, f"{key!r} repeats an entry: {value!r}.")
    return tuple(out)


def parse_task(doc: Any, where: str, root: Path | None = None) -> TaskSpec:
    """Build a ``TaskSpec`` from a task YAML's content (see ``resolve_dataset`` for the keys).

    ``where`` names the YAML in messages; ``root`` is the folder a user's relative file paths
    start from (None for a shipped task, whose paths start at the data directory).

    Raises:
        StudyConfigError: a missing, unknown or ill-typed key (the message names the YAML, the key
            and what is expected).
    """
    if not isinstance(doc, dict):
        raise _fail(where, f"expected a mapping of keys (name, task_type, files, ...), got {type(doc).__name__}.")
    unknown = sorted(set(map(str, doc)) - _KEYS)
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}. Allowed: {', '.join(sorted(_KEYS))}."
                    + did_you_mean(unknown[0], _KEYS))
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise _fail(where, f"missing key(s) {', '.join(missing)}.")
    name = str(doc["name"])
    if not _NAME.match(name):
        raise _fail(where, f"name {name!r} must be letters, digits, '_', '.' or '-'.")
    task_type = doc["task_type"]
    if task_type not in TASK_TYPES:
        from study.tasks import types as tasktypes

        if not isinstance(task_type, str) or task_type not in tasktypes.names():
            raise _fail(where, f"task_type {task_type!r} is not one of {', '.join(tasktypes.names())}."
                        + did_you_mean(task_type, tasktypes.names()))
        spec = tasktypes.get_type(task_type).parse(doc, where, root)
        _check_splits(spec, where)
        return spec
    for key in ("doc_stride", "max_answer_length", "n_best"):
        if key in doc:
            raise _fail(where, f"{key!r} is for extractive_qa tasks.")
    fmt = doc["format"]
    if fmt not in FORMATS:
        raise _fail(where, f"format {fmt!r} is not one of {', '.join(FORMATS)}." + did_you_mean(fmt, FORMATS))
    if fmt in LINE_FORMATS:
        if task_type != "classification":
            raise _fail(where, f"format {fmt!r} holds class labels; task_type must be classification.")
        for key in ("text_fields", "label_field", "header"):
            if key in doc:
                raise _fail(where, f"format {fmt!r} has fixed fields (text, label); remove {key!r}.")
        text_fields, label_field = ("text",), "label"
    else:
        for key in ("text_fields", "label_field"):
            if key not in doc:
                raise _fail(where, f"format {fmt!r} needs {key!r} (the column names).")
        text_fields = _str_list(doc, "text_fields", where, ints=fmt in ("glue_tsv", "tsv"))
        label_field = doc["label_field"]
        if isinstance(label_field, bool) or not isinstance(label_field, (str, int)):
            raise _fail(where, f"label_field must be a column name or position, got {label_field!r}.")
        if len(text_fields) > 2:
            raise _fail(where, f"text_fields names {len(text_fields)} fields; a task has one or two (a pair).")
    has_header = doc.get("header", True)
    if not isinstance(has_header, bool) or (not has_header and fmt not in ("glue_tsv", "tsv")):
        raise _fail(where, "header: false is only for tsv/glue_tsv files (columns then named by position).")
    if not has_header and not all(isinstance(f, int) for f in (*text_fields, label_field)):
        raise _fail(where, "with header: false, text_fields and label_field are 0-based column positions.")

    if task_type == "classification":
        if "labels" not in doc:
            raise _fail(where, "a classification task declares its label set: labels: [name, ...].")
        labels = _str_list(doc, "labels", where)
        if len(labels) < 2:
            raise _fail(where, f"labels declares {len(labels)} class; a classification needs two or more.")
        num_labels, label_range = len(labels), None
        if "label_range" in doc:
            raise _fail(where, "label_range is for regression tasks.")
    else:
        if "labels" in doc:
            raise _fail(where, "a regression task has no label set; use label_range: [low, high].")
        labels, num_labels, label_range = (), 1, None
        if "label_range" in doc:
            lr = doc["label_range"]
            if (not isinstance(lr, list) or len(lr) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lr) or lr[0] >= lr[1]):
                raise _fail(where, f"label_range must be [low, high] with low < high, got {lr!r}.")
            label_range = (float(lr[0]), float(lr[1]))

    metrics = _str_list(doc, "metrics", where)
    score = _str_list(doc, "score", where) if "score" in doc else ()
    if set(score) - set(metrics):
        raise _fail(where, f"score averages {sorted(set(score) - set(metrics))}, which metrics does not list.")

    files = _parse_files(doc.get("files"), fmt, labels, where)
    rule = _parse_split(doc.get("split"), files, fmt, where)
    hub = _parse_hub(doc.get("hub"), text_fields, label_field, where)
    if not files and hub is None:
        raise _fail(where, "declare files (per split) or a hub dataset.")
    spec = TaskSpec(
        name=name,
        text_fields=text_fields,
        label_field=label_field,
        task_type=task_type,
        num_labels=num_labels,
        metrics=metrics,
        hub_config=hub.config if hub else None,
        has_header=has_header,
        label_names=labels,
        format=fmt,
        folder=str(doc.get("folder", "")),
        collection=doc.get("collection"),
        files=files,
        split=rule,
        encoding=str(doc.get("encoding", "utf-8")),
        label_range=label_range,
        score_metrics=score,
        version=str(doc["version"]),
        hub=hub,
        notes=str(doc.get("notes", "")),
        root=str(root) if root is not None else None,
        source=where,
    )
    _check_splits(spec, where)
    return spec


def _check_splits(spec: TaskSpec, where: str) -> None:
    try:
        "".encode(spec.encoding)
    except LookupError:
        raise _fail(where, f"unknown encoding {spec.encoding!r} (e.g. utf-8, latin-1).") from None
    names = spec.split_names
    if "train" not in names or "dev" not in names:
        raise _fail(where, f"the splits are {list(names)}; a task needs 'train' and 'dev' (declare them in "
                    "files, or derive them with split:).")


def _parse_files(value: Any, fmt: str, labels: tuple[str, ...], where: str):
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        raise _fail(where, f"files must map split names to files, got {value!r}.")
    out = []
    for split, entry in value.items():
        if fmt == "lines":
            if not isinstance(entry, list) or not entry or not all(
                    isinstance(e, dict) and set(e) == {"path", "label"} for e in entry):
                raise _fail(where, f"files.{split}: the lines format takes a list of {{path, label}} (one file per class).")
            for e in entry:
                if str(e["label"]) not in labels:
                    raise _fail(where, f"files.{split}: label {e['label']!r} is not one of the declared labels {list(labels)}.")
            out.append((str(split), tuple(FileEntry(str(e["path"]), str(e["label"])) for e in entry)))
        else:
            if not isinstance(entry, str) or not entry:
                raise _fail(where, f"files.{split} must be one file path, got {entry!r}.")
            out.append((str(split), (FileEntry(entry),)))
    return tuple(out)


def _parse_split(value: Any, files, fmt: str, where: str) -> SplitRule | None:
    if value is None:
        return None
    keys = {"source", "seed", "fractions", "group_by"}
    if not isinstance(value, dict) or not {"source", "seed", "fractions"} <= set(value) or set(value) - keys:
        raise _fail(where, f"split takes source, seed, fractions (and optionally group_by), got {value!r}.")
    source, seed, fractions = value["source"], value["seed"], value["fractions"]
    declared = [s for s, _ in files]
    if source not in declared:
        raise _fail(where, f"split.source {source!r} is not one of the files' splits {declared}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(where, f"split.seed must be a non-negative integer, got {seed!r}.")
    if (not isinstance(fractions, dict) or len(fractions) < 2
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in fractions.values())
            or not math.isclose(sum(fractions.values()), 1.0)):
        raise _fail(where, f"split.fractions must map two or more split names to fractions in (0, 1) summing to 1, got {fractions!r}.")
    clash = sorted(set(map(str, fractions)) & (set(declared) - {source}))
    if clash:
        raise _fail(where, f"split.fractions names {clash}, which files already declares.")
    group_by = value.get("group_by")
    if group_by is not None and fmt == "glue_tsv":
        raise _fail(where, "split.group_by is not available for glue_tsv files; use tsv.")
    return SplitRule(str(source), seed, tuple((str(k), float(v)) for k, v in fractions.items()),
                     str(group_by) if group_by is not None else None)


def _parse_hub(value: Any, text_fields, label_field, where: str) -> HubSource | None:
    if value is None:
        return None
    keys = {"path", "config", "splits", "text_fields", "label_field"}
    if not isinstance(value, dict) or "path" not in value or set(value) - keys:
        raise _fail(where, f"hub takes path (and optionally {', '.join(sorted(keys - {'path'}))}), got {value!r}.")
    splits = value.get("splits", {"train": "train", "dev": "validation"})
    hub_text = value.get("text_fields", list(text_fields))
    if not isinstance(splits, dict) or not isinstance(hub_text, list):
        raise _fail(where, "hub.splits must be a mapping (ours: theirs) and hub.text_fields a list.")
    return HubSource(str(value["path"]), value.get("config"), tuple((str(k), str(v)) for k, v in splits.items()),
                     tuple(map(str, hub_text)), str(value.get("label_field", "label")))


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


def _shipped_tasks() -> dict[str, TaskSpec]:
    tasks = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        spec = read_task_yaml(path)
        if spec.name != path.stem:
            raise StudyConfigError(f"Task file {str(path)!r} declares name {spec.name!r}; it must match the file name.")
        tasks[spec.name] = replace(spec, source=f"study/tasks/{path.name}")
    return tasks


class _Catalogue(MutableMapping):
    """Task name -> ``TaskSpec``: the shipped YAMLs are read on first use, not at import (reading
    them looks up task types, whose modules import this one); task YAMLs given by path are added
    by ``resolve_dataset``."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] | None = None

    @property
    def _all(self) -> dict[str, TaskSpec]:
        if self._tasks is None:
            self._tasks = _shipped_tasks()
        return self._tasks

    def __getitem__(self, name: str) -> TaskSpec:
        return self._all[name]

    def __setitem__(self, name: str, spec: TaskSpec) -> None:
        self._all[name] = spec

    def __delitem__(self, name: str) -> None:
        del self._all[name]

    def __iter__(self):
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)


TASKS: MutableMapping[str, TaskSpec] = _Catalogue()


# --------------------------------------------------------------------------- lookup and identity


def _looks_like_path(value: str) -> bool:
    return value.endswith((".yaml", ".yml")) or "/" in value or os.sep in value


def get_task(task: str) -> TaskSpec:
    """Return ``TASKS[task]``; a path to a task YAML is resolved first (``resolve_dataset``).

    Raises:
        StudyConfigError: unknown task (lists the allowed ones and the closest), or a task YAML
            that is not valid (see ``resolve_dataset``).
    """
    if task not in TASKS and _looks_like_path(str(task)):
        return resolve_dataset(task)[1]
    return lookup(TASKS, task, "task")


def task_identity(spec: TaskSpec) -> dict[str, Any]:
    """What a task's examples and scores depend on, without any path: the declared content
    (version, type, format, encoding, fields, label set or range, metrics, split rule; the hub
    id when it has no files) and each file's sha256 where known (a user's task), in file order.
    The name is not in it: ``resolve_dataset`` puts the name before the hash."""
    out: dict[str, Any] = {
        "version": spec.version, "task_type": spec.task_type, "format": spec.format,
        "encoding": spec.encoding, "header": spec.has_header, "text_fields": list(spec.text_fields),
        "label_field": spec.label_field, "labels": list(spec.label_names),
        "label_range": list(spec.label_range) if spec.label_range else None,
        "metrics": list(spec.metrics), "score": list(spec.score),
        "files": {split: [{"label": e.label, "sha256": e.sha256} for e in entries] for split, entries in spec.files},
        "split": asdict(spec.split) if spec.split else None,
    }
    if spec.options:  # plug-in task types only: the sequence tasks keep the ids they had
        out["options"] = dict(spec.options)
    if not spec.files and spec.hub:
        out["hub"] = asdict(spec.hub)
    return out


def _digest(identity: dict[str, Any]) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_dataset(name_or_path: str | Path, base: str | Path | None = None, *,
                    validate: bool = True) -> tuple[str, TaskSpec]:
    """The dataset id and spec for a grid's ``dataset`` value: a shipped task's name, or the path
    of a user's task YAML (bring your own data).

    A shipped name is its own id. A YAML path (relative paths start at ``base``, e.g. the grid's
    folder, else the working directory) is read, its files are checked and hashed, and the task
    is registered in ``TASKS`` under ``<name>-<12 hex digits>``: the sha256 of
    ``task_identity`` (declared content and file checksums, never a path). The same YAML content
    and files give the same id on every machine; an edited file gives a new one. With
    ``validate`` every file is parsed now, so a bad row fails before any training.

    A user's task YAML (paths relative to the YAML's own folder, or absolute)::

        name: reviews                  # letters, digits, _ . -
        version: 1                     # bump when the files' meaning changes
        task_type: classification      # or regression (then label_range: [low, high], no labels)
        format: csv                    # tsv, csv or jsonl: a header row / JSON keys name the fields
        files: {train: data/train.csv, dev: data/dev.csv}
        text_fields: [review]          # one field, or two for a pair
        label_field: stars
        labels: ["1", "2", "3", "4", "5"]   # the declared set; any other value is an error
        metrics: [accuracy, macro_f1]
        score: [accuracy]              # optional: metrics averaged into "score" (default all)
        encoding: utf-8                # optional
        split: {source: train, seed: 0, fractions: {dev: 0.1, train: 0.9}}  # optional, with
                                       # files: {all: ...}: derive train/dev from one file

    NER (``task_type: token_classification``, ``format: conll``): ``text_fields: [0]`` and
    ``label_field: N`` are the word's and the tag's 0-based columns, ``labels`` the tag set,
    ``metrics`` from f1, precision, recall. Extractive QA (``task_type: extractive_qa``,
    ``format: squad_json``): SQuAD v1.1 JSON files, ``metrics`` from exact_match, f1, and
    optionally ``doc_stride``, ``max_answer_length``, ``n_best``; ``split.group_by: title`` splits
    by article. See ``study/tasktypes/``.

    Raises:
        StudyConfigError: an unknown name (lists the allowed ones), or a YAML that is missing, not
            valid, names an unknown metric, lacks a file, or holds a file with a missing column,
            an empty file, a malformed line or a label outside the declared set (the message
            names the file, the line and what is expected).
    """
    key = str(name_or_path)
    if key in TASKS:
        return key, TASKS[key]
    if not _looks_like_path(key):
        lookup(TASKS, key, "dataset")  # raises, with the allowed names
    path = Path(key).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    path = path.absolute()
    spec = read_task_yaml(path, root=path.parent)
    from study.tasks.metrics import METRICS  # here, not at import: study.tasks.metrics imports this module

    unknown = [m for m in spec.metrics if m not in METRICS]
    if spec.task_type not in TASK_TYPES:
        from study.tasks.types import get_type

        get_type(spec.task_type).check_metrics(spec, repr(str(path)))
        unknown = []
    if unknown:
        raise _fail(repr(str(path)), f"unknown metric {unknown[0]!r}. Allowed: {', '.join(sorted(METRICS))}."
                    + did_you_mean(unknown[0], METRICS))
    files = []
    for split, entries in spec.files:
        hashed = []
        for entry in entries:
            file = path.parent / entry.path
            if not file.is_file():
                raise StudyConfigError(f"Data file {str(file)!r} (files.{split} of task file {str(path)!r}) does not exist.")
            hashed.append(replace(entry, sha256=hashlib.sha256(file.read_bytes()).hexdigest()))
        files.append((split, tuple(hashed)))
    spec = replace(spec, files=tuple(files))
    dataset_id = f"{spec.name}-{_digest(task_identity(spec))[:12]}"
    spec = replace(spec, name=dataset_id)
    if validate and spec.files:
        _load_files(spec, Path(spec.root))
    TASKS[dataset_id] = spec  # same id, same content: registering again changes nothing
    return dataset_id, spec


# --------------------------------------------------------------------------- reading files


def _decode_error(path: Path, raw: bytes, exc: UnicodeDecodeError, encoding: str, hint: str) -> StudyConfigError:
    offset = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
    lineno = raw[:offset].count(b"\n") + 1
    return StudyConfigError(
        f"Data file {str(path)!r} line {lineno}: byte {raw[offset:offset + 1]!r} is not valid "
        f"{encoding} ({exc.reason}). {hint}"
    )


def _split_lines(text: str) -> list[str]:
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
        raise _decode_error(path, raw, exc, "UTF-8", "GLUE files must be UTF-8; re-encode the file "
                            "(e.g. iconv -f latin1 -t utf-8).") from None
    records = _split_tsv(_split_lines(text), path)
    if has_header:
        return records[0], records[1:]
    return None, records


def _column(header: list[str] | None, field: str | int, path: Path) -> int:
    if isinstance(field, int):
        return field
    if header is None or field not in header:
        raise StudyConfigError(f"Data file {str(path)!r} has no column {field!r}; header: {header}")
    return header.index(field)


def _parse_label(spec: TaskSpec, value: str, where: str) -> int | float:
    """A GLUE TSV label: a class name or an int id; a score within ``label_range``."""
    if spec.task_type == "regression":
        return _parse_score(spec, value, where)
    if value in spec.label_names:
        return spec.label_names.index(value)
    try:
        label = int(value)
    except ValueError:
        raise StudyConfigError(
            f"{where}: label {value!r} is neither an int nor one of {spec.label_names}"
        ) from None
    if not 0 <= label < spec.num_labels:
        raise StudyConfigError(f"{where}: label {label} outside 0..{spec.num_labels - 1}")
    return label


def _parse_score(spec: TaskSpec, value: Any, where: str) -> float:
    try:
        score = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        score = float("nan")
    low, high = spec.label_range or (-math.inf, math.inf)
    if not (low <= score <= high and math.isfinite(score)):  # also refuses nan
        expected = f"a number in [{low}, {high}]" if spec.label_range else "a finite number"
        raise StudyConfigError(f"{where}: score {value!r} is not {expected}")
    return score


def _declared_label(spec: TaskSpec, value: Any, where: str) -> int | float:
    """A label of the non-GLUE formats: exactly one of the declared names (a JSON true/false
    reads as "true"/"false", a JSON integer as its digits), or a score for regression."""
    if spec.task_type == "regression":
        return _parse_score(spec, value, where)
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and value in spec.label_names:
        return spec.label_names.index(value)
    raise StudyConfigError(
        f"{where}: label {value!r} is not one of the declared labels {list(spec.label_names)}"
    )


def _read_glue(spec: TaskSpec, path: Path) -> Split:
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
        labels.append(_parse_label(spec, row[label_col], f"{path} line {i + first_row}"))
    return Split(texts=texts, labels=labels)


def _read_text(spec: TaskSpec, path: Path, entry: FileEntry) -> str:
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
        raise _decode_error(path, raw, exc, spec.encoding, "Declare the file's encoding in the task "
                            "YAML (encoding: latin-1) or re-encode it.") from None


_Record = tuple[int, dict]  # (line number, field -> value)


def _records(spec: TaskSpec, path: Path, text: str, entry: FileEntry) -> tuple[list[Any] | None, list[_Record]]:
    """(header or None, records) of one file in any non-GLUE format; raises on a malformed line."""
    where = f"Data file {str(path)!r}"
    if spec.format == "csv":
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        rows, last = [], 0
        try:
            for row in reader:
                rows.append((last + 1, row))
                last = reader.line_num
        except csv.Error as exc:
            raise StudyConfigError(f"{where} line {last + 1}: not valid CSV ({exc}); is a quoted field "
                                   "left open?") from None
        header = rows[0][1]
        out = []
        for lineno, row in rows[1:]:
            if len(row) != len(header):
                raise StudyConfigError(f"{where} line {lineno}: {len(row)} comma-separated fields, expected "
                                       f"{len(header)} (the header's). Malformed rows are not skipped; fix the file.")
            out.append((lineno, dict(zip(header, row))))
        return header, out
    lines = _split_lines(text)
    if spec.format == "tsv":
        records = _split_tsv(lines, path)
        if spec.has_header:
            header = records[0]
            return header, [(n, dict(zip(header, r))) for n, r in enumerate(records[1:], start=2)]
        return None, [(n, dict(enumerate(r))) for n, r in enumerate(records, start=1)]
    out = []
    for lineno, line in enumerate(lines, start=1):
        if spec.format == "jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StudyConfigError(f"{where} line {lineno}: not valid JSON ({exc.msg}, column {exc.colno}); "
                                       "expected one JSON object per line.") from None
            if not isinstance(obj, dict):
                raise StudyConfigError(f"{where} line {lineno}: a JSON {type(obj).__name__}, expected one JSON object per line.")
            out.append((lineno, obj))
        elif spec.format == "lines":
            if not line.strip():
                raise StudyConfigError(f"{where} line {lineno}: empty; expected one sentence per line.")
            out.append((lineno, {"text": line, "label": entry.label}))
        else:
            label, _, sentence = line.partition(" ")
            if spec.format == "trec":
                coarse, colon, fine = label.partition(":")
                if not (colon and coarse and fine and sentence.strip()):
                    raise StudyConfigError(f"{where} line {lineno}: {line[:60]!r} is not 'COARSE:fine question'.")
                out.append((lineno, {"label": coarse, "fine": fine, "text": sentence}))
            else:  # label_text
                if not (label and sentence.strip()):
                    raise StudyConfigError(f"{where} line {lineno}: {line[:60]!r} is not '<label> <sentence>'.")
                out.append((lineno, {"label": label, "text": sentence}))
    return None, out


def _read_file(spec: TaskSpec, path: Path, entry: FileEntry, group_by: str | None) -> tuple[Split, list[str]]:
    """One file's examples, and each example's ``group_by`` value (empty without one)."""
    if spec.task_type not in TASK_TYPES:
        from study.tasks.types import get_type

        return get_type(spec.task_type).read_file(spec, path, entry, group_by)
    if spec.format == "glue_tsv":
        if entry.sha256:
            _read_text(spec, path, entry)  # a user's GLUE-style file: its checksum first
        return _read_glue(spec, path), []
    header, records = _records(spec, path, _read_text(spec, path, entry), entry)
    if not records:
        raise StudyConfigError(f"Data file {str(path)!r} holds no examples (only a header line); "
                               "every split needs at least one row.")
    needed = (*spec.text_fields, spec.label_field, *([group_by] if group_by else []))
    if header is not None:
        absent = [f for f in needed if f not in header]
        if absent:
            raise StudyConfigError(f"Data file {str(path)!r} line 1 (header): no column {absent[0]!r}; "
                                   f"the columns are {header}.")
    elif spec.has_header is False and spec.format == "tsv":
        width = len(records[0][1])
        if any(f >= width for f in needed):
            raise StudyConfigError(f"Data file {str(path)!r} line 1: {width} columns, but the task reads "
                                   f"position {max(needed)} (0-based).")
    texts, labels, groups = [], [], []
    for lineno, record in records:
        where = f"Data file {str(path)!r} line {lineno}"
        absent = [f for f in needed if f not in record]
        if absent:
            raise StudyConfigError(f"{where}: no field {absent[0]!r}; the line has {sorted(map(str, record))}.")
        text = tuple(record[f] for f in spec.text_fields)
        for f, value in zip(spec.text_fields, text):
            if not isinstance(value, str) or not value.strip():
                raise StudyConfigError(f"{where}: field {f!r} is {value!r}; expected non-empty text.")
        texts.append(text)
        labels.append(_declared_label(spec, record[spec.label_field], where))
        if group_by:
            groups.append(str(record[group_by]))
    return Split(texts=texts, labels=labels), groups


def _apply_split(spec: TaskSpec, split: Split, groups: list[str]) -> dict[str, Split]:
    """The parts of ``SplitRule``: deterministic in (examples, groups, seed), disjoint, covering."""
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


def _load_files(spec: TaskSpec, folder: Path) -> dict[str, Split]:
    parts: dict[str, Split] = {}
    groups: dict[str, list[str]] = {}
    for split, entries in spec.files:
        group_by = spec.split.group_by if spec.split and split == spec.split.source else None
        texts, labels, grp = [], [], []
        for entry in entries:
            part, g = _read_file(spec, folder / entry.path, entry, group_by)
            texts += part.texts
            labels += part.labels
            grp += g
        parts[split], groups[split] = Split(texts=texts, labels=labels), grp
    if spec.split:
        source = spec.split.source
        parts.update(_apply_split(spec, parts.pop(source), groups[source]))
    return {name: parts[name] for name in spec.split_names}


def _load_hub(spec: TaskSpec) -> dict[str, Split]:
    import datasets  # heavy import, only needed without a local directory

    hub = spec.hub
    if spec.task_type not in TASK_TYPES:
        from study.tasks.types import get_type

        return get_type(spec.task_type).read_hub(spec)
    try:
        ds = datasets.load_dataset(hub.path, hub.config)
    except (ConnectionError, OSError) as exc:
        raise StudyConfigError(
            f"No data directory was given, and {hub.path!r} ({hub.config}) could not be "
            f"loaded from the hub: {exc}. Point --data-dir or ${DATA_DIR_ENV} at a data folder "
            f"holding {spec.collection + '/' if spec.collection else ''}{spec.folder}/ (e.g. ../shared/data)."
        ) from exc
    out = {}
    for ours, theirs in hub.splits:
        part = ds[theirs]
        columns = [part[f] for f in hub.text_fields]
        labels = part[hub.label_field]
        if spec.task_type == "regression":
            labels = [float(y) for y in labels]
        else:
            labels = [spec.label_names.index(y) if isinstance(y, str) and y in spec.label_names else int(y)
                      for y in labels]
        out[ours] = Split(texts=list(zip(*columns, strict=True)), labels=labels)
    return out


def _task_folder(spec: TaskSpec, data_dir: Path, task: str) -> Path:
    folder = data_dir / spec.folder
    if not folder.is_dir() and spec.collection and (data_dir / spec.collection / spec.folder).is_dir():
        folder = data_dir / spec.collection / spec.folder  # a data root such as ../shared/data
    if not folder.is_dir():
        files = " and ".join(f"{spec.folder}/{e.path}" for _, entries in spec.files for e in entries)
        raise StudyConfigError(
            f"Task folder {str(folder)!r} for task {task!r} does not exist; expected {files} under "
            "the data directory" + (f" (or under its {spec.collection}/ folder)." if spec.collection else ".")
        )
    return folder


def load_task(task: str, data_dir: Path | None) -> dict[str, Split]:
    """Load a task's labelled splits: ``{"train": Split, "dev": Split}``, then any other
    labelled split the task declares (``"test"`` for SST-5 and TREC).

    A shipped task reads ``<data_dir>/<folder>/<file>`` (or ``<data_dir>/<collection>/<folder>/``,
    so a data root such as ``../shared/data`` works); with ``data_dir`` None it downloads its hub
    dataset (GLUE: ``nyu-mll/glue``, whose "validation" split is our "dev"). A user's task (a
    YAML path, or an id from ``resolve_dataset``) reads its own files and ignores ``data_dir``.
    Class labels are int ids in ``[0, num_labels)``; regression labels are float scores
    (STS-B in [0, 5]).

    Raises:
        StudyConfigError: unknown task (lists the allowed ones); a missing task folder or file
            (names it); a task with no hub source and no data directory; a file that is empty,
            holds no examples or is not in its declared encoding; a malformed row, a missing
            column, or a label that is out of the declared set or range (names file and line).
    """
    spec = get_task(task)
    if not spec.files and spec.hub is not None:
        return _load_hub(spec)  # a hub-only task (squad): no local files to read
    if spec.root is not None:
        return _load_files(spec, Path(spec.root)) if spec.files else _load_hub(spec)
    if data_dir is None:
        if spec.hub is None:
            raise StudyConfigError(
                f"Task {task!r} is read from files only (it has no hub source): point --data-dir or "
                f"${DATA_DIR_ENV} at a data folder holding {spec.collection + '/' if spec.collection else ''}"
                f"{spec.folder}/ (e.g. ../shared/data)."
            )
        return _load_hub(spec)
    return _load_files(spec, _task_folder(spec, Path(data_dir), task))




def resolve_data_dir(value: str | Path | None) -> Path | None:
    """Choose the data directory: ``value``, else ``$STUDY_DATA_DIR``, else None (the hub).

    Raises:
        StudyConfigError: the chosen directory does not exist (message names it and both ways
            of setting it).
    """
    source = "--data-dir"
    if value is None or str(value) == "":
        value = os.environ.get(DATA_DIR_ENV) or None
        source = DATA_DIR_ENV
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise StudyConfigError(
            f"Data directory {str(path)!r} (from {source}) does not exist or is not a directory. "
            f"Point --data-dir or the {DATA_DIR_ENV} environment variable at a folder holding the "
            f"GLUE task folders (SST-2/, CoLA/, ...), or leave both unset to load from the hub."
        )
    return path


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
