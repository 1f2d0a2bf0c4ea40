"""The prediction-layer loss: gold labels against the teacher's predictions.

One convention for alpha across the catalogue, Sultan et al. 2024's::

    loss = (1 - alpha) * L_gold + alpha * L_teacher

so alpha = 0 is plain fine-tuning and alpha = 1 learns from the teacher alone. Mapping to other
papers: Hinton et al. 2015 and TinyBERT use alpha as here; DistilBERT's ``alpha_ce`` weighs the
KL term (= alpha) and ``alpha_mlm`` the gold term; this project's earlier ``objective_params``
``alpha`` weighed the gold term (= 1 - alpha; converted by ``study.objectives.presets``).

Classification, with s = student logits and t = teacher logits (B, C), tau_t and tau_s the teacher
and student temperatures, p_t = softmax(t / tau_t), q_s = softmax(s / tau_s):

- ``kl``: ``tau_s^2 * KL(p_t || q_s)`` (Hinton et al. 2015; nats per example, ``batchmean``)
- ``soft_ce``: ``tau_s^2 * H(p_t, q_s) = tau_s^2 * (KL(p_t || q_s) + H(p_t))`` (Distiller's and
  TextBrewer's ``ce``: same gradient as ``kl``, a value offset by the teacher's entropy)
- ``mse``: ``tau_s^2 * MSE(s / tau_s, t / tau_t)`` over B x C entries (Ba & Caruana 2014 at tau 1)

The tau_s^2 factor keeps the soft-target gradients at the scale of the gold term as the student
temperature changes (Hinton et al., sec. 2: the gradient w.r.t. s carries 1/tau_s); with
tau_t = tau_s = T it is Hinton's T^2. Regression (C = 1): the teacher term is
``MSE(s, t)`` for every distance (a softmax over one output is constant), temperatures unused.
``L_gold`` is CE to the labels (nats per example) or, for regression, MSE to the label.

Which terms a task uses is its task type's ``output`` (``study.tasks.types.TaskType``):
"classes" (the classification terms above), "score" (the regression terms) or "span" (below); its
``kd_view`` picks what is compared. Tasks with more than one prediction per sequence read
``positions`` (B, T) bool, the positions the loss compares (``KDInputs.positions``):

- ``token_classification``: s, t (B, T, C) and labels (B, T) are gathered at the P labelled
  positions (first sub-tokens) to (P, C) and (P,); then both terms are as for classification,
  per labelled token. Masked positions never reach the loss.
- ``extractive_qa``: s, t (B, T, 2) hold the start and end logits, labels (B, 2) the gold start
  and end tokens. ``L_gold`` = (CE(s_start, y_start) + CE(s_end, y_end)) / 2 over the whole
  window (as Hugging Face's QA heads); the teacher term is the mean over start and end of the
  distance between (B, T) distributions whose positions outside ``positions`` are set to -1e4
  before the softmax (``mse`` compares the unmasked entries only).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from study.core.errors import StudyConfigError
from study.core.registry import lookup
from study.core.schema import PositiveNumber, UnitNumber, validate_settings
from study.tasks.types import get_type

DISTANCES = {
    "kl": "KL(p_t || q_s) scaled by tau_s^2 (Hinton et al. 2015)",
    "soft_ce": "cross-entropy H(p_t, q_s) scaled by tau_s^2 (Distiller, TextBrewer 'ce')",
    "mse": "MSE between tempered logits scaled by tau_s^2 (Ba & Caruana 2014)",
}


class PredictionSettings(BaseModel):
    """The prediction slot as written; ``distance`` is checked by ``resolve`` (unused at alpha 0)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
    distance: Any = "kl"
    teacher_temperature: PositiveNumber = 2.0
    student_temperature: PositiveNumber = 2.0
    alpha: UnitNumber = 0.5


DEFAULTS: dict[str, Any] = PredictionSettings().model_dump()
VERSION = "1"


def resolve(params: dict[str, Any] | None) -> dict[str, Any]:
    """The full prediction slot: defaults updated by ``params``, checked and normalised.

    With ``alpha == 0`` the teacher term is unused, so the slot becomes ``{"distance": "none",
    "alpha": 0.0}``: cells that train the same way get one identity.

    Raises:
        StudyConfigError: an unknown key or distance (did-you-mean), or a value out of range.
    """
    out = validate_settings(PredictionSettings, params or {}, "prediction", noun="parameter")
    if out["distance"] != "none" or out["alpha"] != 0.0:
        if not isinstance(out["distance"], str):
            raise StudyConfigError(f"prediction.distance must be a name, got {out['distance']!r}.")
        lookup(DISTANCES, out["distance"], "prediction distance")
    if out["alpha"] == 0.0:
        return {"distance": "none", "alpha": 0.0}
    return out


def _classes_gold(student_logits: Tensor, labels: Tensor) -> tuple[str, Tensor]:
    return "loss_ce", F.cross_entropy(f32(student_logits), labels.long())


def _classes_teacher(student_logits: Tensor, teacher_logits: Tensor, params: dict[str, Any],
                     positions: Tensor | None = None) -> Tensor:
    tau_t, tau_s = params["teacher_temperature"], params["student_temperature"]
    s, t = f32(student_logits), f32(teacher_logits).detach()
    if params["distance"] == "mse":
        return tau_s * tau_s * F.mse_loss(s / tau_s, t / tau_t)
    log_q = F.log_softmax(s / tau_s, dim=-1)
    log_p = F.log_softmax(t / tau_t, dim=-1)
    if params["distance"] == "kl":
        value = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    else:  # soft_ce
        value = -(log_p.exp() * log_q).sum(dim=-1).mean()
    return tau_s * tau_s * value


