"""The ``emd`` layer mapping (BERT-EMD): flows, loss and weight update on a hand-computable 2x3
cost matrix, and the transport constraints on a larger one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.core.errors import StudyConfigError
from study.objectives import LAYER_MAPPINGS, Distillation, FeatureSource, KDInputs, ModelDims
from study.objectives.mappings.emd import reweight, transport

# Student layer 1 is cheapest against teacher layer 1, student layer 2 against teacher layer 3.
COST = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]


def make(ls=2, lt=3, **params):
    return LAYER_MAPPINGS["emd"](params or None, student_layers=ls, teacher_layers=lt)


def cost_pairs(cost, requires_grad=False):
    table = {(m + 1, n + 1): torch.tensor(c, dtype=torch.float64, requires_grad=requires_grad)
             for m, row in enumerate(cost) for n, c in enumerate(row)}
    return table, lambda m, n: table[(m, n)]


def test_two_by_three_by_hand():
    # Masses 1/2, 1/2 (student) and 1/3 each (teacher). Optimal plan: s1 -> t1 (1/3) and t2 (1/6),
    # s2 -> t3 (1/3) and t2 (1/6): cost 1/3 + 2/6 + 1/3 + 2/6 = 4/3; any other plan costs more.
    mapping = make()
    table, pair_loss = cost_pairs(COST, requires_grad=True)
    loss = mapping(pair_loss)
    assert loss.item() == pytest.approx(4 / 3, rel=1e-9)
    assert mapping.last_flow == pytest.approx(np.array([[1 / 3, 1 / 6, 0], [0, 1 / 6, 1 / 3]]), abs=1e-9)
    loss.backward()  # d loss / d D[m, n] = F[m, n]: the gradient reaches every pair with flow
    assert table[(1, 2)].grad.item() == pytest.approx(1 / 6, abs=1e-9)
    assert table[(1, 3)].grad.item() == pytest.approx(0.0, abs=1e-9)


def test_weight_update_by_hand():
    # Unit costs: students (1/3 + 2/6) / (1/2) = 4/3 each -> weights stay 1/2, 1/2;
    # teachers 1, 2, 1 -> weights proportional to 1, 1/2, 1 -> 2/5, 1/5, 2/5.
    mapping = make()
    mapping(cost_pairs(COST)[1])
    assert mapping.student_weights.tolist() == pytest.approx([0.5, 0.5], rel=1e-9)
    assert mapping.teacher_weights.tolist() == pytest.approx([0.4, 0.2, 0.4], rel=1e-9)
    # the next call transports with the new weights: s1 -> t1 (2/5), t2 (1/10); s2 -> t2 (1/10), t3 (2/5)
    assert mapping(cost_pairs(COST)[1]).item() == pytest.approx(0.4 + 0.2 + 0.2 + 0.4, rel=1e-9)


def test_fixed_weights_and_eval_mode_do_not_update():
    fixed = make(update_weights=False)
    fixed(cost_pairs(COST)[1])
    assert fixed.teacher_weights.tolist() == pytest.approx([1 / 3] * 3)
    evaluating = make().eval()
    evaluating(cost_pairs(COST)[1])
    assert evaluating.teacher_weights.tolist() == pytest.approx([1 / 3] * 3)


def test_identical_layers_cost_nothing():
    # zero cost on the pairs a plan can use entirely (L_s = L_t, diagonal) -> loss 0
    cost = [[0.0 if m == n else 1.0 + m + n for n in range(3)] for m in range(3)]
    assert make(3, 3)(cost_pairs(cost)[1]).item() == pytest.approx(0.0, abs=1e-12)


def test_transport_respects_the_masses():
    cost = np.abs(np.sin(np.arange(1, 13) * 0.77)).reshape(3, 4)
    w_s, w_t = np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.4, 0.25, 0.25])
    flow = transport(cost, w_s, w_t)
    assert (flow >= -1e-12).all()
    assert flow.sum(axis=1) == pytest.approx(w_s, abs=1e-9)
    assert flow.sum(axis=0) == pytest.approx(w_t, abs=1e-9)
    # no cheaper plan among the extreme points enumerated by the north-west-corner rule on every
    # permutation of rows and columns (the optimum is one of these vertices)
    import itertools

    def northwest(rows, cols):
        f, a, b = np.zeros_like(cost), w_s.copy(), w_t.copy()
        i = j = 0
        while i < len(rows) and j < len(cols):
            q = min(a[rows[i]], b[cols[j]])
            f[rows[i], cols[j]] = q
            a[rows[i]] -= q
            b[cols[j]] -= q
            if a[rows[i]] <= 1e-15:
                i += 1
            else:
                j += 1
        return (f * cost).sum()

    best = min(northwest(r, c) for r in itertools.permutations(range(3)) for c in itertools.permutations(range(4)))
    assert (flow * cost).sum() == pytest.approx(best, rel=1e-9)


def test_in_a_distillation_reads_every_layer_but_the_embeddings():
    B, T, H = 2, 3, 4
    mask = torch.ones(B, T, dtype=torch.bool)
    hidden = lambda L, k: tuple(torch.sin(torch.arange(B * T * H, dtype=torch.float64) * (k + i)).reshape(B, T, H)
                                for i in range(L + 1))
    obj = Distillation({"alpha": 0}, [{"features": "hidden", "mapping": "emd"}], task_type="classification",
                       student=ModelDims(2, H, 1), teacher=ModelDims(3, H, 1)).double()
    assert obj.terms[0].mapping.layers_used() == ({1, 2}, {1, 2, 3})
    s_hidden = tuple(h.requires_grad_() for h in hidden(2, 0.3))
    t_hidden = tuple(h.requires_grad_() for h in hidden(3, 0.7))
    out = obj(KDInputs(student_logits=torch.zeros(B, 2, dtype=torch.float64, requires_grad=True),
                       labels=torch.tensor([0, 1]), mask=mask,
                       student=FeatureSource(mask, 1, s_hidden), teacher=FeatureSource(mask, 1, t_hidden)))
    out["loss"].backward()
    assert s_hidden[0].grad is None and all(h.grad.abs().sum() > 0 for h in s_hidden[1:])
    assert all(h.grad is None for h in t_hidden)


def test_bad_flag_raises():
    with pytest.raises(StudyConfigError, match="update_weights must be true or false"):
        make(update_weights="yes")
    assert math.isclose(sum(make().student_weights.tolist()), 1.0)


def test_a_zero_cost_layer_takes_all_the_weight():
    # Where ours and BERT-EMD's get_new_layer_weight part (see ``reweight``): a unit cost of 0 is
    # floored at EPS here, so that layer takes the weight; BERT-EMD's would give it 0.
    cost = np.ones((6, 6))
    cost[0, 0] = 0.0
    weights = reweight(np.eye(6) / 6, cost, np.full(6, 1 / 6), axis=1)
    assert weights[0] == pytest.approx(1.0, abs=1e-9) and weights[1:] == pytest.approx(np.zeros(5), abs=1e-9)
