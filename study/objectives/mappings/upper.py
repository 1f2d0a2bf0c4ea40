"""``upper``: the last L_s teacher layers, in order (PKD-Last; Distiller's ``last``)."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import OneToOneMapping


class Upper(OneToOneMapping):
    """Student layer m learns from teacher layer ``L_t - L_s + m`` (Sun et al. 2019, "Patient
    Knowledge Distillation for BERT Model Compression", sec. 3.1, PKD-Last; Distiller's ``last``
    strategy, He et al. 2021). Example: L_s=2, L_t=6 -> (1, 5), (2, 6). With embeddings the pair
    (0, 0) joins. Weights are equal.

    Raises:
        StudyConfigError: a student deeper than its teacher.
    """

    name: ClassVar[str] = "upper"

    def teacher_layer(self, m: int) -> int:
        return self.teacher_layers - self.student_layers + m
