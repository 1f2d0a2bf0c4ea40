"""Hidden-state transfer (``hidden_mse``): TinyBERT's intermediate-layer loss on hidden states."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from study.objectives.base import IntermediateObjective, KDInputs, f32, real_token_mask, require


class HiddenMSE(IntermediateObjective):
    """Hidden-state transfer (Jiao et al. 2020, "TinyBERT", eq. 7 for layers, eq. 8 embeddings).

    For the mapped layer pairs P = layer_mapping(kind, L_s, L_t), with the embedding pair
    (0, 0) under ``uniform`` as in TinyBERT::

        loss_hidden = 1/|P| sum_{(m, n) in P} MSE(W h_s[m], h_t[n])
        loss        = logit_loss + beta * loss_hidden

    ``h_s[m]`` is ``student_hidden[m]`` (B, T, H_s), ``h_t[n]`` is ``teacher_hidden[n]``
    (B, T, H_t); index 0 is the embedding output. Each MSE is averaged over the real tokens
    (``attention_mask == 1``) and the H_t features; padding positions never enter the loss.

    ``W`` is one learned ``nn.Linear(H_s, H_t, bias=True)`` shared by every pair, including the
    embeddings (TinyBERT's released code uses one ``fit_dense`` for all layers; the paper's
    separate W_e for embeddings is not used). It exists only when H_s != H_t; otherwise W is
    the identity and the objective has no parameters. The trainer must optimise
    ``objective.parameters()`` with the student's.
    """

    name: ClassVar[str] = "hidden_mse"
    version: ClassVar[str] = "1"
    needs_hidden: ClassVar[bool] = True
    include_embeddings: ClassVar[bool] = True
    component: ClassVar[str] = "loss_hidden"

    def __init__(self, params: dict | None, **dims: Any):
        super().__init__(params, **dims)
        self.projection: torch.nn.Module
        if self.student_hidden_size != self.teacher_hidden_size:
            self.projection = torch.nn.Linear(self.student_hidden_size, self.teacher_hidden_size, bias=True)
        else:
            self.projection = torch.nn.Identity()

    def intermediate_loss(self, inputs: KDInputs) -> Tensor:
        student = require(inputs, "student_hidden", self.name)
        teacher = require(inputs, "teacher_hidden", self.name)
        for what, states, layers in (("student", student, self.student_layers), ("teacher", teacher, self.teacher_layers)):
            if len(states) != layers + 1:
                raise ValueError(
                    f"Objective {self.name!r}: {what}_hidden has {len(states)} tensors, expected "
                    f"{layers + 1} (embeddings + {layers} layers)."
                )
        mask = real_token_mask(inputs.attention_mask, tuple(student[0].shape), self.name)  # (B, T)
        n_real = mask.sum().clamp(min=1)
        losses = []
        for m, n in self.pairs:
            h_s = student[m][mask]  # (N, H_s), N real tokens in the batch
            h_t = teacher[n].detach()[mask]  # (N, H_t)
            if isinstance(self.projection, torch.nn.Linear):
                h_s = h_s.to(self.projection.weight.dtype)  # autocast, when on, still applies
            diff = f32(self.projection(h_s)) - f32(h_t)  # (N, H_t)
            losses.append(diff.pow(2).sum() / (n_real * diff.shape[-1]))
        return torch.stack(losses).mean()
