"""What a task type brings, and the registry keyed by a task YAML's ``task_type``.

A task type is one module of ``study.tasktypes`` that subclasses ``TaskType`` and registers an
instance with ``@register`` under each ``task_type`` value it serves; ``TASK_TYPES`` imports those
modules on its first read. Everything that depends on what one label is asks the task's type:

| what                          | method / attribute             | used by                                  |
|-------------------------------|--------------------------------|------------------------------------------|
| the YAML's own keys           | ``parse`` (a ``TaskDoc`` model) | ``study.tasks.schema.parse_task``        |
| reading a file                | ``read_file``, ``read_hub``    | ``study.tasks.catalogue.load_task``      |
| tokenisation, label alignment | ``tokenize``, ``collator``     | ``study.execution.datacache``, ``study.training.trainer`` |
| the model head                | ``auto_class``, ``num_labels`` | ``study.models``, ``study.execution.teacher`` |
| targets and KD positions      | ``split_batch``, ``logits``    | ``study.training.trainer`` (``KDInputs``) |
| what prediction-layer KD compares | ``output``, ``kd_view``    | ``study.objectives.prediction``          |
| prediction and metric         | ``evaluate``, ``metrics``      | ``study.training.trainer`` (dev scores)  |
| what a cell may not use       | ``refuse``                     | ``study.grid.Grid.validate``             |
"""

from __future__ import annotations

import random
from typing import Any

import torch

from study.core.errors import StudyConfigError
from study.core.registry import Registry, did_you_mean
from study.tasks.spec import Split

#: task_type value -> the TaskType serving it; the modules of ``study.tasktypes`` are imported on
#: the first read, so a new type is one module there
TASK_TYPES: Registry["TaskType"] = Registry("task_type", "study.tasktypes")


