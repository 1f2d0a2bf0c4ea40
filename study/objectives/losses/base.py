"""The contract of an intermediate loss: what it is given, what it returns.

``loss(student, teacher, mask, index)`` compares one student feature with one teacher feature:

- ``student``, ``teacher``: tensors of the feature's kind (see ``study.objectives.features``):
  ``states`` (B, T, H_s) / (B, T, H_t); ``vector`` (B, H_s) / (B, H_t); ``distribution`` and
  ``scores`` (B, A_s, T, T) / (B, A_t, T, T). Both at least float32; the teacher's is a constant.
- ``mask``: (B, T) bool, True = real token. Padding never enters a loss.
- ``index``: (B,) int64, each example's row in the training set (for memory banks), or None.

It returns a scalar tensor (at least float32) that is 0, or its minimum, when the student's
feature equals the teacher's. Learned parts (projections, critics) are submodules: the trainer
optimises ``objective.parameters()`` with the student's. What a loss may know about the run comes
through ``LossContext``, never through trainer flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from study.core.errors import StudyConfigError
from study.core.registry import Registry
from study.objectives.component import Component

#: Every intermediate loss, by name; its package's modules are imported on first read.
INTERMEDIATE_LOSSES: Registry = Registry("intermediate loss", "study.objectives.losses")


@dataclass(frozen=True)
class LossContext:
    """What a loss may know when it is built.

    ``feature``/``kind``: the feature compared and its kind; ``student_dim``/``teacher_dim``: the
    last dimension of ``states``/``vector`` features (H_s, H_t; heads count A for maps);
    ``train_size``: number of training examples (memory banks); ``pairs``: how many layer pairs
    the mapping compares with this loss.
    """

    feature: str
    kind: str
    student_dim: int
    teacher_dim: int
    train_size: int = 0
    pairs: int = 1


class IntermediateLoss(Component, torch.nn.Module):
    """Base class; subclasses set ``name``, ``accepts`` (feature kinds), ``defaults``, ``forward``."""

    registry: ClassVar[Registry] = INTERMEDIATE_LOSSES
    kind: ClassVar[str] = "intermediate loss"
    accepts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: dict[str, Any] | None, context: LossContext):
        torch.nn.Module.__init__(self)
        self.check_kind(context.feature, context.kind)
        self.params = self.resolve(params)
        self.context = context

    @classmethod
    def check_kind(cls, feature: str, kind: str) -> None:
        """Raise StudyConfigError when this loss cannot compare features of ``kind``."""
        if kind not in cls.accepts:
            raise StudyConfigError(
                f"Intermediate loss {cls.name!r} does not apply to feature {feature!r} (a {kind} "
                f"feature); it takes {', '.join(cls.accepts)} features.")

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor,
                index: Tensor | None = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Projection(torch.nn.Module):
    """A learned ``nn.Linear(H_s, H_t)`` when widths differ (TinyBERT's W_h), else the identity."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.linear = torch.nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else None

    def forward(self, x: Tensor) -> Tensor:
        if self.linear is None:
            return x
        return self.linear(x.to(self.linear.weight.dtype)).to(x.dtype)


def real_tokens(x: Tensor, mask: Tensor) -> Tensor:
    """(B, T, H) states -> (N, H) rows of the N real tokens; (B, H) vectors pass through."""
    if x.dim() == 2:
        return x
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (B, T) = {tuple(x.shape[:2])}")
    return x[mask]


def head_average(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """(B, A_s, T, T), (B, A_t, T, T): when A_s != A_t, average both over heads (keeps rows
    distributions), giving (B, 1, T, T) each; otherwise return them unchanged."""
    if student.shape[1] != teacher.shape[1]:
        return student.mean(dim=1, keepdim=True), teacher.mean(dim=1, keepdim=True)
    return student, teacher


def query_rows(mask: Tensor) -> Tensor:
    """(B, T) bool -> (B, 1, T, T) bool: real query rows and real key columns."""
    return mask[:, None, :, None] & mask[:, None, None, :]
