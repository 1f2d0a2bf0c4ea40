"""Stages at the grid level (``study.grid.stages``), no training: which stages a cell's schedule and
initialisation put before its own, what each stage's id depends on (and what it must not), and
the refusals of bad schedules, general settings and teachers.

Everything here expands grids only (a tiny BertForMaskedLM is saved for the masked-LM teacher):
about 10 s on a 2-core CPU, most of it importing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import BertConfig, BertForMaskedLM

import study.grid.stages as stages_mod
from study.core.errors import StudyConfigError
from study.core.paths import grids_dir
from study.grid import parse_grid
from study.grid.stages import NO_PREDICTION
from study.objectives.prediction import resolve
from study.objectives.presets import preset

PINNED = Path(__file__).parent / "data" / "pinned_ids.json"

#: One cell: initialisation general, its general stage tiny (no training happens here anyway).
BASE = {
    "name": "st",
    "axes": {"dataset": ["sst2"], "student": ["L1_H384"], "objective": ["hidden_mse"],
             "initialisation": ["general"], "seed": [0]},
    "general": {"max_steps": 5, "batch_size": 8, "max_length": 32},
}


def grid_of(axes: dict | None = None, general: dict | None = None, **top):
    """``BASE`` with axis values replaced by ``axes``, general settings updated by ``general`` and
    top-level keys set by ``top``: the parsed grid."""
    spec = copy.deepcopy(BASE)
    spec["axes"].update(axes or {})
    spec["general"].update(general or {})
    spec.update(top)
    return parse_grid(spec)


def one_cell(axes: dict | None = None, general: dict | None = None, **top):
    cells = grid_of(axes, general, **top).cells()
    assert len(cells) == 1
    return cells[0]


# --------------------------------------------------------------------------- one_stage

def test_one_stage_and_an_unused_general_slot_leave_every_id_unchanged():
    spec = yaml.safe_load((grids_dir() / "smoke.yaml").read_text())
    before = parse_grid(spec)
    staged = copy.deepcopy(spec)
    staged["axes"]["schedule"] = ["one_stage"]
    staged["general"] = {"max_steps": 3, "corpus": "wikitext-103", "objective": "minilm"}
    after = parse_grid(staged)
    old = [(c.cell_id, c.name) for c in before.cells()]
    assert [(c.cell_id, c.name) for c in after.cells()] == old and len(old) == 8
    pinned = json.loads(PINNED.read_text())["smoke"]["cells"]  # written before stages existed
    assert sorted(f"{i} {n}" for i, n in old) == pinned
    assert after.version == before.version
    assert all(c.stages == () and c.schedule == "one_stage" for c in after.cells())
    assert "initialisation" in after.factors  # random and teacher_lower: no cell names general


# --------------------------------------------------------------------------- initialisation general

def test_initialisation_general_puts_one_general_stage_first():
    cell = one_cell()
    (stage,) = cell.stages
    assert stage.kind == "general" and stage.start == "random" and stage.data == "wiki-offline"
    assert stage.student == cell.student and stage.seed == cell.seed
    assert stage.teacher == "all-MiniLM-L6-v2" and stage.prediction is None
    assert list(stage.intermediate) == preset("minilm_v2")["intermediate"]  # general.objective's default
    assert stage.training["max_steps"] == 5 and stage.training["batch_size"] == 8
    # the cell's own objective is untouched: it distils as its slots say, from that student
    assert cell.prediction == resolve(preset("hidden_mse")["prediction"])
    assert [e["features"] for e in cell.intermediate] == ["hidden"]
    assert cell.identity["stages"] == [stage.stage_id]
    assert cell.params()["stages.0.id"] == stage.stage_id and cell.params()["stages.count"] == "1"


def test_cells_differing_in_their_own_stage_share_the_general_stage():
    grid = grid_of({"dataset": ["sst2", "mrpc"], "prediction.alpha": [0.2, 0.8],
                    "training.learning_rate": [1e-4, 3e-4], "teacher.epochs": [1, 2]})
    cells = grid.validate()
    assert len(cells) == 16 and len({c.cell_id for c in cells}) == 16
    assert len({c.stages[0].stage_id for c in cells}) == 1


@pytest.mark.parametrize("axes, general", [
    ({}, {"max_steps": 6}),
    ({}, {"corpus": "wikitext-103"}),
    ({"seed": [1]}, {}),
    ({"student": ["L2_H384"]}, {}),
    ({}, {"initialisation": "teacher_lower"}),
    ({}, {"objective": "minilm"}),
    ({}, {"learning_rate": 1e-4}),
    ({}, {"dev_every": 10}),
])
def test_what_a_general_stage_is_trained_with_changes_its_id_and_the_cells(axes, general):
    base = one_cell()
    other = one_cell(axes, general)
    assert other.stages[0].stage_id != base.stages[0].stage_id
    assert other.cell_id != base.cell_id


def test_a_text_corpus_is_identified_by_its_content_not_its_path(tmp_path):
    text = "The first document of the corpus.\nAnd a second one, on its own line.\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, moved, edited = tmp_path / "a" / "corpus.txt", tmp_path / "b" / "renamed.txt", tmp_path / "edited.txt"
    first.write_text(text)
    moved.write_text(text)
    edited.write_text(text.replace("first", "firsT"))
    ids = {p: one_cell(general={"corpus": str(p)}) for p in (first, moved, edited)}
    assert ids[first].stages[0].stage_id == ids[moved].stages[0].stage_id
    assert ids[first].cell_id == ids[moved].cell_id
    assert ids[edited].stages[0].stage_id != ids[first].stages[0].stage_id
    assert ids[edited].cell_id != ids[first].cell_id
    assert str(tmp_path) not in str(ids[first].stages[0].identity)
    # documents split by blank lines are other documents: another stage
    blank = one_cell(general={"corpus": f"{first}:blank_line"})
    assert blank.stages[0].stage_id != ids[first].stages[0].stage_id


def test_a_missing_corpus_file_is_refused_before_training(tmp_path):
    missing = tmp_path / "nowhere" / "corpus.txt"
    with pytest.raises(StudyConfigError, match="corpus.txt"):
        grid_of(general={"corpus": str(missing)})


def test_the_corpus_packing_version_is_part_of_every_corpus_identity(tmp_path, monkeypatch):
    """A change of the packing rules (``study.corpora.VERSION``) gives other blocks: every stage
    trained on packed text gets a new id, a file's or the registered corpus's alike."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one document\nanother document\n")
    registered, from_file = one_cell(), one_cell(general={"corpus": str(corpus)})
    monkeypatch.setattr(stages_mod, "CORPUS_VERSION", "999")
    assert one_cell().stages[0].stage_id != registered.stages[0].stage_id
    assert one_cell(general={"corpus": str(corpus)}).stages[0].stage_id != from_file.stages[0].stage_id


