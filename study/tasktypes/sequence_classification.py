"""Sequence classification (``task_type: classification``): a sentence or a sentence pair -> one
of the declared classes (SST-2, CoLA, MRPC, RTE, WNLI, SST-5, TREC, MR, SUBJ, BoolQ).

The YAML declares the class names in id order (``labels``; the hub's order for GLUE). A label in
a GLUE TSV is a class name or an int id; in every other format it must be one of the declared
names (a JSON true/false reads as "true"/"false", a JSON integer as its digits). Prediction-layer
KD compares the (B, C) class logits (``output = "classes"``).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import model_validator

from study.core.errors import StudyConfigError
from study.tasks.metrics import metrics_of
from study.tasks.schema import SequenceDoc, names_list, validate_task
from study.tasks.spec import TaskSpec
from study.tasks.types import register
from study.tasktypes.sequence import SequenceTaskType


class ClassificationDoc(SequenceDoc):
    """A classification task's YAML: ``labels`` (two or more class names) and no ``label_range``."""

    @model_validator(mode="after")
    def _classes(self):
        if self.labels is None:
            raise ValueError("a classification task declares its label set: labels: [name, ...].")
        labels = names_list(self.labels, "labels")
        if len(labels) < 2:
            raise ValueError(f"labels declares {len(labels)} class; a classification needs two or more.")
        if self.label_range is not None:
            raise ValueError("label_range is for regression tasks.")
        for split, entry in (self.files or {}).items():
            for e in entry if isinstance(entry, list) else ():
                if str(e.label) not in labels:
                    raise ValueError(f"files.{split}: label {e.label!r} is not one of the declared labels {list(labels)}.")
        return self


@register("classification")
class SequenceClassification(SequenceTaskType):
    """(B, C) logits over the declared classes; targets (B,) int64 class ids."""

    metrics = metrics_of("classes")
    output = "classes"

    def parse(self, doc, where, root):
        d = validate_task(ClassificationDoc, doc, where)
        labels = names_list(d.labels, "labels")
        return TaskSpec(**d.common(where, root), **d.fields(), num_labels=len(labels), label_names=labels)

    def label(self, spec: TaskSpec, value: Any, where: str) -> int:
        if spec.format == "glue_tsv":
            return _glue_label(spec, value, where)
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = str(value)
        if isinstance(value, str) and value in spec.label_names:
            return spec.label_names.index(value)
        raise StudyConfigError(
            f"{where}: label {value!r} is not one of the declared labels {list(spec.label_names)}"
        )

    def hub_label(self, spec: TaskSpec, value: Any) -> int:
        return spec.label_names.index(value) if isinstance(value, str) and value in spec.label_names else int(value)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, labels.long(), reduction="sum")


def _glue_label(spec: TaskSpec, value: str, where: str) -> int:
    """A GLUE TSV label: a class name or an int id in ``[0, num_labels)``."""
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
