"""Soft cross-entropy between features (Distiller's intermediate ``ce``; TextBrewer's ``attention_ce``)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from study.core.errors import StudyConfigError
from study.objectives.losses.base import (
    IntermediateLoss,
    Projection,
    head_average,
    query_rows,
    real_tokens,
)

# Student probabilities are clamped to EPS before the log (as ``kl`` does), so a key the teacher
# attends to and the student gives exactly 0 costs a large finite amount, not inf.
EPS = 1e-12


def _row_ce(p_teacher: Tensor, log_p_student: Tensor) -> Tensor:
    """``-sum_j p_t[j] log p_s[j]`` over the last dimension (0 where the teacher puts 0)."""
    return -(p_teacher * log_p_student).sum(dim=-1)


class CE(IntermediateLoss):
    """Soft cross-entropy ``H(p_t, p_s) = -sum_j p_t[j] log p_s[j]`` between the teacher's and the
    student's distributions, per row, averaged over the rows.

    Distiller (He et al. 2021) lists cross-entropy among its intermediate losses (``ce`` in its
    released table, ``../shared/data/published/distiller``); its layer-mapping code names the loss
    ``<feature>_ce`` (``hidden_ce``, ``attention_ce``), after TextBrewer's ``attention_ce``. What
    each row is:

    - ``scores`` (B, A, T, T), unnormalised attention scores: softmax over the real keys of each
      real query row, teacher and student, as TextBrewer's ``att_ce_loss``; mean over heads and
      real query rows. Head counts that differ are head-averaged first.
    - ``distribution`` (B, A, T, T), attention probabilities: the rows as they are; the same mean.
      This is ``kl`` plus the teacher's entropy, so it has ``kl``'s gradient.
    - ``states`` (B, T, H_s) / (B, T, H_t) and ``vector`` (B, H_s) / (B, H_t): softmax over the
      hidden dimension of ``W h_s / tau`` and ``h_t / tau`` (``W`` a learned ``nn.Linear(H_s, H_t)``
      when widths differ, else the identity); mean over real tokens (or examples). Distiller's code
      does not show how it normalises a hidden state; the softmax over the hidden units at
      ``temperature`` tau (default 1) is our reading, stated here.

    Units: nats per row. Minimum: the teacher's entropy, reached when the student's row equals the
    teacher's (the gradient there is 0); padded rows and keys reach neither the loss nor the
    gradient.
    """

    name: ClassVar[str] = "ce"
    accepts: ClassVar[tuple[str, ...]] = ("states", "vector", "scores", "distribution")
    defaults: ClassVar[dict] = {"temperature": 1.0}

    def __init__(self, params, context):
        super().__init__(params, context)
        if not float(self.params["temperature"]) > 0:
            raise StudyConfigError(f"Intermediate loss 'ce': temperature must be above 0, got "
                                   f"{self.params['temperature']!r}.")
        if context.kind in ("states", "vector"):
            self.projection = Projection(context.student_dim, context.teacher_dim)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        if self.context.kind in ("states", "vector"):
            tau = float(self.params["temperature"])
            s = self.projection(real_tokens(student, mask)) / tau  # (N, H_t)
            t = real_tokens(teacher, mask) / tau
            return _row_ce(torch.softmax(t, dim=-1), torch.log_softmax(s, dim=-1)).mean()
        s, t = head_average(student, teacher)  # (B, A, T, T)
        valid = query_rows(mask)  # (B, 1, T, T): real query rows x real keys
        if self.context.kind == "scores":
            low = torch.finfo(s.dtype).min
            log_p_s = torch.log_softmax(s.masked_fill(~valid, low), dim=-1)
            p_t = torch.softmax(t.masked_fill(~valid, low), dim=-1)
        else:
            log_p_s = torch.log(torch.where(valid, s, 1.0).clamp(min=EPS))
            p_t = t
        p_t = torch.where(valid, p_t, 0.0)  # padded rows and keys: weight 0 (and no nan)
        log_p_s = torch.where(valid, log_p_s, 0.0)
        per_row = _row_ce(p_t, log_p_s).mean(dim=1)  # (B, T): mean over heads
        return per_row.sum() / mask.sum().clamp(min=1)
