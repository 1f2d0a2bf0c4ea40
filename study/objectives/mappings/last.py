"""``last``: only the last layer of each model (MiniLM, Wang et al. 2020, sec. 3.1)."""

from __future__ import annotations

from typing import ClassVar

from study.objectives.mappings.base import FixedMapping, Pair


class Last(FixedMapping):
    """The single pair (L_s, L_t): MiniLM distils the last Transformer layer only (Wang et al.
    2020, sec. 3.1). The embeddings never join. (Distiller's ``last`` maps every student layer
    onto the last L_s teacher layers: that is ``upper``.)"""

    name: ClassVar[str] = "last"

    def pairs(self) -> list[Pair]:
        return [(self.student_layers, self.teacher_layers, 1.0)]
