"""Grid expansion, validation and cell identity."""

from __future__ import annotations

import copy
import hashlib

import pytest
import yaml

from study.grid import load_grid, parse_grid, stable_hash
from study.paths import grids_dir
from study.registry import StudyConfigError

SPEC = {
    "name": "t",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["ce", "logit_kd"],
             "initialisation": ["random", "teacher_lower"], "augmentation": ["none"], "seed": [0, 1]},
    "training": {"epochs": 1, "learning_rate": 1.0e-4},
}


def test_smoke_grid_expands_to_8_valid_cells():
    cells = load_grid("smoke").validate()
    assert len(cells) == 8
    assert {c.objective for c in cells} >= {"ce", "logit_kd"} and len({c.initialisation for c in cells}) == 2
    assert len({c.cell_id for c in cells}) == 8


def test_full_grid_expands_and_validates():
    grid = load_grid("full")
    cells = grid.validate()
    # 6 datasets x 3 sizes x 5 objectives x 4 initialisations x 2 augmentations x 3 seeds,
    # minus L4_H256 with the 3 teacher_* initialisations (6 x 5 x 3 x 2 x 3 = 540).
    assert len(cells) == 6 * 3 * 5 * 4 * 2 * 3 - 540 == 1620
    assert not [c for c in cells if c.student == "L4_H256" and c.initialisation != "random"]
    assert len(grid.teachers()) == 6  # one teacher per dataset, shared by its cells


def test_cell_id_ignores_key_order_and_follows_semantics():
    a = parse_grid(SPEC).cells()
    reordered = {k: SPEC[k] for k in reversed(list(SPEC))}
    reordered["axes"] = {k: SPEC["axes"][k] for k in reversed(list(SPEC["axes"]))}
    assert [c.cell_id for c in parse_grid(reordered).cells()] == [c.cell_id for c in a]
    # Writing a default explicitly is the same choice.
    explicit = copy.deepcopy(SPEC)
    explicit["objective_params"] = {"logit_kd": {"temperature": 2.0, "alpha": 0.5}}
    assert [c.cell_id for c in parse_grid(explicit).cells()] == [c.cell_id for c in a]
    # Changing what changes the result changes the id; the grid's name does not.
    changed = copy.deepcopy(SPEC)
    changed["training"]["learning_rate"] = 2.0e-4
    assert not {c.cell_id for c in parse_grid(changed).cells()} & {c.cell_id for c in a}
    renamed = dict(SPEC, name="other")
    assert [c.cell_id for c in parse_grid(renamed).cells()] == [c.cell_id for c in a]


def test_cell_identity_holds_no_machine_paths():
    cell = parse_grid(SPEC).cells()[0]
    text = repr(cell.identity)
    assert "/" not in text.replace("sentence-transformers/all-MiniLM-L6-v2", "")
    assert cell.identity["teacher"]["teacher"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_stable_hash_is_pinned():
    # Guards the canonical form: if this moves, every stored cell id moves with it.
    assert stable_hash({"b": 1, "a": [0.1, "x", None, True]}) == stable_hash({"a": [0.1, "x", None, True], "b": 1})
    # Canonical form: sorted keys, no spaces, floats as their repr (a string), then sha256.
    expected = hashlib.sha256(b'{"a":"0.1","b":[1,true,null]}').hexdigest()[:16]
    assert stable_hash({"b": [1, True, None], "a": 0.1}) == expected


def test_display_name():
    cell = parse_grid(SPEC).cells()[0]
    assert cell.name == "sst2-L2_H384-ce-random-none-s0"
    assert cell.params()["objective"] == "ce" and cell.params()["learning_rate"] == "0.0001"


def test_exclude_with_lists():
    spec = copy.deepcopy(SPEC)
    spec["exclude"] = [{"objective": "ce", "initialisation": ["teacher_lower"]}, {"seed": 1}]
    names = [c.name for c in parse_grid(spec).cells()]
    assert names == ["sst2-L2_H384-ce-random-none-s0", "sst2-L2_H384-logit_kd-random-none-s0",
                     "sst2-L2_H384-logit_kd-teacher_lower-none-s0"]


@pytest.mark.parametrize("mutate, needle", [
    (lambda s: s["axes"].update(objective=["logit_kdd"]), "'logit_kdd'"),
    (lambda s: s["axes"].update(initialisation=["teacher_lowr"]), "Did you mean 'teacher_lower'"),
    (lambda s: s.update(trainig={}), "Unknown key 'trainig'"),
    (lambda s: s["axes"].update(dataset=["sst3"]), "'sst3'"),
    (lambda s: s["axes"].update(student=["2L_384"]), "L{layers}_H{hidden}"),
    (lambda s: s["axes"].update(seed=[-1]), "-1"),
    (lambda s: s["training"].update(epochs=0), "epochs"),
    (lambda s: s.update(objective_params={"logit_kd": {"temprature": 2}}), "'temprature'"),
    (lambda s: s.update(exclude=[{"objective": "mse"}]), "'mse'"),
])
def test_bad_grids_name_the_bad_value(mutate, needle):
    spec = copy.deepcopy(SPEC)
    mutate(spec)
    with pytest.raises(StudyConfigError) as info:
        parse_grid(spec).validate()
    assert needle in str(info.value)


def test_width_mismatch_with_teacher_initialisation_is_refused():
    spec = copy.deepcopy(SPEC)
    spec["axes"]["student"] = ["L2_H384", "L4_H256"]
    with pytest.raises(StudyConfigError) as info:
        parse_grid(spec).validate()
    msg = str(info.value)
    assert "L4_H256" in msg and "teacher_lower" in msg and "H384" in msg and "exclude" in msg
    spec["exclude"] = [{"student": "L4_H256", "initialisation": "teacher_lower"}]
    assert len(parse_grid(spec).validate()) == 12


def test_unknown_grid_name_lists_shipped_grids():
    with pytest.raises(StudyConfigError) as info:
        load_grid("smok")
    assert "smoke" in str(info.value) and "full" in str(info.value)


def test_shipped_grids_are_valid_yaml_with_their_file_name():
    for path in grids_dir().glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["name"] == path.stem