# --------------------------------------------------------------------------- schedules

def test_two_stage_trains_the_intermediate_losses_first_then_the_prediction_layer():
    cell = one_cell({"initialisation": ["random"], "schedule": ["two_stage"]})
    (stage,) = cell.stages
    assert stage.kind == "task" and stage.data == "sst2" and stage.start == "random"
    assert list(stage.intermediate) == preset("hidden_mse")["intermediate"] and stage.prediction is None
    assert stage.identity["prediction"] == NO_PREDICTION
    assert stage.teacher == cell.teacher  # the fine-tuned teacher, not the pretrained one
    assert stage.training == {k: v for k, v in cell.training.items() if k != "precision"}
    assert cell.intermediate == [] and cell.prediction == resolve(preset("hidden_mse")["prediction"])
    # the prediction slot is stage 2's only: cells differing in it share stage 1
    alphas = grid_of({"initialisation": ["random"], "schedule": ["two_stage"], "prediction.alpha": [0.3, 0.9]})
    cells = alphas.cells()
    assert len(cells) == 2 and cells[0].stages[0].stage_id == cells[1].stages[0].stage_id == stage.stage_id
    # the stage's teacher is the cell's: another fine-tuning, another stage
    other = one_cell({"initialisation": ["random"], "schedule": ["two_stage"], "teacher.epochs": [2]})
    assert other.stages[0].stage_id != stage.stage_id


def test_two_stage_after_a_general_stage_chains_the_stages():
    cell = one_cell({"schedule": ["two_stage"]})
    general, task = cell.stages
    assert (general.kind, task.kind) == ("general", "task")
    assert task.start is general and task.chain == [general, task] and task.initialisation == "random"
    assert task.identity["start"] == general.stage_id
    assert cell.identity["stages"] == [general.stage_id, task.stage_id]
    # a longer general stage changes the task stage that continues it
    longer = one_cell({"schedule": ["two_stage"]}, {"max_steps": 9})
    assert longer.stages[1].stage_id != task.stage_id


def test_two_stage_refuses_a_cell_without_intermediate_entries():
    with pytest.raises(StudyConfigError, match="two_stage") as err:
        grid_of({"initialisation": ["random"], "schedule": ["two_stage"], "objective": ["logit_kd"]})
    assert "exclude" in str(err.value) and "logit_kd" in str(err.value)


def test_task_agnostic_distils_the_cells_intermediate_losses_on_raw_text_then_fine_tunes():
    cell = one_cell({"initialisation": ["teacher_lower"], "schedule": ["task_agnostic"], "objective": ["minilm"]},
                    {"objective": "minilm_v2"})
    (stage,) = cell.stages
    assert stage.kind == "general" and stage.start == "teacher_lower" and stage.data == "wiki-offline"
    assert list(stage.intermediate) == preset("minilm")["intermediate"]  # the cell's, not general.objective's
    assert cell.intermediate == [] and cell.prediction == {"distance": "none", "alpha": 0.0}
    # an initialisation general cell with the minilm objective on raw text is that same stage
    same = one_cell({"initialisation": ["general"], "objective": ["hidden_mse"]},
                    {"objective": "minilm", "initialisation": "teacher_lower"})
    assert same.stages[0].stage_id == stage.stage_id


