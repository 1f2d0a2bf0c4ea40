"""``all_to_one``: every teacher layer to the last student layer."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import FixedMapping, Pair, equal_weights


class AllToOne(FixedMapping):
    """Pairs (L_s, n) for every teacher layer n = 1..L_t, equal weights 1/L_t: the last student
    layer learns from all teacher layers; the embeddings never join.

    The name has two readings in the literature. ALP-KD (Passban et al. 2021, "ALP-KD:
    Attention-Based Layer Projection for Knowledge Distillation") has each student layer learn
    from one combined teacher representation, an attention-weighted sum of all teacher layers
    whose weights depend on the features of each example; that needs the features themselves,
    not per-pair losses, so it cannot be a layer mapping under this contract (it would be a loss
    that reads several teacher layers). Distiller's released code (He et al. 2021,
    ``cal_layer_mapping``) offers ``skip``, ``last`` and ``emd`` only. This module implements the
    other reading, all teacher layers to one (the last) student layer, as weighted pairs: the mean
    of the L_t pair losses. Note that for MSE this is not the loss to the mean teacher layer (it
    adds the spread of the teacher layers around their mean).
    """

    name: ClassVar[str] = "all_to_one"

    def pairs(self) -> list[Pair]:
        return equal_weights([(self.student_layers, n) for n in range(1, self.teacher_layers + 1)])
