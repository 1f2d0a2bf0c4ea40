"""``upper``: the last L_s teacher layers, in order (Distiller's ``last``; PKD-Last plus the top pair)."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import OneToOneMapping


class Upper(OneToOneMapping):
    """Student layer m learns from teacher layer ``L_t - L_s + m``, m = 1..L_s: the top L_s teacher
    layers, in order (Distiller's ``last`` strategy, He et al. 2021). Example: L_s=2, L_t=6 ->
    (1, 5), (2, 6). With embeddings (the ``hidden`` and ``cls`` features) the pair (0, 0) joins.
    Weights are equal.

    How it differs from PKD-Last (Sun et al. 2019, "Patient Knowledge Distillation for BERT Model
    Compression", sec. 3.1): PKD's released code distils student layers 1..L_s-1 only, from
    teacher layers L_t - L_s + 1 .. L_t - 1 (for 3 student layers from 12, ``--fc_layer_idx
    9,10``, i.e. teacher layers 10 and 11), leaving the top layer to the prediction-layer loss;
    ours adds the top pair (L_s, L_t), and (0, 0) with embeddings.

    Raises:
        StudyConfigError: a student deeper than its teacher.
    """

    name: ClassVar[str] = "upper"

    def teacher_layer(self, m: int) -> int:
        return self.teacher_layers - self.student_layers + m
