"""Loaded, subsampled, augmented and tokenised data, each built once and reused.

Raw splits are read once per dataset; augmented copies once per (dataset, subsample, pipeline
step and the steps before it, seed) and cached on disk; tokenised splits once per (that,
tokenizer, max length) in memory for the life of the process. ``record`` describes a tokenised
split as an MLflow dataset input (name, digest of its examples, source).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from study import augment as augment_mod
from study.core.hashing import stable_hash
from study.core.paths import runs_dir
from study.execution.tracking import DatasetRecord
from study.tasks.catalogue import TASKS, load_task, version_identity
from study.tasks.spec import Split, TaskSpec
from study.tasks.splits import subsample
from study.tasks.types import get_type
from study.tasktypes.sequence import TokenizedSplit
from study.training.trainer import teacher_logits


class DataCache:
    """Per-process cache of splits and tokenised datasets for one data directory."""

    def __init__(self, data_dir: Path | None, cache_dir: Path | None = None):
        self.data_dir = data_dir
        self.cache_dir = cache_dir or runs_dir() / "cache"
        self._raw: dict[str, dict[str, Split]] = {}
        self._tok: dict[tuple, TokenizedSplit] = {}
        self._logits: dict[tuple[str, int], torch.Tensor] = {}
        self._digests: dict[int, tuple[str, int]] = {}  # id of a tokenised split: (digest, rows)

    def raw(self, dataset: str) -> dict[str, Split]:
        if dataset not in self._raw:
            self._raw[dataset] = load_task(dataset, self.data_dir)
        return self._raw[dataset]

    def train_split(self, dataset: str, max_examples: int | None, data_seed: int,
                    augmentation: list[dict] | str | None = None,
                    augmentation_params: dict | None = None, augmentation_seed: int = 0) -> Split:
        """The (subsampled, augmented) training split; the subsample depends on ``data_seed`` only,
        so the teacher and every student see the same examples.

        ``augmentation``: the resolved steps (``augment.resolve_pipeline``), applied by
        ``augment.augment_pipeline`` with ``augmentation_seed``; each step cached on disk under
        ``<cache_dir>/augment``. A policy name with ``augmentation_params`` (the single-policy
        form) is still accepted.

        Raises:
            StudyConfigError: an unknown policy or parameter, or a model that cannot be loaded.
        """
        split = subsample(self.raw(dataset)["train"], max_examples, data_seed)
        steps = _steps(augmentation, augmentation_params)
        if not steps:
            return split
        # a shipped task's version (from 2) too: augmented examples of an older split are not reused
        key = stable_hash({"dataset": dataset, "n": max_examples, "data_seed": data_seed,
                           **version_identity(dataset)}, 12)
        out, _ = augment_mod.augment_pipeline(split, steps, augmentation_seed,
                                              cache_dir=self.cache_dir,
                                              cache_key=f"{dataset}-{key}")
        return out

    def tokenized(self, dataset: str, split_name: str, tokenizer, max_length: int,
                  max_examples: int | None = None, data_seed: int = 0,
                  augmentation: list[dict] | str | None = None,
                  augmentation_params: dict | None = None,
                  augmentation_seed: int = 0) -> TokenizedSplit:
        """A split tokenised; ``augmentation`` as in ``train_split`` (train split only)."""
        steps = _steps(augmentation, augmentation_params) if split_name == "train" else []
        aug_key = stable_hash({"steps": steps}, 12) if steps else ""
        key = (dataset, split_name, tokenizer.name_or_path, max_length, max_examples, data_seed,
               aug_key, augmentation_seed if steps else None)
        if key not in self._tok:
            if split_name == "train":
                split = self.train_split(dataset, max_examples, data_seed, steps,
                                         augmentation_seed=augmentation_seed)
            else:
                split = subsample(self.raw(dataset)[split_name], max_examples, data_seed)
            spec = TASKS[dataset]
            self._tok[key] = get_type(spec.task_type).tokenize(spec, split, tokenizer, max_length)
            self._digests[id(self._tok[key])] = (split_digest(split), len(split))
        return self._tok[key]

    def record(self, dataset: str, split_name: str, data: TokenizedSplit, context: str) -> DatasetRecord:
        """``data`` (a split this cache tokenised) as a dataset input: ``<dataset>/<split>``, the
        digest of its (subsampled, augmented) examples, and where it was read from."""
        digest, rows = self._digests[id(data)]
        source_type, source = data_source(TASKS[dataset], split_name, self.data_dir)
        return DatasetRecord(f"{dataset}/{split_name}", digest, context, source_type, source, rows)

    def tokenized_dev(self, dataset: str, tokenizer, max_length: int, max_examples: int | None = None):
        """The dev split tokenised, with its labels (a list) for scoring: class ids or scores, tag
        id sequences (token classification), reference answer texts (extractive QA)."""
        ds = self.tokenized(dataset, "dev", tokenizer, max_length, max_examples)
        return ds, get_type(TASKS[dataset].task_type).dev_labels(ds)

    def teacher_logits(self, teacher_id: str, teacher: torch.nn.Module, data: TokenizedSplit,
                       tokenizer, device: torch.device, precision: str = "fp32") -> torch.Tensor:
        """The teacher's (N, C) (or (N, T_max, C), ``trainer.teacher_logits``) logits on a tokenised
        split in ``precision`` (the teacher's, part of its id), computed once per (teacher, split)."""
        key = (teacher_id, id(data), precision)  # tokenised splits live as long as this cache
        if key not in self._logits:
            self._logits[key] = teacher_logits(teacher, data, tokenizer, device, precision=precision)
        return self._logits[key]


def _steps(augmentation: list[dict] | str | None, params: dict | None) -> list[dict]:
    """Resolved steps from a list of steps, or from the single-policy form (a name and its
    parameters)."""
    if augmentation is None or isinstance(augmentation, str):
        name = augmentation or "none"
        return augment_mod.resolve_pipeline(name, {name: params} if params else {})
    if params:
        raise TypeError("augmentation_params goes with a policy name, not with resolved steps")
    return [{"name": s["name"], "params": augment_mod.resolve_params(s["name"], s.get("params"))}
            for s in augmentation]


def split_digest(split: Split) -> str:
    """A short hash of a split's texts and labels, in order (a subsample's or augmented copy's own)."""
    return hashlib.sha256(repr((split.texts, split.labels)).encode()).hexdigest()[:16]


def data_source(spec: TaskSpec, split_name: str, data_dir: Path | None) -> tuple[str, dict]:
    """Where a task's split is read from, as an MLflow dataset source: ``("local", {"uri": file
    relative to the data directory})`` (the file a derived split is cut from, for a split rule),
    or ``("hugging_face", {"path", "config_name", "split"})`` for the hub."""
    files = dict(spec.files)
    if files and (spec.root is not None or data_dir is not None):
        name = spec.split.source if spec.split and split_name not in files else split_name
        folder = spec.folder
        if spec.root is None and spec.collection and (Path(data_dir) / spec.collection / folder).is_dir():
            folder = f"{spec.collection}/{folder}"
        uris = [e.path if spec.root is not None else f"{folder}/{e.path}" for e in files.get(name, ())]
        return "local", {"uri": ",".join(uris), "task": spec.name}
    hub = spec.hub
    if hub is None:
        return "code", {"task": spec.name}
    return "hugging_face", {"path": hub.path, "config_name": hub.config or "",
                            "split": dict(hub.splits).get(split_name, split_name)}
