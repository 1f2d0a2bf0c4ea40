"""GLUE tasks: what each one is (``TASKS``), and reading its train and dev splits.

Two sources, same result: a local directory in the official GLUE TSV layout
(``<data_dir>/<glue_dir>/{train,dev}.tsv``), or the ``nyu-mll/glue`` dataset on the hub when no
directory is given. Labels follow the hub's ids (e.g. RTE entailment=0, not_entailment=1) so the
two sources agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.registry import StudyConfigError, lookup

#: Version of the loaders (parsing, label mapping); part of every cell's identity.
VERSION = "1"
DATA_DIR_ENV = "STUDY_DATA_DIR"
HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task.

    ``text_fields`` and ``label_field`` name columns of the official TSV: a header name, or a
    0-based position when the file has no header row (``has_header=False``, CoLA).
    ``label_names`` are the hub's class names in id order; a TSV label that is one of them is
    mapped to its index, any other is parsed as an int id.
    """

    name: str
    glue_dir: str
    text_fields: tuple[str | int, ...]
    label_field: str | int
    task_type: str  # "classification" | "regression"
    num_labels: int  # 1 for regression
    metrics: tuple[str, ...]
    hub_config: str
    has_header: bool = True
    label_names: tuple[str, ...] = ()

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2


TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec(
        name="sst2",
        glue_dir="SST-2",
        text_fields=("sentence",),
        label_field="label",
        task_type="classification",
        num_labels=2,
        metrics=("accuracy",),
        hub_config="sst2",
        label_names=("negative", "positive"),
    ),
    "cola": TaskSpec(
        # Official CoLA train/dev: source, label, original annotation ("*" or empty), sentence.
        name="cola",
        glue_dir="CoLA",
        text_fields=(3,),
        label_field=1,
        task_type="classification",
        num_labels=2,
        metrics=("matthews_corr",),
        hub_config="cola",
        has_header=False,
        label_names=("unacceptable", "acceptable"),
    ),
    "mrpc": TaskSpec(
        name="mrpc",
        glue_dir="MRPC",
        text_fields=("#1 String", "#2 String"),
        label_field="Quality",
        task_type="classification",
        num_labels=2,
        metrics=("f1", "accuracy"),
        hub_config="mrpc",
        label_names=("not_equivalent", "equivalent"),
    ),
    "rte": TaskSpec(
        name="rte",
        glue_dir="RTE",
        text_fields=("sentence1", "sentence2"),
        label_field="label",
        task_type="classification",
        num_labels=2,
        metrics=("accuracy",),
        hub_config="rte",
        label_names=("entailment", "not_entailment"),
    ),
    "stsb": TaskSpec(
        name="stsb",
        glue_dir="STS-B",
        text_fields=("sentence1", "sentence2"),
        label_field="score",
        task_type="regression",
        num_labels=1,
        metrics=("pearson", "spearman"),
        hub_config="stsb",
    ),
    "wnli": TaskSpec(
        name="wnli",
        glue_dir="WNLI",
        text_fields=("sentence1", "sentence2"),
        label_field="label",
        task_type="classification",
        num_labels=2,
        metrics=("accuracy",),
        hub_config="wnli",
        label_names=("not_entailment", "entailment"),
    ),
}

# Hub column names are uniform across these tasks, unlike the TSV headers.
_HUB_TEXT_FIELDS = {1: ("sentence",), 2: ("sentence1", "sentence2")}
_HUB_SPLITS = {"train": "train", "dev": "validation"}
STS_RANGE = (0.0, 5.0)


@dataclass
class Split:
    """Examples of one split: ``texts[i]`` is a 1-tuple (single sentence) or 2-tuple (pair);
    ``labels[i]`` is a class id (int) or a similarity score (float, STS-B 0-5)."""

    texts: list[tuple[str, ...]]
    labels: list[int] | list[float]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)


def get_task(task: str) -> TaskSpec:
    """Return ``TASKS[task]``. Raises StudyConfigError listing the allowed tasks."""
    return lookup(TASKS, task, "task")


