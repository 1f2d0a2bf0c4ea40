"""KL divergence between distributions (MiniLM, Wang et al. 2020, eq. 4-6)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from study.objectives.losses.base import IntermediateLoss, head_average, query_rows

# Student probabilities are clamped to EPS before the log so that a key the teacher attends to
# and the student gives exactly 0 costs a large finite amount, not inf.
EPS = 1e-12


def distribution_kl(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Mean KL(P_t || P_s) over heads and real query rows, in nats per (query row, head).

    Args:
        student: (B, A_s, T, T) probability rows. teacher: (B, A_t, T, T). mask: (B, T) bool.

    Per row i: ``KL_i = sum_j P_t[i, j] (log P_t[i, j] - log max(P_s[i, j], EPS))`` over real
    keys j, ``0 log 0 = 0``. Padded rows and keys are replaced by constants before the log, so
    whatever they hold (even nan) reaches neither the loss nor the gradient. When A_s != A_t both
    are head-averaged first.
    """
    student, teacher = head_average(student, teacher)
    valid = query_rows(mask)  # (B, 1, T, T)
    teacher = torch.where(valid, teacher, 0.0)
    student = torch.where(valid, student, 1.0)
    per_key = torch.xlogy(teacher, teacher) - teacher * torch.log(student.clamp(min=EPS))
    per_row = per_key.sum(dim=-1).mean(dim=1)  # (B, T): KL per query row, mean over heads
    return per_row.sum() / mask.sum().clamp(min=1)


class KL(IntermediateLoss):
    """KL(teacher || student) between attention or relation distributions (MiniLM eq. 4 for
    attention, eq. 6 for value relations; MiniLMv2 eq. 2-3 for Q-Q/K-K/V-V relations).
    See ``distribution_kl``; nats per (query row, head).

    0 exactly when the student's rows equal the teacher's. A student identical to its teacher
    reaches it only when both forward passes agree (no dropout, or the same dropout masks): in
    training the student's hidden dropout makes its maps differ from the eval-mode teacher's, so
    it pays a small positive KL (see ``study.objectives.features``)."""

    name: ClassVar[str] = "kl"
    accepts: ClassVar[tuple[str, ...]] = ("distribution",)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        return distribution_kl(student, teacher, mask)
