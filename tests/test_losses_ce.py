"""The ``ce`` intermediate loss (Distiller's intermediate cross-entropy) on hand-computable tensors,
and against TextBrewer 0.2.1's ``att_ce_loss`` on attention scores.

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

B, T, H, H_S, A = 3, 5, 6, 4, 2
MASK = MASK3


def make(kind: str = "states", h_s: int = H, params=None, heads: int = A):
    feature = {"states": "hidden", "vector": "cls", "scores": "attention_scores", "distribution": "attention"}[kind]
    dims = (heads, heads) if kind in ("scores", "distribution") else (h_s, H)
    return INTERMEDIATE_LOSSES["ce"](params, LossContext(feature, kind, *dims)).double()


def softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(x - m) for x in row]
    return [x / sum(e) for x in e]


def ref_states(student, teacher, mask=None, tau=1.0) -> float:
    """Mean over real rows of -sum_h softmax(t/tau)_h log softmax(s/tau)_h."""
    s_list, t_list = student.tolist(), teacher.tolist()
    rows = list(zip(s_list, t_list)) if mask is None else [
        (s_list[b][i], t_list[b][i]) for b, row in enumerate(mask.tolist()) for i, real in enumerate(row) if real]
    total = 0.0
    for s, t in rows:
        p_s, p_t = softmax([x / tau for x in s]), softmax([x / tau for x in t])
        total -= sum(pt * math.log(ps) for pt, ps in zip(p_t, p_s))
    return total / len(rows)


def ref_maps(student, teacher, mask, from_scores: bool) -> float:
    """Mean over heads and real query rows of the row cross-entropy over real keys."""
    total, rows = 0.0, 0
    for b, row in enumerate(mask.tolist()):
        keys = [j for j, real in enumerate(row) if real]
        for i in keys:
            per_head = 0.0
            for a in range(student.shape[1]):
                s = [student[b, a, i, j].item() for j in keys]
                t = [teacher[b, a, i, j].item() for j in keys]
                if from_scores:
                    s, t = softmax(s), softmax(t)
                per_head -= sum(pt * math.log(ps) for pt, ps in zip(t, s))
            total += per_head / student.shape[1]
            rows += 1
    return total / rows


def rows_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    keys = mask[:, None, None, :]
    return torch.softmax(x.masked_fill(~keys, -1e30), dim=-1)


def test_one_row_by_hand():
    # teacher (0.5, 0.5) against student (0.25, 0.75): -(0.5 ln 0.25 + 0.5 ln 0.75)
    s = torch.log(torch.tensor([[0.25, 0.75]], dtype=torch.float64))
    t = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    value = INTERMEDIATE_LOSSES["ce"](None, LossContext("cls", "vector", 2, 2))(s, t, MASK[:1, :2])
    assert value.item() == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)), rel=1e-12)


def test_golden_states_vectors_and_temperature():
    s, t = fixed(B, T, H, k=0.31, scale=2.0), fixed(B, T, H, k=0.53, scale=2.4)
    value = make()(s, t, MASK).item()
    assert value == pytest.approx(ref_states(s, t, MASK), rel=1e-12)
    assert value == pytest.approx(2.109119073285, rel=1e-9)  # pinned once from ref_states
    hot = make(params={"temperature": 2.0})(s, t, MASK).item()
    assert hot == pytest.approx(ref_states(s, t, MASK, tau=2.0), rel=1e-12)
    vs, vt = s[:, 0], t[:, 0]
    assert make("vector")(vs, vt, MASK).item() == pytest.approx(ref_states(vs, vt), rel=1e-12)


@pytest.mark.parametrize("kind", ["scores", "distribution"])
def test_golden_attention_maps(kind):
    s, t = fixed(B, A, T, T, k=0.29, scale=3.0), fixed(B, A, T, T, k=0.47, scale=3.0)
    if kind == "distribution":
        s, t = rows_softmax(s, MASK), rows_softmax(t, MASK)
    value = make(kind)(s, t, MASK).item()
    assert value == pytest.approx(ref_maps(s, t, MASK, from_scores=kind == "scores"), rel=1e-10)


def test_distribution_ce_is_kl_plus_the_teachers_entropy():
    s = rows_softmax(fixed(B, A, T, T, k=0.29, scale=3.0), MASK)
    t = rows_softmax(fixed(B, A, T, T, k=0.47, scale=3.0), MASK)
    kl = INTERMEDIATE_LOSSES["kl"](None, LossContext("attention", "distribution", A, A))(s, t, MASK)
    entropy = make("distribution")(t, t, MASK)
    assert make("distribution")(s, t, MASK).item() == pytest.approx((kl + entropy).item(), rel=1e-10)


@pytest.mark.parametrize("kind", ["states", "scores", "distribution"])
def test_identical_student_gives_the_minimum_with_zero_gradient(kind):
    if kind == "states":
        t = fixed(B, T, H, k=0.53, scale=2.4)
    else:
        t = fixed(B, A, T, T, k=0.47, scale=3.0)
        t = rows_softmax(t, MASK) if kind == "distribution" else t
    loss = make(kind)
    s = t.clone().requires_grad_()
    at_teacher = loss(s, t, MASK)
    at_teacher.backward()
    if kind == "distribution":  # a simplex: the gradient is constant along each row (no direction
        g = s.grad  # that keeps the rows distributions changes the loss to first order)
        keys = MASK[:, None, None, :].expand_as(g)
        spread = g.masked_fill(~keys, -math.inf).amax(-1) - g.masked_fill(~keys, math.inf).amin(-1)
        assert spread[MASK[:, None, :].expand(-1, A, -1)].abs().max() < 1e-12
    else:
        assert s.grad.abs().max().item() < 1e-12
    other = t + 0.3 * fixed(*t.shape, k=0.71)
    other = rows_softmax(other, MASK) if kind == "distribution" else other
    assert loss(other, t, MASK).item() > at_teacher.item()


@pytest.mark.parametrize("kind", ["states", "scores", "distribution"])
@pytest.mark.parametrize("value", [0.3, float("nan")])
def test_padding_changes_nothing(kind, value):
    if kind == "states":
        s, t = fixed(B, T, H, k=0.31, scale=2.0), fixed(B, T, H, k=0.53, scale=2.4)
        pad = ~MASK[:, :, None]
    else:
        s, t = fixed(B, A, T, T, k=0.29, scale=3.0), fixed(B, A, T, T, k=0.47, scale=3.0)
        if kind == "distribution":
            s, t = rows_softmax(s, MASK), rows_softmax(t, MASK)
        pad = ~(MASK[:, None, :, None] & MASK[:, None, None, :])
    loss = make(kind)
    clean = loss(s, t, MASK).item()
    s_bad = torch.where(pad, value, s).requires_grad_()
    out = loss(s_bad, torch.where(pad, value, t), MASK)
    assert out.item() == pytest.approx(clean, rel=1e-12)
    out.backward()
    assert torch.isfinite(s_bad.grad).all() and (s_bad.grad[pad.expand_as(s_bad)] == 0).all()


def test_matches_textbrewer_att_ce_loss_on_attention_scores():
    textbrewer_losses = pytest.importorskip("textbrewer.losses")
    s, t = fixed(B, A, T, T, k=0.29, scale=3.0), fixed(B, A, T, T, k=0.47, scale=3.0)
    keys = MASK[:, None, None, :]
    # Hugging Face scores carry the additive mask (a large negative at padded keys); ours hold 0
    # there and the loss masks them. On real query rows the two agree.
    theirs = textbrewer_losses.att_ce_loss(s.masked_fill(~keys, -1e4), t.masked_fill(~keys, -1e4), MASK.long())
    ours = make("scores")(s.masked_fill(~keys, 0.0), t.masked_fill(~keys, 0.0), MASK)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-10)


def test_projection_when_widths_differ_and_gradients():
    s = fixed(B, T, H_S, k=0.31).requires_grad_()
    t = fixed(B, T, H, k=0.53, scale=1.2).requires_grad_()
    loss = make(h_s=H_S)
    assert sorted(tuple(p.shape) for p in loss.parameters()) == [(H,), (H, H_S)]
    w, b = fixed(H, H_S, k=0.7, scale=0.5), fixed(H, k=1.3, scale=0.1)
    with torch.no_grad():
        loss.projection.linear.weight.copy_(w)
        loss.projection.linear.bias.copy_(b)
    projected = torch.einsum("bth,oh->bto", s.detach(), w) + b
    assert loss(s, t.detach(), MASK).item() == pytest.approx(ref_states(projected, t.detach(), MASK), rel=1e-12)
    loss(s, t.detach(), MASK).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())


def test_params_are_checked():
    with pytest.raises(StudyConfigError, match="Unknown parameter 'tau'"):
        make(params={"tau": 2.0})
    with pytest.raises(StudyConfigError, match="temperature must be above 0, got 0"):
        make(params={"temperature": 0})
