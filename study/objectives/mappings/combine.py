"""``combine``: every layer of each model concatenated, the teacher's projected onto the student's
(Wang et al. 2023, "How to Distill your BERT", their code's ``combine`` mapping)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import StrictBool
from torch import Tensor

from study.core.errors import StudyConfigError
from study.objectives.mappings.base import ConcatMapping


class Combine(ConcatMapping):
    """Concatenate the features of every student layer (``h_s``: (B, T, n_s * H_s)) and of every
    teacher layer (``h_t``: (B, T, n_t * H_t)) along the feature axis, and project the teacher's
    with a learned ``nn.Linear(n_t * H_t, n_s * H_s)``; the entry's loss then compares ``h_s``
    with ``W h_t`` once. n counts layer 0 (the embeddings) where the feature has it, as their
    code's hidden states do: for a 12-layer H768 teacher and a 3-layer H768 student, 13 * 768 =
    9,984 -> 4 * 768 = 3,072 (PAPERS.md 2.4; their ``HiddenMSECombine`` in the task-agnostic code
    projects 9,216 -> 4,608 the same way). ``vector`` features (B, H) join the same way.

    The projection is the mapping's own parameter (trained with the student, checkpointed with
    the objective); the teacher's features are detached before it, so the gradient trains ``W``
    and the student, never the teacher. Units: those of the loss (MSE: squared feature units,
    averaged over real tokens and the n_s * H_s features).

    Raises:
        StudyConfigError: the widths were not given (the mapping is built by the objective, which
            knows them), or the feature is an attention map (``check_kind``).
    """

    name: ClassVar[str] = "combine"
    version: ClassVar[str] = "1"
    #: ``projection: false`` joins without the linear map: the loss gets (n_s * H_s, n_t * H_t)
    #: features and sizes them itself (CRD's embedding heads: Wang et al.'s CRD concatenates the
    #: [CLS] vector of every layer, 4 * 768 = 3,072 and 13 * 768 = 9,984, PAPERS.md 2.4).
    defaults: ClassVar[dict] = {"projection": True}
    checks: ClassVar[dict] = {"projection": StrictBool}

    def __init__(self, params, *, student_layers: int, teacher_layers: int, **kwargs):
        super().__init__(params, student_layers=student_layers, teacher_layers=teacher_layers, **kwargs)
        if self.student_dim < 1 or self.teacher_dim < 1:
            raise StudyConfigError("Layer mapping 'combine' needs the features' widths (student_dim, teacher_dim), "
                                   f"got {self.student_dim!r} and {self.teacher_dim!r}.")
        n_s, n_t = (len(layers) for layers in self.layers_used())
        self.widths = (n_s * self.student_dim, n_t * self.teacher_dim)
        self.projection = torch.nn.Linear(self.widths[1], self.widths[0]) if self.params["projection"] else None

    def joined_dims(self) -> tuple[int, int]:
        return (self.widths[0], self.widths[0]) if self.projection is not None else self.widths

    def join(self, student: list[Tensor], teacher: list[Tensor]) -> tuple[Tensor, Tensor]:
        """(student concat (..., n_s * H_s), teacher concat projected to (..., n_s * H_s), or as it
        is (..., n_t * H_t) without the projection); ``student`` and ``teacher`` list every used
        layer's features in layer order."""
        joined = torch.cat(teacher, dim=-1)
        return torch.cat(student, dim=-1), joined if self.projection is None else self.projection(joined)
