"""The ``upper`` layer mapping (PKD-Last; Distiller's ``last``)."""

from __future__ import annotations

import pytest
import torch

from study.core.errors import StudyConfigError
from study.objectives.mappings import LAYER_MAPPINGS


def pairs(ls, lt, embeddings=False):
    return LAYER_MAPPINGS["upper"](None, student_layers=ls, teacher_layers=lt, embeddings=embeddings).pairs()


def test_upper_maps_onto_the_last_teacher_layers_in_order():
    assert pairs(2, 6) == [(1, 5, 0.5), (2, 6, 0.5)]
    assert pairs(3, 12) == [(1, 10, 1 / 3), (2, 11, 1 / 3), (3, 12, 1 / 3)]
    assert pairs(6, 6) == [(m, m, 1 / 6) for m in range(1, 7)]
    assert [(m, n) for m, n, _ in pairs(2, 6, embeddings=True)] == [(0, 0), (1, 5), (2, 6)]


def test_upper_combines_pair_losses_with_equal_weights():
    mapping = LAYER_MAPPINGS["upper"](None, student_layers=2, teacher_layers=4)
    seen = []

    def pair_loss(m, n):
        seen.append((m, n))
        return torch.tensor(float(10 * m + n))

    assert mapping(pair_loss).item() == pytest.approx((13 + 24) / 2)
    assert seen == [(1, 3), (2, 4)] and mapping.layers_used() == ({1, 2}, {3, 4})


def test_deeper_student_is_refused():
    with pytest.raises(StudyConfigError, match="7 > 6"):
        pairs(7, 6)
