"""``skip``: every k-th teacher layer (TinyBERT's uniform strategy; Distiller's ``skip``)."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import OneToOneMapping


class Skip(OneToOneMapping):
    """Student layer m learns from teacher layer ``g(m) = m * L_t // L_s`` (Jiao et al. 2020,
    "TinyBERT", sec. 3.1, the uniform strategy; Distiller's ``skip``; Sun et al. 2019's PKD-Skip).

    With embeddings (hidden states, [CLS]) the pair (0, 0) joins, as in TinyBERT. When L_t is not
    a multiple of L_s the ratio is rounded down, so the last student layer still maps to the last
    teacher layer. Examples: L_s=2, L_t=6 -> (1, 3), (2, 6); L_s=3, L_t=6 -> (1, 2), (2, 4), (3, 6).
    Weights are equal.

    Raises:
        StudyConfigError: a student deeper than its teacher.
    """

    name: ClassVar[str] = "skip"

    def teacher_layer(self, m: int) -> int:
        return m * self.teacher_layers // self.student_layers
