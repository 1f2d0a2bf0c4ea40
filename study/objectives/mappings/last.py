"""``last``: only the last layer of each model (MiniLM, Wang et al. 2020, sec. 3.1)."""

from __future__ import annotations

from typing import ClassVar

from study.core.errors import StudyConfigError
from study.objectives.mappings.base import FixedMapping, Pair


class Last(FixedMapping):
    """The single pair (L_s, L_t): MiniLM distils the last Transformer layer only (Wang et al.
    2020, sec. 3.1). The embeddings never join. (Distiller's ``last`` maps every student layer
    onto the last L_s teacher layers: that is ``upper``.)"""

    name: ClassVar[str] = "last"
    #: ``teacher_layer``: which teacher layer (1-based) the student's last layer learns from; None
    #: is the teacher's last. MiniLMv2 distils an upper-middle layer of large teachers (Wang et al.
    #: 2021, sec. 3.3); Wang et al. 2023's task-agnostic code calls it ``--layer_selection``.
    defaults: ClassVar[dict] = {"teacher_layer": None}

    def pairs(self) -> list[Pair]:
        """[(L_s, t, 1.0)], t the ``teacher_layer`` or L_t.

        Raises:
            StudyConfigError: ``teacher_layer`` is not an integer in 1..L_t.
        """
        layer = self.params.get("teacher_layer")
        if layer is None:
            return [(self.student_layers, self.teacher_layers, 1.0)]
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= self.teacher_layers:
            raise StudyConfigError(f"Layer mapping 'last': teacher_layer must be an integer in 1..{self.teacher_layers} "
                                   f"(the teacher's layers), got {layer!r}.")
        return [(self.student_layers, layer, 1.0)]
