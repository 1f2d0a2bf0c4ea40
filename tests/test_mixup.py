"""Mix-up distillation (MixKD): the slot, and the term on a real (tiny) BERT pair."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from study.core.errors import StudyConfigError
from study.grid import parse_grid
from study.objectives import Distillation, ModelDims
from study.objectives import mixup as mixup_mod
from study.objectives.prediction import teacher_loss
from study.training.trainer import mixup_loss


def tiny(seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, num_labels=3)
    return BertForSequenceClassification(cfg).eval()


BATCH = {"input_ids": torch.tensor([[2, 5, 7, 3, 0], [2, 9, 3, 0, 0], [2, 11, 12, 13, 3]]),
         "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}


def objective(prediction=None):
    dims = ModelDims(2, 16, 2)
    return Distillation(prediction or {}, [], task_type="classification", student=dims, teacher=dims)


def test_slot_is_empty_when_off_and_checked():
    assert mixup_mod.resolve(None) == mixup_mod.resolve({"alpha": 0, "weight": 3}) == {}
    assert mixup_mod.resolve({"alpha": 0.4}) == {"alpha": 0.4, "weight": 1.0}
    with pytest.raises(StudyConfigError, match="'alpah'.*Did you mean 'alpha'"):
        mixup_mod.resolve({"alpah": 0.4})
    with pytest.raises(StudyConfigError, match="alpha must be a finite number >= 0"):
        mixup_mod.resolve({"alpha": -1})


def test_lambda_one_is_kd_on_the_real_batch():
    # (with padding, the mixed mask is the union of both rows' masks; without, lambda 1 is the batch)
    batch = {"input_ids": BATCH["input_ids"], "attention_mask": torch.ones_like(BATCH["attention_mask"])}
    student, teacher = tiny(0), tiny(1)
    obj = objective({"distance": "kl", "teacher_temperature": 2.0, "student_temperature": 2.0})
    value = mixup_loss(student, teacher, obj, batch, 1.0, torch.Generator().manual_seed(0), torch.device("cpu"))
    with torch.no_grad():
        s = student(**batch).logits
        t = teacher(**batch).logits
    assert value.item() == pytest.approx(teacher_loss(s, t, obj.prediction, "classification").item(), rel=1e-5)


def test_identical_models_pay_nothing_and_the_student_gets_the_gradient():
    student = tiny(0)
    teacher = copy.deepcopy(student)
    value = mixup_loss(student, teacher, objective(), BATCH, 0.3, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    other = tiny(5)
    value = mixup_loss(other, teacher, objective({"alpha": 0}), BATCH, 0.3, torch.Generator().manual_seed(0),
                       torch.device("cpu"))
    value.backward()
    assert value.item() > 0 and other.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_mixup_is_a_grid_axis_and_off_keeps_the_old_identity():
    base = {"name": "m", "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["logit_kd"]}}
    plain = parse_grid(base).cells()[0]
    grid = parse_grid({**base, "axes": {**base["axes"], "mixup.alpha": [0, 0.4]}})
    cells = grid.validate()
    assert len(cells) == 2 and grid.factors == ["mixup.alpha"]
    assert plain.cell_id in {c.cell_id for c in cells}  # alpha 0: no mix-up, the same cell
    assert "mixup" not in plain.identity
