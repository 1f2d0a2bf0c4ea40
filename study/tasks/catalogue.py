"""The task catalogue: what each task is (``TASKS``), and reading its labelled splits.

Every task is a YAML file, ``study/tasks/<name>.yaml`` for the shipped ones (GLUE, SST-5, TREC,
MR, SUBJ, BoolQ, CoNLL-2003, WNUT-17, SQuAD), in the manner of lm-evaluation-harness: its files
per split (relative to the data directory) or a hub id, the file format, the text and label
fields, the declared label set, the metrics and a version. ``TASKS`` maps each shipped task's
name to its ``TaskSpec``, reading the YAMLs on first use.

A grid may also name a user's own YAML (bring your own data): ``resolve_dataset(path)`` reads
it, checks every file, and registers it in ``TASKS`` under an id made of its declared name and a
hash of its declared content and file checksums, never of its path (cell ids never hold machine
paths). See ``resolve_dataset`` for the schema.

Two sources, same result for the GLUE tasks: a local directory in the official GLUE TSV layout
(``<data_dir>/<folder>/{train,dev}.tsv``, or ``<data_dir>/glue/<folder>/...``), or the
``nyu-mll/glue`` dataset on the hub when no directory is given. Labels follow the hub's ids
(e.g. RTE entailment=0, not_entailment=1) so the two sources agree.

The parts live beside this module, one job each: ``spec`` (TaskSpec, Split), ``schema`` (the
task-YAML schema), ``formats`` (file readers), ``splits`` (split rules, subsampling), ``hub``
(``datasets``), ``types`` (the task-type registry); a task's type (``study.tasktypes``) parses
its YAML, reads its files and turns raw labels into targets.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import MutableMapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from study.core.errors import StudyConfigError
from study.core.registry import lookup
from study.tasks.hub import DATA_DIR_ENV
from study.tasks.schema import read_task_yaml
from study.tasks.spec import Split, TaskSpec
from study.tasks.splits import apply_split
from study.tasks.types import get_type

#: Version of the loaders (parsing, label mapping); part of every cell's identity. Moving the
#: GLUE tasks to YAML kept their parsing byte for byte (tests/test_tasks.py pins it), so it stays.
VERSION = "1"
TASKS_DIR = Path(__file__).resolve().parent


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
    them imports every task type, ``study.tasktypes``); task YAMLs given by path are added
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
        "split": _split_identity(spec),
    }
    if spec.options:  # plug-in task types only: the sequence tasks keep the ids they had
        out["options"] = dict(spec.options)
    if spec.columns:  # a header-less csv/tsv only: every other task keeps the id it had
        out["columns"] = list(spec.columns)
    if not spec.files and spec.hub:
        out["hub"] = asdict(spec.hub)
    return out


def version_identity(dataset: str) -> dict[str, str]:
    """What a shipped task's own ``version:`` adds to the identity of its cells and teachers:
    ``{"task_version": V}`` from version 2 on, nothing at version 1 (every cell keeps the id it had
    before the field counted). Bump a shipped task's version when a change to its YAML changes its
    examples (a split rule): its cells and teachers then get new ids and are trained again. A
    user's task is identified by its content instead (``resolve_dataset``): nothing here."""
    spec = TASKS.get(dataset)
    if spec is None or spec.root is not None or str(spec.version) == "1":
        return {}
    return {"task_version": str(spec.version)}


def _split_identity(spec: TaskSpec) -> dict[str, Any] | None:
    """The split rule as it enters an identity: ``held_out`` only when set (a rule without it keeps
    the id it had before the field existed)."""
    if not spec.split:
        return None
    out = asdict(spec.split)
    if out["held_out"] is None:
        del out["held_out"]
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

    A csv or tsv file without a header row (AG News, Yelp and DBpedia as Zhang et al. 2015 ship
    them) names its columns in order, and ``text_fields``/``label_field`` pick among them::

        format: csv
        columns: [label, title, description]
        text_fields: [title, description]
        label_field: label

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
    spec = read_task_yaml(path, root=path.parent)  # its type checks its keys and metrics
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
        load_files(spec, Path(spec.root))
    TASKS[dataset_id] = spec  # same id, same content: registering again changes nothing
    return dataset_id, spec


# --------------------------------------------------------------------------- reading a task


def load_files(spec: TaskSpec, folder: Path) -> dict[str, Split]:
    """The labelled splits of a task read from its files under ``folder`` (its type reads each
    file), the ``split`` rule applied; in ``spec.split_names`` order.

    Raises:
        StudyConfigError: see ``load_task``.
    """
    ttype = get_type(spec.task_type)
    parts: dict[str, Split] = {}
    groups: dict[str, list[str]] = {}
    for split, entries in spec.files:
        group_by = spec.split.group_by if spec.split and split == spec.split.source else None
        texts, labels, grp = [], [], []
        for entry in entries:
            part, g = ttype.read_file(spec, folder / entry.path, entry, group_by)
            texts += part.texts
            labels += part.labels
            grp += g
        parts[split], groups[split] = Split(texts=texts, labels=labels), grp
    if spec.split:
        source = spec.split.source
        parts.update(apply_split(spec, parts.pop(source), groups[source]))
    return {name: parts[name] for name in spec.split_names}


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
        return get_type(spec.task_type).read_hub(spec)  # a hub-only task (squad): no local files
    if spec.root is not None:
        return load_files(spec, Path(spec.root)) if spec.files else get_type(spec.task_type).read_hub(spec)
    if data_dir is None:
        if spec.hub is None:
            raise StudyConfigError(
                f"Task {task!r} is read from files only (it has no hub source): point --data-dir or "
                f"${DATA_DIR_ENV} at a data folder holding {spec.collection + '/' if spec.collection else ''}"
                f"{spec.folder}/ (e.g. ../shared/data)."
            )
        return get_type(spec.task_type).read_hub(spec)
    return load_files(spec, _task_folder(spec, Path(data_dir), task))




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
