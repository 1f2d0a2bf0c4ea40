"""Grid expansion, validation and cell identity."""

from __future__ import annotations

import copy
import hashlib

import pytest
import yaml

from study.core.errors import StudyConfigError
from study.core.hashing import stable_hash
from study.core.paths import grids_dir
from study.grid import available_grids, load_grid, parse_grid

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


def test_full_grid_expands_to_its_cells():
    grid = load_grid("full")
    cells = grid.validate()
    # 6 datasets x (L3_H384 x 5 initialisations + L4_H256 random) x 3 distances x 17 recipes
    # x 3 augmentations x 2 seeds.
    assert len(cells) == 6 * 6 * 3 * 17 * 3 * 2 == 11016
    assert not [c for c in cells if c.student == "L4_H256" and c.initialisation != "random"]
    assert len(grid.teachers()) == 6  # one teacher per dataset, shared by its cells


def _catalogue_axes() -> dict[str, list]:
    """One axis per registry, every registered choice on it (read from the registries, so a new
    component is covered without editing any grid file)."""
    from study.augment import AUGMENTATIONS
    from study.models import INITIALISATIONS
    from study.objectives.features import FEATURES
    from study.objectives.losses import INTERMEDIATE_LOSSES
    from study.objectives.mappings import LAYER_MAPPINGS
    from study.objectives.prediction import DISTANCES

    def takes(feature: str, loss: str) -> bool:
        return FEATURES[feature].kind in INTERMEDIATE_LOSSES[loss].accepts

    # each loss with a feature it takes, each feature with a loss that takes it
    pairs = [(next(f for f in FEATURES if takes(f, loss)), loss) for loss in INTERMEDIATE_LOSSES]
    pairs += [(f, next(loss for loss in INTERMEDIATE_LOSSES if takes(f, loss))) for f in FEATURES]
    pairs = list(dict.fromkeys(pairs))
    return {"intermediate": [[{"features": f, "loss": loss}] for f, loss in pairs],
            "intermediate.mapping": list(LAYER_MAPPINGS),
            "prediction.distance": list(DISTANCES),
            "initialisation": list(INITIALISATIONS),
            "augmentation": list(AUGMENTATIONS)}


@pytest.mark.parametrize("axis", ["intermediate", "intermediate.mapping", "prediction.distance",
                                  "initialisation", "augmentation"])
def test_every_registered_choice_is_a_valid_cell(axis):
    """The catalogue-coverage check: every registered loss, feature, mapping, distance,
    initialisation and augmentation expands and validates as a grid value."""
    values = _catalogue_axes()[axis]
    axes = {"dataset": ["sst2"], "student": ["L3_H384"], axis: values}
    if axis == "intermediate.mapping":
        axes["intermediate"] = [[{"features": "hidden", "loss": "mse"}]]
    cells = parse_grid({"name": "catalogue", "axes": axes, "training": {"epochs": 1}}).validate()
    assert len(cells) == len(values)


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
    (lambda s: s.update(group_size=0), "group_size must be an integer >= 1"),
    (lambda s: s.update(group_size="8"), "got '8'"),
])
def test_bad_grids_name_the_bad_value(mutate, needle):
    spec = copy.deepcopy(SPEC)
    mutate(spec)
    with pytest.raises(StudyConfigError) as info:
        parse_grid(spec).validate()
    assert needle in str(info.value)


def test_group_size_is_how_a_grid_runs_not_what_it_holds():
    """A grid's ``group_size`` (default 1) is read, and no cell id or grid version depends on it."""
    plain = parse_grid(SPEC)
    grouped = parse_grid(dict(SPEC, group_size=8))
    assert (plain.group_size, grouped.group_size) == (1, 8)
    assert [c.cell_id for c in grouped.cells()] == [c.cell_id for c in plain.cells()]
    assert grouped.version == plain.version


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


# ------------------------------------------------------------------------- the open cell

OPEN = {
    "name": "open",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "initialisation": ["teacher_lower"],
             "prediction.distance": ["kl", "mse"], "prediction.student_temperature": [1, 2],
             "intermediate.mapping": ["skip", "last"]},
    "intermediate": [{"features": "hidden", "loss": "mse"}],
    "training": {"epochs": 1},
}


