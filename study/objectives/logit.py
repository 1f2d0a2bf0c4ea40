"""Logit objectives: hard labels only (``ce``), logit KD (``logit_kd``), logit MSE (``logit_mse``).

Every loss is computed in at least float32 (bf16/fp16 inputs are upcast: a low-precision
softmax/KL is lossy; float64 inputs stay float64).
Components in the returned dict are unweighted and detached; only ``"loss"`` carries gradient.

- ``loss_ce``: cross-entropy to the hard labels, nats per example (classification).
- ``loss_mse``: mean squared error to the label (regression), in squared label units.
- ``loss_kd``: the teacher term. For ``logit_kd`` on classification, ``T^2 * KL``; otherwise the
  MSE between student and teacher logits.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from study.objectives.base import KDInputs, Objective, f32, require


def hard_label_loss(student_logits: Tensor, labels: Tensor, task_type: str) -> tuple[str, Tensor]:
    """Loss to the ground truth, returned as ``(component_name, value)``.

    Classification: ``CE(s, y) = -1/B sum_b log softmax(s_b)[y_b]`` (nats per example), with
    ``student_logits`` (B, C) and ``labels`` (B,) int64.
    Regression: ``MSE(s, y) = 1/B sum_b (s_b - y_b)^2`` with ``student_logits`` (B, 1) and
    ``labels`` (B,) float.
    """
    if task_type == "regression":
        s = _regression_output(student_logits)
        return "loss_mse", F.mse_loss(s, labels.to(s.dtype))
    return "loss_ce", F.cross_entropy(f32(student_logits), labels.long())


def _regression_output(logits: Tensor) -> Tensor:
    """(B, 1) or (B,) -> (B,), at least float32."""
    if logits.dim() == 2:
        if logits.shape[-1] != 1:
            raise ValueError(f"Regression expects logits of shape (B, 1), got {tuple(logits.shape)}.")
        logits = logits.squeeze(-1)
    return f32(logits)


def _total(alpha: float, label_term: tuple[str, Tensor], teacher_term: Tensor) -> dict[str, Tensor]:
    name, label_loss = label_term
    loss = alpha * label_loss + (1.0 - alpha) * teacher_term
    return {"loss": loss, name: label_loss.detach(), "loss_kd": teacher_term.detach()}


class CE(Objective):
    """No distillation: the student trained on hard labels only.

    ``loss = CE(s, y)`` (classification, nats per example) or ``MSE(s, y)`` (regression).
    Returns ``{"loss", "loss_ce"}`` or ``{"loss", "loss_mse"}``.
    """

    name: ClassVar[str] = "ce"
    version: ClassVar[str] = "1"
    needs_teacher: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}

    def forward(self, inputs: KDInputs) -> dict[str, Tensor]:
        name, loss = hard_label_loss(inputs.student_logits, inputs.labels, self.task_type)
        return {"loss": loss, name: loss.detach()}


class LogitKD(Objective):
    """Logit KD (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    Classification, with s = student_logits (B, C), t = teacher_logits (B, C)::

        loss = alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))

    KL is in nats, summed over classes and averaged over the batch (``batchmean``). The T^2
    factor keeps the soft-target gradients at the same scale as T changes (Hinton et al.,
    sec. 2). ``loss_kd`` is reported as ``T^2 * KL``.

    Regression (C = 1; a softmax over one output is constant, so temperature is ignored)::

        loss = alpha * MSE(s, y) + (1 - alpha) * MSE(s, t)

    Note ``alpha`` weighs the hard-label term (unlike DistilBERT's ``alpha_ce``, which weighs KL).
    """

    name: ClassVar[str] = "logit_kd"
    version: ClassVar[str] = "1"
    needs_teacher: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"temperature": 2.0, "alpha": 0.5}

    def forward(self, inputs: KDInputs) -> dict[str, Tensor]:
        alpha = self.params["alpha"]
        s = inputs.student_logits
        t = require(inputs, "teacher_logits", self.name).detach()
        label_term = hard_label_loss(s, inputs.labels, self.task_type)
        if self.task_type == "regression":
            teacher_term = F.mse_loss(_regression_output(s), _regression_output(t))
        else:
            T = self.params["temperature"]
            kl = F.kl_div(
                F.log_softmax(f32(s) / T, dim=-1),
                F.log_softmax(f32(t) / T, dim=-1),
                log_target=True,
                reduction="batchmean",
            )
            teacher_term = T * T * kl
        return _total(alpha, label_term, teacher_term)


class LogitMSE(Objective):
    """Logit matching by mean squared error (Ba & Caruana 2014, "Do Deep Nets Really Need to be
    Deep?"; compared with KL in Kim et al. 2021, "Comparing Kullback-Leibler Divergence and Mean
    Squared Error Loss in Knowledge Distillation").

    ``loss = alpha * CE(s, y) + (1 - alpha) * MSE(s, t)``, the MSE averaged over B x C entries
    of s = student_logits, t = teacher_logits (B, C). Regression: ``CE`` becomes ``MSE(s, y)``.
    """

    name: ClassVar[str] = "logit_mse"
    version: ClassVar[str] = "1"
    needs_teacher: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"alpha": 0.5}

    def forward(self, inputs: KDInputs) -> dict[str, Tensor]:
        s = inputs.student_logits
        t = require(inputs, "teacher_logits", self.name).detach()
        label_term = hard_label_loss(s, inputs.labels, self.task_type)
        if self.task_type == "regression":
            teacher_term = F.mse_loss(_regression_output(s), _regression_output(t))
        else:
            teacher_term = F.mse_loss(f32(s), f32(t))
        return _total(self.params["alpha"], label_term, teacher_term)


# The logit terms an intermediate objective (hidden_mse, attention_kl) can add.
LOGIT_TERMS: dict[str, type[Objective]] = {cls.name: cls for cls in (CE, LogitKD, LogitMSE)}