def test_task_agnostic_with_initialisation_general_is_refused():
    with pytest.raises(StudyConfigError, match="task_agnostic already starts with a general stage"):
        grid_of({"schedule": ["task_agnostic"]})


def test_an_unknown_schedule_gets_a_did_you_mean():
    with pytest.raises(StudyConfigError, match="Unknown schedule 'two_stag'.*Did you mean 'two_stage'"):
        grid_of({"schedule": ["two_stag"]})


def test_an_unknown_general_key_or_axis_is_refused_naming_it():
    with pytest.raises(StudyConfigError, match="Unknown key 'max_step' in general.*Did you mean 'max_steps'"):
        grid_of(general={"max_step": 3})
    with pytest.raises(StudyConfigError, match=r"Unknown key 'nope' in general \(axis general.K\)"):
        grid_of({"general.nope": [1, 2]})


def test_a_general_stage_with_nothing_to_distil_is_refused():
    with pytest.raises(StudyConfigError, match="nothing to distil"):
        grid_of(general={"objective": None})
    with pytest.raises(StudyConfigError, match="task_agnostic distils the cell's intermediate losses.*nothing"):
        grid_of({"initialisation": ["random"], "schedule": ["task_agnostic"], "objective": ["logit_kd"]})


def test_an_unknown_general_initialisation_is_refused_at_validate():
    grid = grid_of(general={"initialisation": "teacher_lowr"})
    with pytest.raises(StudyConfigError, match="Unknown initialisation 'teacher_lowr'.*Did you mean 'teacher_lower'"):
        grid.validate()


# --------------------------------------------------------------------------- masked-LM teacher

@pytest.fixture(scope="module")
def mlm_teacher(tmp_path_factory):
    """A tiny BertForMaskedLM saved as a teacher folder (its config names a masked-LM head)."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128)
    path = tmp_path_factory.mktemp("mlm_teacher")
    BertForMaskedLM(cfg).save_pretrained(path)
    return path


def test_masked_lm_kd_needs_a_teacher_with_a_masked_lm_head(mlm_teacher):
    mlm = {"prediction": {"alpha": 0.5}}
    grid = grid_of(general=mlm)
    assert grid.cells()[0].stages[0].prediction["alpha"] == 0.5  # parsed: refused at validate
    with pytest.raises(StudyConfigError, match="masked-LM head") as err:
        grid.validate()
    assert "all-MiniLM-L6-v2" in str(err.value) and "general.prediction" in str(err.value)

    ok = grid_of({"student": ["L1_H32"]}, mlm, teacher={"model": str(mlm_teacher)})
    (cell,) = ok.validate()
    assert cell.stages[0].prediction is not None and cell.stages[0].teacher == str(mlm_teacher)
    assert str(mlm_teacher) not in str(cell.stages[0].identity)  # the teacher folder by its weights' hash
    # without general.prediction the stage differs (no prediction-layer term)
    assert grid_of({"student": ["L1_H32"]}, teacher={"model": str(mlm_teacher)}).cells()[0].stages[0].stage_id \
        != cell.stages[0].stage_id


# --------------------------------------------------------------------------- general.K axes

def test_a_general_axis_gives_one_stage_per_value():
    cells = grid_of({"general.max_steps": [10, 20]}).cells()
    assert len(cells) == 2 and len({c.stages[0].stage_id for c in cells}) == 2
    assert sorted(c.stages[0].training["max_steps"] for c in cells) == [10, 20]
    assert sorted(c.factors["general.max_steps"] for c in cells) == ["10", "20"]
    # cells that train no general stage do not read it: one random cell, two general ones
    mixed = grid_of({"general.max_steps": [10, 20], "initialisation": ["random", "general"]}).cells()
    assert len(mixed) == 3 and sum(not c.stages for c in mixed) == 1


def test_crd_runs_in_a_cell_and_a_task_stage_and_is_refused_on_raw_text():
    """CRD's memory bank keeps a row per training example: a cell and two_stage's task stage have
    one; a general stage (task_agnostic) has no example indices and is refused before training."""
    assert len(grid_of({"initialisation": ["teacher_lower"], "objective": ["crd"],
                        "schedule": ["one_stage", "two_stage"]}).validate()) == 2
    with pytest.raises(StudyConfigError, match="stage .*memory keeps a bank row per training example.*not raw text"):
        grid_of({"initialisation": ["teacher_lower"], "schedule": ["task_agnostic"], "objective": ["crd"]}).validate()
