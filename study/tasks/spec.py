"""What a task is once its YAML is read (``TaskSpec`` and its parts) and what reading it gives
(``Split``): plain frozen data, shared by every module of ``study.tasks`` and every task type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    rest. Each part keeps the file order of its examples. ``held_out`` names a part whose passages
    the other parts must not overlap (``study.tasks.splits.apply_split``), or None.
    """

    source: str
    seed: int
    fractions: tuple[tuple[str, float], ...]
    group_by: str | None = None
    held_out: str | None = None


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
    0-based position when a TSV has no header row (``has_header=False``, CoLA), or one of the
    declared ``columns`` of a header-less csv/tsv. ``label_names``
    are the declared classes in id order (the hub's order for GLUE). ``metrics`` are reported;
    ``score_metrics`` (default: all of them) are averaged into the task's ``score``.
    ``files`` maps a split name to its files; ``split`` derives further splits from one of them.
    ``root`` is set for a user's task only (the folder its relative paths start from) and, like
    ``source`` (the YAML's path), never enters an identity.
    """

    name: str
    text_fields: tuple[str | int, ...]
    label_field: str | int
    task_type: str  # a key of ``study.tasks.types.TASK_TYPES`` (classification, regression, ...)
    num_labels: int  # outputs of the head: 1 for regression
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
    #: the column names of a header-less csv/tsv file, in file order (AG News, Yelp, DBpedia as
    #: Zhang et al. 2015 ship them); empty when the file's first row names them
    columns: tuple[str, ...] = ()

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
