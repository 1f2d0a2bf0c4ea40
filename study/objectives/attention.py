"""Attention transfer (``attention_kl``): match self-attention distributions, as MiniLM does.

Not to be confused with torchdistill's ``ATLoss`` (attention maps of CNN feature maps).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from study.objectives.base import IntermediateObjective, KDInputs, f32, real_token_mask, require

# Student probabilities are clamped to EPS before the log so that a key the teacher attends to
# and the student gives exactly 0 costs a large finite amount, not inf.
EPS = 1e-12


def attention_kl(teacher: Tensor, student: Tensor, mask: Tensor) -> Tensor:
    """Mean KL(A_t || A_s) over heads and real query rows, in nats per (query row, head).

    Args:
        teacher: (B, A_t, T, T) attention probabilities, each query row sums to 1.
        student: (B, A_s, T, T) attention probabilities.
        mask: (B, T) bool, True = real token.

    Per query row i: ``KL_i = sum_j A_t[i, j] (log A_t[i, j] - log max(A_s[i, j], EPS))``, with
    ``0 log 0 = 0``. Only real keys j enter the sum (HF already gives padded keys ~0
    probability; masking them makes the loss independent of what padded positions hold). Rows
    of padded queries are left out of the mean. When A_s != A_t, both are first averaged over
    heads, which keeps them distributions, and a single head-averaged KL is compared.
    """
    if teacher.shape[1] != student.shape[1]:
        teacher = teacher.mean(dim=1, keepdim=True)  # (B, 1, T, T)
        student = student.mean(dim=1, keepdim=True)
    # Replace padded query rows and key columns by constants before the log, so whatever they
    # hold (even nan) reaches neither the loss nor the gradient.
    valid = mask[:, None, :, None] & mask[:, None, None, :]  # (B, 1, T, T)
    teacher = torch.where(valid, f32(teacher), 0.0)
    student = torch.where(valid, f32(student), 1.0)
    per_key = torch.xlogy(teacher, teacher) - teacher * torch.log(student.clamp(min=EPS))
    per_row = per_key.sum(dim=-1).mean(dim=1)  # (B, T): KL per query row, mean over heads; 0 at padding
    return per_row.sum() / mask.sum().clamp(min=1)


class AttentionKL(IntermediateObjective):
    """Attention transfer (Wang et al. 2020, "MiniLM", eq. 4 (attention-distribution term);
    layer-mapped variant as in Wang et al. 2023, "How to Distill your BERT", and TinyBERT)::

        loss_attention = 1/|P| sum_{(m, n) in P} KL(A_t[n] || A_s[m])
        loss           = logit_loss + beta * loss_attention

    ``A_s[m]`` is ``student_attentions[m - 1]`` (B, A_s, T, T) and ``A_t[n]`` is
    ``teacher_attentions[n - 1]`` (B, A_t, T, T), softmax probabilities (HF
    ``output_attentions`` with eager attention). The KL is per query row, averaged over heads
    and real query tokens (see ``attention_kl``). P = layer_mapping(kind, L_s, L_t); MiniLM
    itself uses ``last``. Head-count mismatch: head-averaged distributions are compared.
    """

    name: ClassVar[str] = "attention_kl"
    version: ClassVar[str] = "1"
    needs_attentions: ClassVar[bool] = True
    include_embeddings: ClassVar[bool] = False
    component: ClassVar[str] = "loss_attention"

    def intermediate_loss(self, inputs: KDInputs) -> Tensor:
        student = require(inputs, "student_attentions", self.name)
        teacher = require(inputs, "teacher_attentions", self.name)
        for what, maps, layers in (("student", student, self.student_layers), ("teacher", teacher, self.teacher_layers)):
            if len(maps) != layers:
                raise ValueError(
                    f"Objective {self.name!r}: {what}_attentions has {len(maps)} tensors, "
                    f"expected {layers} (one per layer)."
                )
        B, _, T, _ = student[0].shape
        mask = real_token_mask(inputs.attention_mask, (B, T), self.name)
        losses = [attention_kl(teacher[n - 1].detach(), student[m - 1], mask) for m, n in self.pairs]
        return torch.stack(losses).mean()