def resolve_data_dir(value: str | Path | None) -> Path | None:
    """Choose the GLUE data directory: ``value``, else ``$STUDY_DATA_DIR``, else None (the hub).

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
        offset = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        lineno = raw[:offset].count(b"\n") + 1
        raise StudyConfigError(
            f"Data file {str(path)!r} line {lineno}: byte {raw[offset:offset + 1]!r} is not valid "
            f"UTF-8 ({exc.reason}). GLUE files must be UTF-8; re-encode the file "
            f"(e.g. iconv -f latin1 -t utf-8)."
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline; CoLA dev has none, the others do
    records = [line.rstrip("\r").split("\t") for line in lines]
    if not records:
        raise StudyConfigError(f"Data file {str(path)!r} is empty.")
    width = len(records[0])
    for lineno, fields in enumerate(records, start=1):
        if len(fields) != width:
            raise StudyConfigError(
                f"Data file {str(path)!r} line {lineno}: {len(fields)} tab-separated fields, "
                f"expected {width}. Malformed rows are not skipped; fix the file."
            )
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
    if spec.task_type == "regression":
        try:
            score = float(value)
        except ValueError:
            score = float("nan")
        if not STS_RANGE[0] <= score <= STS_RANGE[1]:  # also refuses nan
            raise StudyConfigError(
                f"{where}: score {value!r} is not a number in [{STS_RANGE[0]}, {STS_RANGE[1]}]"
            )
        return score
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


def _read_split(spec: TaskSpec, path: Path) -> Split:
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


def _load_hub(spec: TaskSpec) -> dict[str, Split]:
    import datasets  # heavy import, only needed without a local directory

    try:
        ds = datasets.load_dataset(HUB_DATASET, spec.hub_config)
    except (ConnectionError, OSError) as exc:
        raise StudyConfigError(
            f"No data directory was given, and {HUB_DATASET!r} ({spec.hub_config}) could not be "
            f"loaded from the hub: {exc}. Point --data-dir or ${DATA_DIR_ENV} at a folder in the "
            "official GLUE layout (e.g. ../shared/data)."
        ) from exc
    fields = _HUB_TEXT_FIELDS[len(spec.text_fields)]
    cast = float if spec.task_type == "regression" else int
    out = {}
    for ours, theirs in _HUB_SPLITS.items():
        part = ds[theirs]
        columns = [part[f] for f in fields]
        out[ours] = Split(
            texts=list(zip(*columns, strict=True)), labels=[cast(y) for y in part["label"]]
        )
    return out


def load_task(task: str, data_dir: Path | None) -> dict[str, Split]:
    """Load a task's labelled splits: ``{"train": Split, "dev": Split}``.

    With ``data_dir``, read ``<data_dir>/<glue_dir>/{train,dev}.tsv`` (or
    ``<data_dir>/glue/<glue_dir>/...``, so a data root such as ``../shared/data`` works); with None, download
    ``nyu-mll/glue`` (its "validation" split is our "dev"). Class labels are int ids in
    ``[0, num_labels)``; STS-B labels are float scores in [0, 5].

    Raises:
        StudyConfigError: unknown task (lists the allowed ones); a missing task folder or file
            (names it); a file with no examples or not in UTF-8; a malformed row, or a label that
            is out of range or (STS-B) not a number (names file and line).
    """
    spec = get_task(task)
    if data_dir is None:
        return _load_hub(spec)
    folder = Path(data_dir) / spec.glue_dir
    if not folder.is_dir() and (Path(data_dir) / "glue" / spec.glue_dir).is_dir():
        folder = Path(data_dir) / "glue" / spec.glue_dir  # a data root holding glue/ (../shared/data)
    if not folder.is_dir():
        raise StudyConfigError(
            f"Task folder {str(folder)!r} for task {task!r} does not exist; expected the official "
            f"GLUE layout {spec.glue_dir}/train.tsv and {spec.glue_dir}/dev.tsv under the data "
            f"directory."
        )
    return {split: _read_split(spec, folder / f"{split}.tsv") for split in ("train", "dev")}


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
