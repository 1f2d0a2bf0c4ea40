"""The ``all_to_one`` layer mapping: every teacher layer to the last student layer."""

from __future__ import annotations

import pytest
import torch

from study.objectives import LAYER_MAPPINGS


def test_pairs_weights_and_layers():
    mapping = LAYER_MAPPINGS["all_to_one"](None, student_layers=2, teacher_layers=4, embeddings=True)
    assert mapping.pairs() == [(2, 1, 0.25), (2, 2, 0.25), (2, 3, 0.25), (2, 4, 0.25)]
    assert mapping.layers_used() == ({2}, {1, 2, 3, 4})


def test_combined_loss_is_the_mean_over_teacher_layers():
    mapping = LAYER_MAPPINGS["all_to_one"](None, student_layers=3, teacher_layers=2)
    value = mapping(lambda m, n: torch.tensor(float(10 * m + n)))  # (31 + 32) / 2
    assert value.item() == pytest.approx(31.5)