def test_dotted_axes_reach_the_slots_and_are_the_factors():
    grid = parse_grid(OPEN)
    cells = grid.validate()
    assert len(cells) == 8 and len({c.cell_id for c in cells}) == 8
    assert grid.factors == ["intermediate.mapping", "prediction.distance", "prediction.student_temperature"]
    cell = next(c for c in cells if c.factors == {"intermediate.mapping": "last", "prediction.distance": "mse",
                                                  "prediction.student_temperature": "2"})
    assert cell.prediction == {"distance": "mse", "teacher_temperature": 2.0, "student_temperature": 2.0,
                               "alpha": 0.5}
    assert cell.intermediate == [{"features": "hidden", "loss": "mse", "mapping": "last", "weight": 1.0}]
    assert cell.objective == "custom"
    assert cell.name == "sst2-L2_H384-custom-teacher_lower-none-mapping=last-distance=mse-student_temperature=2-s0"
    params = cell.params()
    assert params["prediction.distance"] == "mse" and params["intermediate.0.mapping"] == "last"
    assert params["intermediate.mapping"] == "last"  # each factor by its axis name


def test_presets_keep_old_meanings_and_fixed_slots_apply_on_top():
    spec = dict(SPEC, axes=dict(SPEC["axes"], objective=["ce", "attention_kl"]))
    cells = {c.objective: c for c in parse_grid(spec).cells() if c.seed == 0 and c.initialisation == "random"}
    assert cells["ce"].prediction == {"distance": "none", "alpha": 0.0} and cells["ce"].intermediate == []
    assert cells["attention_kl"].intermediate == [{"features": "attention", "loss": "kl", "mapping": "skip",
                                                   "weight": 1.0}]
    # legacy objective_params: alpha weighed the gold term, so 0.2 there is 0.8 on the teacher
    legacy = dict(spec, objective_params={"attention_kl": {"alpha": 0.2, "layer_mapping": "last", "beta": 3}})
    cell = next(c for c in parse_grid(legacy).cells() if c.objective == "attention_kl")
    assert cell.prediction["alpha"] == pytest.approx(0.8)
    assert cell.intermediate[0]["mapping"] == "last" and cell.intermediate[0]["weight"] == 3.0


def test_choices_that_resolve_alike_are_one_cell():
    # alpha 0 never reads the teacher: the distance axis then makes no difference
    spec = {"name": "d", "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "prediction.alpha": [0, 0.5],
                                  "prediction.distance": ["kl", "mse"]}}
    cells = parse_grid(spec).cells()
    assert len(cells) == 3


def test_cells_are_the_same_across_grids():
    a = {c.cell_id for c in parse_grid(OPEN).cells()}
    other = copy.deepcopy(OPEN)
    other["name"] = "other"
    other["axes"]["intermediate.mapping"] = ["skip"]
    b = {c.cell_id for c in parse_grid(other).cells()}
    assert b < a  # the smaller grid's cells are cells of the larger one


@pytest.mark.parametrize("patch, message", [
    ({"training": {"learning_rate": 0}}, "training.learning_rate: Input should be greater than 0, got 0"),
    ({"training": {"learning_rate": -1e-4}}, "greater than 0"),
    ({"training": {"warmup_ratio": "lots"}}, "warmup_ratio"),
    ({"training": {"warmup_ratio": 1.5}}, "less than or equal to 1"),
    ({"training": {"weight_decay": -0.1}}, "weight_decay"),
    ({"training": {"epochs": 1.5}}, "training.epochs"),
    ({"training": {"learnign_rate": 1e-4}}, "Did you mean 'learning_rate'"),
    ({"teacher": {"epochs": 0}}, "teacher.epochs"),
    ({"intermediate": [{"features": "hidden", "weight": float("inf")}]}, "weight must be a finite number"),
    ({"prediction": {"alpha": 2}}, "alpha must be a number in \\[0, 1\\]"),
    ({"name": ""}, "Bad grid name ''"),
    ({"name": "../../x"}, "Bad grid name '../../x'"),
    ({"axes": {"dataset": ["sst2"], "student": ["L2_H384"], "predicton.alpha": [0.5]}}, "Unknown axis 'predicton.alpha'"),
    ({"axes": {"dataset": ["sst2"], "student": ["L2_H384"], "prediction.alfa": [0.5]}}, "Did you mean 'alpha'"),
])
def test_bad_values_are_refused_before_training(patch, message):
    spec = {**copy.deepcopy(OPEN), **patch}
    with pytest.raises(StudyConfigError, match=message):
        parse_grid(spec)


