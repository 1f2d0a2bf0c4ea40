"""The ``last`` mapping and its ``teacher_layer`` (MiniLMv2's layer selection)."""

from __future__ import annotations

import pytest

from study.core.errors import StudyConfigError
from study.grid import parse_grid
from study.objectives.mappings import LAYER_MAPPINGS


def test_last_pairs_the_last_layers_by_default():
    mapping = LAYER_MAPPINGS["last"](None, student_layers=3, teacher_layers=6)
    assert mapping.pairs() == [(3, 6, 1.0)]
    assert mapping.layers_used() == ({3}, {6})


def test_teacher_layer_selects_the_teacher_layer():
    mapping = LAYER_MAPPINGS["last"]({"teacher_layer": 4}, student_layers=3, teacher_layers=6)
    assert mapping.pairs() == [(3, 4, 1.0)]
    assert mapping.layers_used() == ({3}, {4})


@pytest.mark.parametrize("bad", [0, 7, 2.5, True, "5"])
def test_teacher_layer_outside_the_teacher_is_refused(bad):
    with pytest.raises(StudyConfigError, match=r"teacher_layer must be an integer in 1\.\.6.*" + repr(bad)[:2]):
        LAYER_MAPPINGS["last"]({"teacher_layer": bad}, student_layers=3, teacher_layers=6).layers_used()


def test_teacher_layer_is_an_axis_and_part_of_the_cell_id():
    spec = {"name": "sel", "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["minilm"],
                                    "intermediate.teacher_layer": [4, 6]}}
    cells = parse_grid(spec).cells()
    assert len({c.cell_id for c in cells}) == 2
    assert {e["teacher_layer"] for c in cells for e in c.intermediate} == {4, 6}