class FeatureDataset(torch.utils.data.Dataset):
    """Tokenised features kept unpadded (``self.features``: one dict per feature with
    ``input_ids`` and the type's targets); batches are padded per batch by the type's collator.
    Every task type's tokenised split derives from it."""

    features: list[dict]

    @property
    def lengths(self) -> list[int]:
        """Token count of each feature (no padding)."""
        return [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def register(*names: str):
    """Class decorator: register an instance of the class under each ``task_type`` name.

    Raises:
        ValueError: a name is already registered by another type.
    """
    def wrap(cls):
        for name in names:
            TASK_TYPES.add(name, cls(name))
        return cls
    return wrap


def names() -> tuple[str, ...]:
    """The registered ``task_type`` values, sorted."""
    return TASK_TYPES.names()


def get_type(name: str) -> "TaskType":
    """The task type registered as ``name``.

    Raises:
        StudyConfigError: unknown name (lists the registered ones and the closest).
    """
    return TASK_TYPES.get(name)


class TaskType:
    """The base of every task type; a subclass overrides what differs.

    ``name`` is the YAML's ``task_type`` it was registered under; ``auto_class`` the Hugging Face
    auto class of its head; ``metrics`` the metric names its tasks may list; ``version`` enters
    every cell's identity through the task's ``options`` (``study.tasks.catalogue.task_identity``)
    only for the types that record it (token classification, extractive QA).
    """

    auto_class: Any = None
    metrics: tuple[str, ...] = ()
    #: ``extra`` keys of a tokenised feature that are padded by ``PadCollator`` (key -> pad value)
    pad_values: dict[str, int] = {}
    version = "1"

    def __init__(self, name: str):
        self.name = name

    # ------------------------------------------------------------------ data
    def parse(self, doc: dict, where: str, root) -> Any:
        """The ``TaskSpec`` of a task YAML of this type: validate ``doc`` with the type's model
        (a ``study.tasks.schema.TaskDoc`` subclass, ``validate_task``) and build the spec.
        ``study.tasks.schema.parse_task`` then checks its metrics and splits.

        Raises:
            StudyConfigError: a key the type does not take, or a value it refuses."""
        raise NotImplementedError

    def read_file(self, spec, path, entry, group_by: str | None):
        """``(Split, groups)`` of one data file (groups: each example's ``group_by`` value)."""
        raise NotImplementedError

    def read_hub(self, spec):
        """``{split: Split}`` from the task's hub dataset."""
        raise NotImplementedError

    def num_labels(self, spec) -> int:
        return spec.num_labels

    # ------------------------------------------------------------------ model input and output
    def tokenize(self, spec, split, tokenizer, max_length: int):
        """A ``torch.utils.data.Dataset`` of features (dicts) with ``lengths`` and ``idx`` per feature."""
        raise NotImplementedError

    def collator(self, tokenizer):
        """Pads a list of features into a batch of tensors."""
        return PadCollator(tokenizer, self.pad_values)

    def logits(self, output) -> torch.Tensor:
        """The head's output as one tensor: (B, C), (B, T, C) or (B, T, 2)."""
        return output.logits

    # ------------------------------------------------------------------ prediction-layer KD
    #: what one prediction of the head is, which picks the prediction-layer loss
    #: (``study.objectives.prediction.LOSSES``): "classes" (logits over C classes: cross-entropy
    #: to the gold class, a tempered distance to the teacher's distribution), "score" (one real
    #: value: squared error to the gold score and to the teacher's), "span" (start and end logits
    #: over a window's tokens)
    output = "classes"
    #: whether the loss compares logits at ``KDInputs.positions`` (B, T) only
    needs_positions = False

    def kd_view(self, student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                positions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The (student logits, labels, teacher logits) the prediction-layer loss of ``output``
        compares; sequence types compare (B, C) logits as they are.

        Raises:
            ValueError: ``needs_positions`` and no ``positions``.
        """
        if self.needs_positions and positions is None:
            raise ValueError(f"a {self.name} task needs KDInputs.positions (the positions the loss compares)")
        return student_logits, labels, teacher_logits

    def split_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pop the targets (and any position mask) from ``batch`` in place, leaving model inputs;
        returns ``(labels, positions)`` for ``KDInputs``."""
        return batch.pop("labels"), None

    def dev_labels(self, data) -> list:
        """What ``evaluate`` scores ``data``'s predictions against."""
        raise NotImplementedError

    def evaluate(self, model, loader, data, labels: list, spec, device, precision: str = "fp32") -> dict[str, float]:
        """The task's metrics (fractions), ``score`` (mean of its score metrics) and ``loss``;
        the forward passes under ``study.core.device.autocast(device, precision)``."""
        raise NotImplementedError

    def tokens_per_example(self, spec, split, tokenizer, max_length: int, sample: int = 256) -> float:
        """Mean tokens the model reads per example of ``split`` at ``max_length`` (every window of
        a long one), over a seeded sample of ``sample`` examples tokenised as training tokenises
        them (``tokenize``); what ``study.execution.forecast`` prices an example by."""
        idx = sorted(random.Random(0).sample(range(len(split)), min(sample, len(split))))
        sub = Split([split.texts[i] for i in idx], [split.labels[i] for i in idx])
        return sum(self.tokenize(spec, sub, tokenizer, max_length).lengths) / max(len(sub), 1)

    # ------------------------------------------------------------------ what a cell may use
    #: what rewriting an input's text would break, for types whose labels point into the text
    #: (word tags, answer spans): such a type refuses augmentation and mix-up (``refuse``)
    labels_bound_to_text: str | None = None

    def refuse(self, cell) -> str | None:
        """Why ``cell`` cannot run on a task of this type, or None: where ``labels_bound_to_text``
        says what would break, augmentation (it rewrites the text) and mix-up (it interpolates
        whole inputs)."""
        if self.labels_bound_to_text is None:
            return None
        if cell.augmentation != "none":
            return (f"augmentation {cell.augmentation!r} rewrites the text, which would break "
                    f"{self.labels_bound_to_text} of {self.name}; use augmentation: none.")
        if cell.mixup:
            return f"mix-up interpolates whole inputs; it is not defined for {self.name}."
        return None

    @staticmethod
    def scored(metrics: dict[str, float], spec, loss_sum: float, count: int) -> dict[str, float]:
        """The dev metrics a task declares (``spec.metrics``), its ``score`` (the mean of
        ``spec.score``'s metrics) and ``loss`` (``loss_sum / count``, nats per counted unit)."""
        out = {m: metrics[m] for m in spec.metrics}
        out["score"] = float(sum(out[m] for m in spec.score) / len(spec.score))
        out["loss"] = loss_sum / max(count, 1)
        return out

    def check_metrics(self, spec, where: str) -> None:
        """Raise StudyConfigError when the task lists a metric this type does not compute."""
        unknown = [m for m in spec.metrics if m not in self.metrics]
        if unknown:
            raise StudyConfigError(f"Task file {where}: unknown metric {unknown[0]!r} for task_type "
                                   f"{self.name}. Allowed: {', '.join(self.metrics)}."
                                   + did_you_mean(unknown[0], self.metrics))


class PadCollator:
    """``tokenizer.pad`` for the model inputs, then right-padding of each key in ``pad_values``
    (token labels with -100, position masks with 0) to the batch's length T."""

    def __init__(self, tokenizer, pad_values: dict[str, int]):
        self.tokenizer = tokenizer
        self.pad_values = dict(pad_values)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        extra = {k: [f[k] for f in features] for k in self.pad_values if k in features[0]}
        rest = [{k: v for k, v in f.items() if k not in extra} for f in features]
        batch = dict(self.tokenizer.pad(rest, return_tensors="pt"))
        T = batch["input_ids"].shape[1]
        for key, values in extra.items():
            out = torch.full((len(values), T), self.pad_values[key], dtype=torch.long)
            for i, v in enumerate(values):
                out[i, :len(v)] = torch.as_tensor(v, dtype=torch.long)
            batch[key] = out  # (B, T)
        return batch
