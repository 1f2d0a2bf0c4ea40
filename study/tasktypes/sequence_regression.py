"""Sequence regression (``task_type: regression``): a sentence or a sentence pair -> one real
score, e.g. STS-B's semantic similarity in [0, 5] (Cer et al. 2017).

The YAML declares no label set; ``label_range: [low, high]`` (optional) bounds the gold scores,
and a score outside it (or not a finite number) is refused with its file and line. The head has
one output (``num_labels = 1``) trained with squared error; metrics are Pearson and Spearman
correlations. Prediction-layer KD compares the student's score to the teacher's with squared
error (``output = "score"``: a softmax over one output is constant, so temperatures are unused).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import model_validator

from study.core.errors import StudyConfigError
from study.tasks.formats import LINE_FORMATS
from study.tasks.metrics import metrics_of
from study.tasks.schema import SequenceDoc, validate_task
from study.tasks.spec import TaskSpec
from study.tasks.types import register
from study.tasktypes.sequence import SequenceTaskType


class RegressionDoc(SequenceDoc):
    """A regression task's YAML: no ``labels``; an optional ``label_range: [low, high]``."""

    @model_validator(mode="after")
    def _scores(self):
        if self.format in LINE_FORMATS:
            raise ValueError(f"format {self.format!r} holds class labels; task_type must be classification.")
        if self.labels is not None:
            raise ValueError("a regression task has no label set; use label_range: [low, high].")
        lr = self.label_range
        if lr is not None and (len(lr) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in lr) or lr[0] >= lr[1]):
            raise ValueError(f"label_range must be [low, high] with low < high, got {lr!r}.")
        return self

    def range(self) -> tuple[float, float] | None:
        return (float(self.label_range[0]), float(self.label_range[1])) if self.label_range else None


@register("regression")
class SequenceRegression(SequenceTaskType):
    """(B, 1) outputs; targets (B,) float32 scores."""

    metrics = metrics_of("scores")
    output = "score"
    label_dtype = torch.float32

    def parse(self, doc, where, root):
        d = validate_task(RegressionDoc, doc, where)
        return TaskSpec(**d.common(where, root), **d.fields(), num_labels=1, label_range=d.range())

    def label(self, spec: TaskSpec, value: Any, where: str) -> float:
        try:
            score = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            score = float("nan")
        low, high = spec.label_range or (-math.inf, math.inf)
        if not (low <= score <= high and math.isfinite(score)):  # also refuses nan
            expected = f"a number in [{low}, {high}]" if spec.label_range else "a finite number"
            raise StudyConfigError(f"{where}: score {value!r} is not {expected}")
        return score

    def hub_label(self, spec: TaskSpec, value: Any) -> float:
        return float(value)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1)

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float(), reduction="sum")
