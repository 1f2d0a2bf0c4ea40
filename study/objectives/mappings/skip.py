"""``skip``: student layer m from teacher layer floor(m * L_t / L_s) (TinyBERT's uniform strategy)."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import OneToOneMapping


class Skip(OneToOneMapping):
    """Student layer m learns from teacher layer ``g(m) = floor(m * L_t / L_s)`` for m = 1..L_s
    (Jiao et al. 2020, "TinyBERT", sec. 3.1, the uniform strategy).

    The product m * L_t is divided by L_s and the quotient rounded down, so g(L_s) = L_t always:
    the last student layer meets the last teacher layer. When L_s divides L_t this is every
    (L_t / L_s)-th teacher layer. It is not m * floor(L_t / L_s) (rounding the ratio first), which
    for L_s=4, L_t=6 would give teacher layers 1, 2, 3, 4 instead of ours 1, 3, 4, 6.
    Examples: L_s=2, L_t=6 -> (1, 3), (2, 6); L_s=3, L_t=6 -> (1, 2), (2, 4), (3, 6);
    L_s=4, L_t=6 -> (1, 1), (2, 3), (3, 4), (4, 6). Weights are equal. With embeddings (the
    ``hidden`` and ``cls`` features) the pair (0, 0) joins, as in TinyBERT's embedding loss.

    How it differs from PKD-Skip (Sun et al. 2019, "Patient Knowledge Distillation for BERT Model
    Compression", sec. 3.1): PKD's released code distils student layers 1..L_s-1 only (for 6
    student layers from 12, ``--fc_layer_idx 1,3,5,7,9``, i.e. teacher layers 2, 4, 6, 8, 10),
    leaving the top layer to the prediction-layer loss; ours adds the top pair (L_s, L_t), and
    (0, 0) with embeddings. Distiller's released ``cal_layer_mapping`` (He et al. 2021, strategy
    ``skip``) computes ``int(i * L_t / L_s)``: the same pairs, (0, 0) and the top pair included
    for hidden states.

    Raises:
        StudyConfigError: a student deeper than its teacher.
    """

    name: ClassVar[str] = "skip"

    def teacher_layer(self, m: int) -> int:
        return m * self.teacher_layers // self.student_layers
