"""The ``combine`` layer mapping (Wang et al. 2023's code): every layer of each model concatenated,
the teacher's projected onto the student's, compared once; by hand on small tensors, its widths
at the paper's sizes, its gradients, and its refusals."""

from __future__ import annotations

import pytest
import torch

from study.core.errors import StudyConfigError
from study.objectives import LAYER_MAPPINGS, Distillation, FeatureSource, KDInputs, ModelDims
from study.objectives.intermediate import resolve_entry

B, T = 2, 3
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)


def hidden(layers: int, width: int, k: float) -> tuple[torch.Tensor, ...]:
    """layers + 1 hidden states (embeddings first), (B, T, width) float64."""
    return tuple(torch.sin(torch.arange(B * T * width, dtype=torch.float64) * (k + 0.1 * i)).reshape(B, T, width)
                 for i in range(layers + 1))


def test_widths_at_the_papers_sizes():
    """A 12-layer H768 teacher onto a 3-layer H768 student: 13 * 768 = 9,984 -> 4 * 768 = 3,072
    (PAPERS.md 2.4), embeddings included; without layer 0 (a feature that has none) 12 -> 3 layers."""
    mapping = LAYER_MAPPINGS["combine"](None, student_layers=3, teacher_layers=12, embeddings=True,
                                        student_dim=768, teacher_dim=768)
    assert (mapping.projection.in_features, mapping.projection.out_features) == (9984, 3072)
    assert mapping.joined_dims() == (3072, 3072)
    assert mapping.layers_used() == (set(range(4)), set(range(13)))
    narrow = LAYER_MAPPINGS["combine"](None, student_layers=2, teacher_layers=6, student_dim=4, teacher_dim=6)
    assert (narrow.projection.in_features, narrow.projection.out_features) == (36, 8)


def test_hidden_mse_through_combine_by_hand():
    ls, lt, hs, ht = 2, 3, 4, 6
    obj = Distillation(None, [{"features": "hidden", "loss": "mse", "mapping": "combine"}],
                       task_type="classification", student=ModelDims(ls, hs, 1), teacher=ModelDims(lt, ht, 1)).double()
    mapping = obj.terms[0].mapping
    assert mapping.projection.weight.shape == (3 * hs, 4 * ht)
    s_hidden = tuple(h.requires_grad_() for h in hidden(ls, hs, 0.3))
    t_hidden = tuple(h.requires_grad_() for h in hidden(lt, ht, 0.7))
    out = obj(KDInputs(student_logits=torch.zeros(B, 2, dtype=torch.float64, requires_grad=True),
                       labels=torch.tensor([0, 1]), mask=MASK,
                       student=FeatureSource(MASK, 1, s_hidden), teacher=FeatureSource(MASK, 1, t_hidden)))
    # by hand: per real token, the mean over the 12 joined features of (h_s - W h_t - b)^2
    weight, bias = mapping.projection.weight.detach(), mapping.projection.bias.detach()
    total, count = 0.0, 0
    for b in range(B):
        for t in range(T):
            if not MASK[b, t]:
                continue
            s = [float(x) for h in s_hidden for x in h[b, t].detach()]
            teacher = [float(x) for h in t_hidden for x in h[b, t].detach()]
            for j, s_j in enumerate(s):
                projected = float(bias[j]) + sum(float(weight[j, i]) * x for i, x in enumerate(teacher))
                total += (s_j - projected) ** 2
                count += 1
    assert out["loss"].item() == pytest.approx(total / count, rel=1e-10)
    out["loss"].backward()
    assert all(h.grad.abs().sum() > 0 for h in s_hidden)  # every student layer, the embeddings too
    assert all(h.grad is None for h in t_hidden)  # the teacher is never trained
    assert mapping.projection.weight.grad.abs().sum() > 0  # the projection is


def test_a_learned_projection_is_trained_with_the_student():
    obj = Distillation(None, [{"features": "hidden", "mapping": "combine"}], task_type="classification",
                       student=ModelDims(2, 4, 1), teacher=ModelDims(3, 6, 1))
    assert any(p is obj.terms[0].mapping.projection.weight for p in obj.parameters())


def test_attention_maps_cannot_be_joined():
    with pytest.raises(StudyConfigError, match="'combine'.*attention.*skip, last or emd"):
        resolve_entry({"features": "attention", "loss": "kl", "mapping": "combine"})
    assert resolve_entry({"features": "cls", "mapping": "combine"})["mapping"] == "combine"


def test_without_widths_it_is_refused():
    with pytest.raises(StudyConfigError, match="combine.*widths"):
        LAYER_MAPPINGS["combine"](None, student_layers=2, teacher_layers=6)
