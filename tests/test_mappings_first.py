"""The ``first`` layer mapping: student layer m <- teacher layer m."""

from __future__ import annotations

import pytest
import torch

from study.core.errors import StudyConfigError
from study.objectives import LAYER_MAPPINGS


def pairs(ls, lt, embeddings=False):
    return LAYER_MAPPINGS["first"](None, student_layers=ls, teacher_layers=lt, embeddings=embeddings).pairs()


def test_pairs_and_weights():
    assert pairs(2, 6) == [(1, 1, 0.5), (2, 2, 0.5)]
    assert [(m, n) for m, n, _ in pairs(3, 3)] == [(1, 1), (2, 2), (3, 3)]
    with_emb = pairs(2, 6, embeddings=True)
    assert [(m, n) for m, n, _ in with_emb] == [(0, 0), (1, 1), (2, 2)]
    assert sum(w for _, _, w in with_emb) == pytest.approx(1.0)


def test_combines_pair_losses_and_reads_only_its_layers():
    mapping = LAYER_MAPPINGS["first"](None, student_layers=2, teacher_layers=6)
    assert mapping.layers_used() == ({1, 2}, {1, 2})
    value = mapping(lambda m, n: torch.tensor(10.0 * m + n))  # (11 + 22) / 2
    assert value.item() == pytest.approx(16.5)


def test_deeper_student_raises():
    with pytest.raises(StudyConfigError, match="8 > 6"):
        pairs(8, 6)