def _score_gold(student_logits: Tensor, labels: Tensor) -> tuple[str, Tensor]:
    s = regression_output(student_logits)
    return "loss_mse", F.mse_loss(s, labels.to(s.dtype))


def _score_teacher(student_logits: Tensor, teacher_logits: Tensor, params: dict[str, Any],
                   positions: Tensor | None = None) -> Tensor:
    return F.mse_loss(regression_output(student_logits), regression_output(teacher_logits).detach())


#: Fill value of masked positions before a softmax over a window's tokens (extractive QA).
MASKED = -1e4


def span_gold_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """(CE(start) + CE(end)) / 2, nats per window. student_logits (B, T, 2); labels (B, 2)."""
    s = f32(student_logits)
    return (F.cross_entropy(s[..., 0], labels[:, 0].long()) + F.cross_entropy(s[..., 1], labels[:, 1].long())) / 2


def span_teacher_loss(student_logits: Tensor, teacher_logits: Tensor, positions: Tensor,
                      params: dict[str, Any]) -> Tensor:
    """Mean over start and end of the teacher term between (B, T) distributions over the window's
    ``positions`` (B, T) bool; student_logits, teacher_logits (B, T, 2)."""
    keep = positions.bool()
    values = []
    for k in (0, 1):
        s, t = f32(student_logits[..., k]), f32(teacher_logits[..., k])  # (B, T)
        if params["distance"] == "mse":
            values.append(_classes_teacher(s[keep], t[keep], params))
        else:
            values.append(_classes_teacher(s.masked_fill(~keep, MASKED), t.masked_fill(~keep, MASKED), params))
    return (values[0] + values[1]) / 2


#: TaskType.output -> (gold term: (s, y) -> (component name, loss), teacher term: (s, t, params,
#: positions) -> loss); a task type picks its pair by what one prediction is, never by its name
LOSSES = {
    "classes": (_classes_gold, _classes_teacher),
    "score": (_score_gold, _score_teacher),
    "span": (lambda s, y: ("loss_ce", span_gold_loss(s, y)),
             lambda s, t, params, positions: span_teacher_loss(s, t, positions, params)),
}


def gold_loss(student_logits: Tensor, labels: Tensor, task_type: str) -> tuple[str, Tensor]:
    """``("loss_ce", CE(s, y))`` (classes, nats per example) or ``("loss_mse", MSE(s, y))``
    (a score), as the task type's ``output`` says.

    student_logits: (B, C) float, or (B, 1) for regression; labels: (B,) int64 or float.

    Raises:
        StudyConfigError: unknown task type.
    """
    return LOSSES[get_type(task_type).output][0](student_logits, labels)


def teacher_loss(student_logits: Tensor, teacher_logits: Tensor, params: dict[str, Any], task_type: str,
                 positions: Tensor | None = None) -> Tensor:
    """The teacher term of the slot ``params`` (see the module docstring), a float32+ scalar;
    ``positions`` (B, T) bool for a span task.

    Raises:
        StudyConfigError: unknown task type.
    """
    return LOSSES[get_type(task_type).output][1](student_logits, teacher_logits, params, positions)


def prediction_loss(student_logits: Tensor, labels: Tensor, teacher_logits: Tensor | None,
                    params: dict[str, Any], task_type: str, positions: Tensor | None = None) -> dict[str, Tensor]:
    """``(1 - alpha) * L_gold + alpha * L_teacher`` and its components (detached).

    Returns ``{"loss", "loss_ce"|"loss_mse", ["loss_kd"]}``; ``loss_kd`` only when alpha > 0.
    The task type says what is compared (``kd_view``: e.g. the labelled positions of token
    classification) and with which pair of terms (its ``output``, a key of ``LOSSES``).
    ``positions`` (B, T) bool: required where the type ``needs_positions`` (token_classification,
    extractive_qa; see the module docstring).

    Raises:
        ValueError: alpha > 0 and no ``teacher_logits``; a token-level task without positions.
        StudyConfigError: unknown task type.
    """
    ttype = get_type(task_type)
    student_logits, labels, teacher_logits = ttype.kd_view(student_logits, labels, teacher_logits, positions)
    gold_term, teacher_term = LOSSES[ttype.output]
    name, gold = gold_term(student_logits, labels)
    alpha = params["alpha"]
    if alpha == 0.0:
        return {"loss": gold, name: gold.detach()}
    if teacher_logits is None:
        raise ValueError("the prediction-layer loss has alpha > 0 but no teacher logits were given")
    kd = teacher_term(student_logits, teacher_logits.detach(), params, positions)
    return {"loss": (1.0 - alpha) * gold + alpha * kd, name: gold.detach(), "loss_kd": kd.detach()}


def regression_output(logits: Tensor) -> Tensor:
    """(B, 1) or (B,) -> (B,), at least float32.

    Raises:
        ValueError: logits of another shape.
    """
    if logits.dim() == 2:
        if logits.shape[-1] != 1:
            raise ValueError(f"Regression expects logits of shape (B, 1), got {tuple(logits.shape)}.")
        logits = logits.squeeze(-1)
    return f32(logits)


def f32(x: Tensor) -> Tensor:
    """Upcast bf16/fp16 to float32; float32 and float64 are returned unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
