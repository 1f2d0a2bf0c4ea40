"""``upper``: the last L_s teacher layers, in order (PKD-Last; Distiller's ``last``)."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import FixedMapping, Pair, equal_weights
from study.registry import StudyConfigError


class Upper(FixedMapping):
    """Student layer m learns from teacher layer ``L_t - L_s + m`` (Sun et al. 2019, "Patient
    Knowledge Distillation for BERT Model Compression", sec. 3.1, PKD-Last; Distiller's ``last``
    strategy, He et al. 2021). Example: L_s=2, L_t=6 -> (1, 5), (2, 6). With embeddings the pair
    (0, 0) joins. Weights are equal.

    Raises:
        StudyConfigError: a student deeper than its teacher.
    """

    name: ClassVar[str] = "upper"

    def pairs(self) -> list[Pair]:
        ls, lt = self.student_layers, self.teacher_layers
        if ls > lt:
            raise StudyConfigError(f"Layer mapping 'upper' needs student layers <= teacher layers, got {ls} > {lt}.")
        pairs = [(m, lt - ls + m) for m in range(1, ls + 1)]
        if self.embeddings:
            pairs = [(0, 0), *pairs]
        return equal_weights(pairs)
