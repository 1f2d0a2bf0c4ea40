"""The ``cosine`` intermediate loss (DistilBERT's cosine embedding loss) on hand-computable tensors.

References are plain-Python loops over floats; inputs are sin() of an index in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from kd_tensors import MASK3, fixed

from study.core.errors import StudyConfigError
from study.objectives import INTERMEDIATE_LOSSES
from study.objectives.losses import LossContext

B, T, H, H_S = 3, 5, 6, 4
MASK = MASK3


def make(kind: str = "states", h_s: int = H, params=None):
    feature = "hidden" if kind == "states" else "cls"
    return INTERMEDIATE_LOSSES["cosine"](params, LossContext(feature, kind, h_s, H)).double()


def ref_cosine(student, teacher, mask=None, weight=None, bias=None) -> float:
    """Mean over real rows of 1 - <a, b> / (|a| |b|)."""
    rows = []
    s_list, t_list = student.tolist(), teacher.tolist()
    if mask is None:
        rows = list(zip(s_list, t_list))
    else:
        for b, row in enumerate(mask.tolist()):
            rows += [(s_list[b][i], t_list[b][i]) for i, real in enumerate(row) if real]
    total = 0.0
    for a, t in rows:
        if weight is not None:
            a = [sum(w * x for w, x in zip(w_row, a)) + bb for w_row, bb in zip(weight.tolist(), bias.tolist())]
        dot = sum(x * y for x, y in zip(a, t))
        total += 1.0 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in t)))
    return total / len(rows)


def test_two_vectors_by_hand():
    # (1, 0) vs (1, 1): cos = 1/sqrt(2); (0, 2) vs (0, -3): cos = -1 -> mean(1 - 0.7071, 2)
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 1.0], [0.0, -3.0]], dtype=torch.float64)
    value = INTERMEDIATE_LOSSES["cosine"](None, LossContext("cls", "vector", 2, 2))(s, t, MASK[:2])
    assert value.item() == pytest.approx(((1 - 1 / math.sqrt(2)) + 2.0) / 2, rel=1e-12)


def test_golden_states_and_vectors():
    s, t = fixed(B, T, H, k=0.31), fixed(B, T, H, k=0.53, scale=1.2)
    value = make()(s, t, MASK).item()
    assert value == pytest.approx(ref_cosine(s, t, MASK), rel=1e-12)
    assert value == pytest.approx(1.138140117200, rel=1e-9)  # pinned once from ref_cosine
    vs, vt = s[:, 0], t[:, 0]
    assert make("vector")(vs, vt, MASK).item() == pytest.approx(ref_cosine(vs, vt), rel=1e-12)


def test_projection_when_widths_differ():
    s, t = fixed(B, T, H_S, k=0.31), fixed(B, T, H, k=0.53, scale=1.2)
    loss = make(h_s=H_S)
    w, b = fixed(H, H_S, k=0.7, scale=0.5), fixed(H, k=1.3, scale=0.1)
    with torch.no_grad():
        loss.projection.linear.weight.copy_(w)
        loss.projection.linear.bias.copy_(b)
    assert loss(s, t, MASK).item() == pytest.approx(ref_cosine(s, t, MASK, w, b), rel=1e-12)
    assert sorted(tuple(p.shape) for p in loss.parameters()) == [(H,), (H, H_S)]
    assert list(make().parameters()) == []


def test_identical_student_gives_zero_and_scale_does_not_matter():
    t = fixed(B, T, H, k=0.53, scale=1.2)
    assert make()(t.clone(), t, MASK).item() == pytest.approx(0.0, abs=1e-14)
    assert make()(3.7 * t, t, MASK).item() == pytest.approx(0.0, abs=1e-14)
    assert make()(-t, t, MASK).item() == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("value", [0.3, float("nan")])
def test_padding_changes_nothing(value):
    s, t = fixed(B, T, H_S, k=0.31), fixed(B, T, H, k=0.53, scale=1.2)
    loss = make(h_s=H_S)
    clean = loss(s, t, MASK).item()
    pad = ~MASK[:, :, None]
    s_bad = torch.where(pad, value, s).requires_grad_()
    t_bad = torch.where(pad, value, t)
    out = loss(s_bad, t_bad, MASK)
    assert out.item() == pytest.approx(clean, rel=1e-12)
    out.backward()
    assert torch.isfinite(s_bad.grad).all() and (s_bad.grad[~MASK] == 0).all()


def test_gradient_reaches_student_and_projection_not_teacher():
    s = fixed(B, T, H_S, k=0.31).requires_grad_()
    t = fixed(B, T, H, k=0.53, scale=1.2).requires_grad_()
    loss = make(h_s=H_S)
    loss(s, t.detach(), MASK).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())


def test_kinds_and_params_are_checked():
    with pytest.raises(StudyConfigError, match="'cosine' does not apply to feature 'attention'"):
        INTERMEDIATE_LOSSES["cosine"](None, LossContext("attention", "distribution", 2, 2))
    with pytest.raises(StudyConfigError, match="Unknown parameter 'margin'"):
        make(params={"margin": 0.1})
