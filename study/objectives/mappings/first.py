"""``first``: student layer m learns from teacher layer m (the lowest L_s teacher layers)."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import OneToOneMapping


class First(OneToOneMapping):
    """Student layer m learns from teacher layer m, m = 1..L_s: the bottom L_s teacher layers.

    With embeddings (hidden states, [CLS]) the pair (0, 0) joins. This is the bottom strategy that
    Jiao et al. 2020 (TinyBERT, ablation of mapping functions) compare with the uniform (``skip``)
    and top strategies; it pairs naturally with a student initialised from the teacher's lower
    layers. Examples: L_s=2, L_t=6 -> (1, 1), (2, 2). Weights are equal.

    Raises:
        StudyConfigError: a student deeper than its teacher.
    """

    name: ClassVar[str] = "first"

    def teacher_layer(self, m: int) -> int:
        return m