def test_student_width_is_checked_up_front():
    spec = dict(copy.deepcopy(OPEN), axes={"dataset": ["sst2"], "student": ["L2_H385"]})
    with pytest.raises(StudyConfigError, match="385 is not a multiple of the teacher's head size 32"):
        parse_grid(spec).validate()


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: dup\naxes:\n  dataset: [sst2]\n  student: [L2_H384]\n  dataset: [cola]\n")
    with pytest.raises(StudyConfigError, match="duplicate key 'dataset'"):
        load_grid(path)


@pytest.mark.parametrize("name", available_grids())
def test_every_shipped_grid_expands_and_validates(name):
    grid = load_grid(name)
    cells = grid.validate()
    assert cells and len({c.cell_id for c in cells}) == len(cells)
    assert grid.name == name and set(grid.factors) <= set(grid.axes)


def test_paper_grids_vary_what_their_papers_vary():
    assert {"objective", "initialisation"} <= set(load_grid("wang2023").factors)
    assert {"prediction.alpha", "prediction.distance", "prediction.student_temperature"} <= set(
        load_grid("sultan2024").factors)
    cpu = {c.cell_id for c in load_grid("wang2023-cpu").cells()}
    assert len(cpu) == 2 * 3 * (3 * 2 + 2 + 2 + 3)  # datasets x seeds x (one_stage + two_stage + task_agnostic)
    distiller = load_grid("distiller")
    assert {"intermediate.loss", "intermediate.mapping", "prediction.distance", "augmentation",
            "mixup.alpha"} <= set(distiller.factors)
    assert len(distiller.validate()) == 7 * 5 * 3 * 2 * 3 * 2 * 3
    assert "intermediate.alpha" in load_grid("distiller-mi-alpha").factors
    lu = load_grid("lu2022")
    assert {"student", "intermediate", "intermediate.mapping", "initialisation"} <= set(lu.factors)
    knowledge = {c.factors["intermediate"] for c in lu.cells()}
    assert knowledge == {"none", "hidden:mse", "attention:kl", "value_relation:kl"}


def test_augmentation_is_an_ordered_pipeline_without_paths_in_the_identity(tmp_path):
    model = tmp_path / "tiny-mlm"
    model.mkdir()
    (model / "config.json").write_text("{}")
    spec = {"name": "aug", "axes": {"dataset": ["sst2"], "student": ["L2_H384"],
                                    "augmentation": ["none", "eda", ["eda", "mlm"], ["mlm", "eda"]]},
            "augmentation_params": {"mlm": {"model": str(model), "p": 0.2}}}
    cells = {c.augmentation: c for c in parse_grid(spec).validate()}
    assert set(cells) == {"none", "eda", "eda+mlm", "mlm+eda"}  # the order is part of the choice
    assert cells["eda+mlm"].cell_id != cells["mlm+eda"].cell_id
    assert [s["name"] for s in cells["eda+mlm"].augmentation_steps] == ["eda", "mlm"]
    assert str(tmp_path) not in repr(cells["eda+mlm"].identity)
    assert cells["eda+mlm"].params()["augmentation.1.p"] == "0.2"
    with pytest.raises(StudyConfigError, match="'edaa'.*Did you mean 'eda'"):
        parse_grid({**spec, "axes": {**spec["axes"], "augmentation": [["edaa"]]}})


def test_teacher_checkpoint_is_the_cells_choice_not_the_teachers():
    spec = dict(SPEC, axes={"dataset": ["sst2"], "student": ["L2_H384"],
                            "teacher.checkpoint": ["last", "best_metric", "lowest_loss"]})
    cells = {c.teacher.checkpoint: c for c in parse_grid(spec).cells()}
    assert len({c.cell_id for c in cells.values()}) == 3
    assert len({c.teacher.teacher_id for c in cells.values()}) == 1  # one fine-tuning keeps all three
    plain = parse_grid(dict(SPEC, axes={"dataset": ["sst2"], "student": ["L2_H384"]})).cells()[0]
    assert cells["last"].cell_id == plain.cell_id  # the default keeps the old identity
    with pytest.raises(StudyConfigError, match="teacher.checkpoint"):
        parse_grid(dict(spec, axes={**spec["axes"], "teacher.checkpoint": ["best"]}))


