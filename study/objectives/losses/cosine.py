"""Cosine distance between hidden states (DistilBERT, Sanh et al. 2019, sec. 2)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from study.objectives.losses.base import IntermediateLoss, Projection, real_tokens

# Norms are clamped to EPS (as torch's cosine_similarity does): a zero vector has cosine 0 to
# everything, so it costs 1 instead of nan.
EPS = 1e-8


class Cosine(IntermediateLoss):
    """``1 - cos(W h_s, h_t)``, averaged over real tokens (states) or examples (vectors).

    DistilBERT (Sanh et al. 2019, sec. 2, "cosine embedding loss (L_cos)"; the paper gives no
    equation number) aligns the directions of the student's and teacher's hidden states with
    ``nn.CosineEmbeddingLoss`` (target 1) over the real tokens of the last layer; this is that loss
    for any layer pair. Per row: ``1 - <a, b> / (max(|a|, eps) max(|b|, eps))``.

    Shapes: ``states`` (B, T, H_s) / (B, T, H_t) with mask (B, T), or ``vector`` (B, H_s) / (B, H_t).
    ``W`` is a learned ``nn.Linear(H_s, H_t)`` when the widths differ (DistilBERT has equal widths;
    TextBrewer's ``cos`` with ``proj`` does the same), else the identity. Units: a number in
    [0, 2]; 0 when every student row points the teacher's way.
    """

    name: ClassVar[str] = "cosine"
    accepts: ClassVar[tuple[str, ...]] = ("states", "vector")

    def __init__(self, params, context):
        super().__init__(params, context)
        self.projection = Projection(context.student_dim, context.teacher_dim)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        s = self.projection(real_tokens(student, mask))  # (N, H_t)
        t = real_tokens(teacher, mask)  # (N, H_t)
        return (1.0 - F.cosine_similarity(s, t, dim=-1, eps=EPS)).mean()
