"""Mean squared error between features (TinyBERT, Jiao et al. 2020, eq. 6-8)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from study.objectives.losses.base import (
    IntermediateLoss,
    Projection,
    head_average,
    query_rows,
    real_tokens,
)


class MSE(IntermediateLoss):
    """MSE with a learned projection where widths differ (TinyBERT, Jiao et al. 2020).

    States/vectors (eq. 7): ``MSE(W h_s, h_t)``, averaged over real tokens (or examples) and the
    H_t features; ``W`` is ``nn.Linear(H_s, H_t)`` when H_s != H_t (shared by every layer pair of
    the entry, as TinyBERT's released ``fit_dense``), else the identity.
    Attention maps (eq. 6, on ``attention_scores`` or distributions): the mean over heads, real
    query rows and real keys of ``(A_s - A_t)^2``; head counts that differ are head-averaged.
    Units: squared feature units.
    """

    name: ClassVar[str] = "mse"
    accepts: ClassVar[tuple[str, ...]] = ("states", "vector", "scores", "distribution")

    def __init__(self, params, context):
        super().__init__(params, context)
        if context.kind in ("states", "vector"):
            self.projection = Projection(context.student_dim, context.teacher_dim)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        if self.context.kind in ("states", "vector"):
            s = self.projection(real_tokens(student, mask))  # (N, H_t)
            return (s - real_tokens(teacher, mask)).pow(2).mean()
        s, t = head_average(student, teacher)  # (B, A, T, T)
        valid = query_rows(mask).expand_as(s)
        return (s - t)[valid].pow(2).mean()