def test_tasks_cpu_grid_covers_four_task_types_with_a_squad_budget():
    from study.tasks.catalogue import TASKS

    grid = load_grid("tasks-cpu")
    cells = grid.validate()
    datasets = grid.axes["dataset"]
    assert len(datasets) >= 10 and len(cells) == 2 * len(datasets)
    assert {TASKS[d].task_type for d in datasets} == {"classification", "regression", "token_classification",
                                                      "extractive_qa"}
    assert {"sst5", "trec", "stsb", "conll2003", "wnut17", "squad-devsplit", "boolq-devsplit"} <= set(datasets)
    assert set(grid.axes["objective"]) == {"ce", "logit_kd"} and grid.axes["initialisation"] == ["teacher_lower"]
    squad = [c for c in cells if c.dataset == "squad-devsplit"]
    others = [c for c in cells if c.dataset != "squad-devsplit"]
    assert all(c.training["max_length"] == 256 and c.training["max_train_examples"] == 4000 for c in squad)
    assert all(c.teacher.settings["max_length"] == 256 for c in squad)
    assert all(c.training["max_length"] == 128 and c.training["max_train_examples"] == 2000 for c in others)
    assert "overrides" not in str(squad[0].identity)  # the resolved budget is the identity, not the rule


def test_an_override_is_a_budget_per_dataset_in_the_cell_id():
    spec = {"name": "o", "axes": {"dataset": ["sst2", "cola"], "student": ["L2_H384"], "objective": ["ce"]},
            "training": {"epochs": 1, "max_train_examples": 100}}
    plain = {c.dataset: c for c in parse_grid(spec).cells()}
    over = {c.dataset: c for c in parse_grid({**spec, "overrides": [
        {"when": {"dataset": "cola"}, "training": {"max_train_examples": 200}}]}).cells()}
    assert over["sst2"].cell_id == plain["sst2"].cell_id
    assert over["cola"].cell_id != plain["cola"].cell_id and over["cola"].training["max_train_examples"] == 200
    # the same budget written as the grid's own setting is the same cell
    same = parse_grid({"name": "o2", "axes": {"dataset": ["cola"], "student": ["L2_H384"], "objective": ["ce"]},
                       "training": {"epochs": 1, "max_train_examples": 200}}).cells()[0]
    assert same.cell_id == over["cola"].cell_id


@pytest.mark.parametrize("overrides, message", [
    ([{"when": {"dataset": "cola"}}], "needs 'when' and at least one of training, teacher"),
    ({"when": {"dataset": "cola"}}, "overrides must be a list"),
    ([{"when": {"objective": "ce"}, "training": {"epochs": 2}}], r"when must be \{dataset: NAME"),
    ([{"when": {"dataset": "mrpc"}, "training": {"epochs": 2}}], "not on the dataset axis"),
    ([{"when": {"dataset": "cola"}, "training": {"epochs": 0.5}}], r"overrides\[0\].training.epochs"),
    ([{"when": {"dataset": "cola"}, "training": {"factor": 2}}], "Unknown key 'factor'"),
    ([{"when": {"dataset": "cola"}, "training": {"learning_rate": 1e-3}}], "also the grid axis training.learning_rate"),
    ([{"when": {"dataset": "cola"}, "teacher": {"epochs": 1}},
      {"when": {"dataset": ["sst2", "cola"]}, "teacher": {"epochs": 2}}], r"sets 'cola' again \(overrides\[0\]"),
])
def test_bad_overrides_are_refused_with_a_clear_message(overrides, message):
    spec = {"name": "o", "axes": {"dataset": ["sst2", "cola"], "student": ["L2_H384"], "objective": ["ce"],
                                 "training.learning_rate": [1e-4, 2e-4]}, "overrides": overrides}
    with pytest.raises(StudyConfigError, match=message):
        parse_grid(spec)
