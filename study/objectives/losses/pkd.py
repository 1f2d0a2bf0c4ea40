"""Patient KD: squared distance between L2-normalised features (Sun et al. 2019, eq. 3)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from study.objectives.losses.base import IntermediateLoss, Projection, real_tokens

# A zero vector is left at zero rather than divided by 0 (F.normalize's eps).
EPS = 1e-12


class PKD(IntermediateLoss):
    """``|| W h_s / |W h_s| - h_t / |h_t| ||_2^2``, averaged over examples (or real tokens).

    BERT-PKD (Sun et al. 2019, "Patient Knowledge Distillation for BERT Model Compression",
    eq. 3, L_PT) compares the [CLS] representations of mapped layers after L2 normalisation,
    summing over the hidden dimension; the paper also sums over examples and layers, here the
    mean over examples is taken (the layer mapping weighs the layers), as TextBrewer's
    ``pkd_loss`` does. On ``vector`` features (the ``cls`` feature) this is the paper's loss; on
    ``states`` every real token is normalised and compared, then averaged.

    Shapes: ``vector`` (B, H_s) / (B, H_t), or ``states`` (B, T, H_s) / (B, T, H_t) with mask
    (B, T). ``W`` is a learned ``nn.Linear(H_s, H_t)`` applied before normalising when widths
    differ, else the identity. Since both rows have unit norm the value equals ``2 (1 - cos)``:
    twice the ``cosine`` loss. Units: a number in [0, 4]; 0 when the directions agree.
    """

    name: ClassVar[str] = "pkd"
    accepts: ClassVar[tuple[str, ...]] = ("vector", "states")

    def __init__(self, params, context):
        super().__init__(params, context)
        self.projection = Projection(context.student_dim, context.teacher_dim)

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        s = F.normalize(self.projection(real_tokens(student, mask)), dim=-1, eps=EPS)  # (N, H_t)
        t = F.normalize(real_tokens(teacher, mask), dim=-1, eps=EPS)  # (N, H_t)
        return (s - t).pow(2).sum(dim=-1).mean()
