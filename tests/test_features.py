"""Intermediate features read through forward hooks, on a real (tiny, randomly initialised) BERT."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from study.objectives import Distillation, FeatureSource, FeatureTap, KDInputs, ModelDims

LAYERS, HEADS, WIDTH = 3, 4, 32


def tiny_bert(attn: str = "eager") -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                     intermediate_size=64, attention_probs_dropout_prob=0.1, hidden_dropout_prob=0.1,
                     num_labels=2, attn_implementation=attn)
    return BertForSequenceClassification(cfg)


def batch():
    ids = torch.tensor([[2, 5, 7, 9, 3, 0], [2, 11, 13, 3, 0, 0]])
    mask = (ids != 0).long()
    return ids, mask


def source(model, ids, mask, projections=("q", "k", "v")) -> FeatureSource:
    tap = FeatureTap(model, set(range(1, LAYERS + 1)), set(projections))
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    tap.remove()
    return FeatureSource(mask.bool(), HEADS, out.hidden_states, tap.projections), out


def test_attention_from_hooks_equals_eager_maps_in_eval():
    model = tiny_bert().eval()
    ids, mask = batch()
    src, out = source(model, ids, mask)
    with torch.no_grad():
        eager = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    for layer in range(1, LAYERS + 1):
        ours = src.get("attention", layer)
        real = mask.bool()[:, None, :, None]  # padded query rows are free in HF's maps
        assert torch.allclose(ours.masked_fill(~real, 0), eager[layer - 1].masked_fill(~real, 0), atol=1e-6)


def test_attention_is_taken_before_dropout():
    """The bug this fixes: eager maps in training are post-dropout (rows do not sum to 1), so a
    student identical to its teacher paid ~2.6 nats per row. From the hooks they are clean."""
    model = tiny_bert().train()
    ids, mask = batch()
    torch.manual_seed(1)
    eager = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions[0]
    real_rows = mask.bool()[:, None, :]
    assert not torch.allclose(eager.sum(-1)[real_rows.expand(-1, HEADS, -1)], torch.ones(1))  # dropout shows
    src, _ = source(model, ids, mask)
    sums = src.get("attention", 1).sum(-1)  # (B, A, T)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    for name in ("value_relation", "query_relation", "key_relation"):
        rel = src.get(name, 2).sum(-1)
        assert torch.allclose(rel, torch.ones_like(rel), atol=1e-5)


@pytest.mark.parametrize("feature,loss", [("attention", "kl"), ("value_relation", "kl"), ("hidden", "mse"),
                                          ("attention_scores", "mse"), ("cls", "mse")])
def test_identical_student_and_teacher_give_zero_with_dropout_on(feature, loss):
    teacher = tiny_bert("sdpa").train()
    student = copy.deepcopy(teacher)
    ids, mask = batch()
    dims = ModelDims(LAYERS, WIDTH, HEADS)
    objective = Distillation({"alpha": 0}, [{"features": feature, "loss": loss, "mapping": "skip"}],
                             task_type="classification", student=dims, teacher=dims)
    # the same dropout masks in both passes: identical models give identical features
    torch.manual_seed(3)
    s_src, s_out = source(student, ids, mask)
    torch.manual_seed(3)
    t_src, t_out = source(teacher, ids, mask)
    out = objective(KDInputs(student_logits=s_out.logits, labels=torch.tensor([0, 1]), mask=mask.bool(),
                             teacher_logits=t_out.logits, student=s_src, teacher=t_src))
    assert out[f"loss_{feature}_{loss}"].item() == pytest.approx(0.0, abs=1e-6)


def test_relation_heads_split_the_width():
    model = tiny_bert().eval()
    ids, mask = batch()
    src, _ = source(model, ids, mask)
    assert src.get("value_relation", 1, {"relation_heads": 8}).shape == (2, 8, 6, 6)
    assert src.get("value_relation", 1).shape == (2, HEADS, 6, 6)
