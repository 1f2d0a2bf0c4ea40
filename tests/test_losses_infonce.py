"""The ``infonce`` intermediate loss (contrastive representation distillation) on hand-computable
tensors: in-batch negatives by hand and against a plain-Python reference, and the memory bank
step by step."""

from __future__ import annotations

import math

import pytest
import torch
from kd_tensors import MASK4, fixed

from study.core.errors import StudyConfigError
from study.objectives import INTERMEDIATE_LOSSES
from study.objectives.losses import LossContext

B, T, H, H_S = 4, 5, 6, 4
MASK = MASK4


def make(kind="vector", h_s=H, h_t=H, train_size=0, **params):
    feature = "cls" if kind == "vector" else "hidden"
    return INTERMEDIATE_LOSSES["infonce"](params, LossContext(feature, kind, h_s, h_t, train_size)).double()


def identity_heads(loss, dim):
    with torch.no_grad():
        for lin in (loss.student_embed, loss.teacher_embed):
            lin.weight.copy_(torch.eye(dim, dtype=torch.float64))
            lin.bias.zero_()


def unit(rows):
    out = []
    for r in rows:
        n = math.sqrt(sum(x * x for x in r))
        out.append([x / n for x in r])
    return out


def ref_direction(anchors, positives, negatives_per_row, tau) -> float:
    """mean_i -log(e^{a_i.p_i/tau} / (e^{a_i.p_i/tau} + sum_k e^{a_i.n_k/tau}))."""
    dot = lambda u, v: sum(x * y for x, y in zip(u, v))
    total = 0.0
    for a, p, negs in zip(anchors, positives, negatives_per_row):
        pos = math.exp(dot(a, p) / tau)
        total += -math.log(pos / (pos + sum(math.exp(dot(a, n) / tau) for n in negs)))
    return total / len(anchors)


def ref_in_batch(z_s, z_t, tau) -> float:
    others = lambda z, i: [z[j] for j in range(len(z)) if j != i]
    s_dir = ref_direction(z_s, z_t, [others(z_t, i) for i in range(len(z_s))], tau)
    t_dir = ref_direction(z_t, z_s, [others(z_s, i) for i in range(len(z_t))], tau)
    return 0.5 * (s_dir + t_dir)


def test_two_examples_by_hand():
    # z_s = z_t = e1, e2 at tau = 1: each row is -log(e / (e + 1)) = log(1 + 1/e), both directions
    loss = make(h_s=2, h_t=2, embed_dim=2, temperature=1.0)
    identity_heads(loss, 2)
    x = torch.tensor([[3.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    assert loss(x, x.clone(), MASK[:2]).item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-12)


def test_in_batch_value_matches_reference_and_golden():
    s, t = fixed(B, H, k=0.31), fixed(B, H, k=0.53, scale=1.2)
    loss = make(embed_dim=H, temperature=0.5)
    identity_heads(loss, H)
    value = loss(s, t, MASK).item()
    assert value == pytest.approx(ref_in_batch(unit(s.tolist()), unit(t.tolist()), 0.5), rel=1e-12)
    assert value == pytest.approx(2.567506234981, rel=1e-9)  # pinned once from ref_in_batch


def test_aligned_student_beats_shuffled_and_tends_to_zero_as_tau_shrinks():
    t = 2.0 * torch.eye(B, H, dtype=torch.float64) + fixed(B, H, k=0.53, scale=0.3)  # distinct directions
    warm = make(embed_dim=H, temperature=0.5)
    identity_heads(warm, H)
    assert warm(t.clone(), t, MASK).item() < warm(t[[1, 2, 3, 0]], t, MASK).item()
    cold = make(embed_dim=H, temperature=0.01)
    identity_heads(cold, H)
    assert cold(t.clone(), t, MASK).item() < 1e-6


def test_states_are_pooled_over_real_tokens_and_padding_changes_nothing():
    s, t = fixed(B, T, H_S, k=0.31), fixed(B, T, H, k=0.53, scale=1.2)
    loss = make("states", h_s=H_S, embed_dim=3)
    pooled_s = torch.stack([s[b][MASK[b]].mean(0) for b in range(B)])
    pooled_t = torch.stack([t[b][MASK[b]].mean(0) for b in range(B)])
    expected = loss(pooled_s, pooled_t, MASK).item()
    pad = ~MASK[:, :, None]
    s_bad = torch.where(pad, float("nan"), s).requires_grad_()
    out = loss(s_bad, torch.where(pad, float("nan"), t), MASK)
    assert out.item() == pytest.approx(expected, rel=1e-12)
    out.backward()
    assert torch.isfinite(s_bad.grad).all() and (s_bad.grad[~MASK] == 0).all()


@pytest.mark.parametrize("negatives", ["batch", "memory"])
def test_gradient_reaches_student_and_heads_not_teacher(negatives):
    loss = make(h_s=H_S, train_size=8, negatives=negatives, embed_dim=3)
    if negatives == "memory":  # fill rows 4..7 so that the batch 0..3 has negatives
        loss(fixed(B, H_S, k=0.9), fixed(B, H, k=1.1), MASK, torch.arange(4, 8))
    s = fixed(B, H_S, k=0.31).requires_grad_()
    t = fixed(B, H, k=0.53, scale=1.2).requires_grad_()
    loss(s, t.detach(), MASK, torch.arange(4)).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())


def test_memory_bank_step_by_step():
    tau, m = 0.5, 0.5
    loss = make(h_s=2, h_t=2, embed_dim=2, temperature=tau, momentum=m, negatives="memory",
                bank_size=10, train_size=4)
    identity_heads(loss, 2)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    # step 1, rows 0 and 1: the bank is empty, no negatives, loss 0; rows become the embeddings
    assert loss(a, b, MASK[:2], torch.tensor([0, 1])).item() == pytest.approx(0.0, abs=1e-15)
    assert loss.filled.tolist() == [True, True, False, False]
    assert torch.allclose(loss.teacher_bank[:2], torch.tensor(unit(b.tolist()), dtype=torch.float64))
    # step 2, rows 2 and 3: negatives are bank rows 0 and 1 (all filled rows outside the batch)
    s2 = torch.tensor([[2.0, 1.0], [-1.0, 3.0]], dtype=torch.float64)
    t2 = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    assert loss.negatives(torch.tensor([2, 3])).tolist() == [0, 1]
    zs, zt = unit(s2.tolist()), unit(t2.tolist())
    bank_t, bank_s = unit(b.tolist()), unit(a.tolist())
    expected = 0.5 * (ref_direction(zs, zt, [bank_t, bank_t], tau) + ref_direction(zt, zs, [bank_s, bank_s], tau))
    assert loss(s2, t2, MASK[:2], torch.tensor([2, 3])).item() == pytest.approx(expected, rel=1e-12)
    # step 3 revisits row 0: momentum update normalise(m * old + (1 - m) * new)
    s3 = torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    loss(s3, s3.clone(), MASK[:2], torch.tensor([0, 2]))
    old, new = unit(a.tolist())[0], unit(s3.tolist())[0]
    mixed = unit([[m * o + (1 - m) * n for o, n in zip(old, new)]])[0]
    assert loss.student_bank[0].tolist() == pytest.approx(mixed, rel=1e-12)
    # eval mode reads the bank but does not write it
    before = loss.student_bank.clone()
    loss.eval()
    loss(s2, t2, MASK[:2], torch.tensor([0, 1]))
    assert torch.equal(loss.student_bank, before)


def test_bank_size_caps_the_negatives():
    loss = make(negatives="memory", bank_size=3, train_size=10, embed_dim=2)
    loss.filled[:] = True
    torch.manual_seed(0)
    neg = loss.negatives(torch.tensor([0, 1]))
    assert len(neg) == 3 and len(set(neg.tolist())) == 3 and not ({0, 1} & set(neg.tolist()))


def test_config_errors():
    with pytest.raises(StudyConfigError, match="negatives must be one of batch, memory, got 'queue'"):
        make(negatives="queue")
    with pytest.raises(StudyConfigError, match="train_size"):
        make(negatives="memory")
    with pytest.raises(StudyConfigError, match="one layer pair"):
        INTERMEDIATE_LOSSES["infonce"]({"negatives": "memory"}, LossContext("cls", "vector", H, H, 8, pairs=3))
    with pytest.raises(StudyConfigError, match="temperature"):
        make(temperature=0.0)
    loss = make(negatives="memory", train_size=4)
    with pytest.raises(ValueError, match="index"):
        loss(fixed(2, H, k=0.3), fixed(2, H, k=0.5), MASK[:2])
    with pytest.raises(ValueError, match="outside the training set"):
        loss(fixed(2, H, k=0.3), fixed(2, H, k=0.5), MASK[:2], torch.tensor([3, 4]))


def ref_nce_direction(anchors, positives, negatives, tau, n, z=None):
    """CRD's NCE loss for one direction (Tian et al. 2020, eq. 18, ContrastLoss), in plain Python;
    returns (loss, Z) with Z = mean of every exp score * n when not given."""
    dot = lambda u, v: sum(x * y for x, y in zip(u, v))
    rows = [[math.exp(dot(a, p) / tau)] + [math.exp(dot(a, q) / tau) for q in negatives]
            for a, p in zip(anchors, positives)]
    if z is None:
        z = sum(sum(r) for r in rows) / sum(len(r) for r in rows) * n
    noise, eps = len(negatives) / n, 1e-7
    total = 0.0
    for r in rows:
        p = [x / z for x in r]
        total += math.log(p[0] / (p[0] + noise + eps)) + sum(math.log(noise / (q + noise + eps)) for q in p[1:])
    return -total / len(anchors), z


def test_crd_nce_critic_step_by_step():
    tau, n = 0.5, 4
    loss = make(h_s=2, h_t=2, embed_dim=2, temperature=tau, negatives="memory", critic="nce", bank_size=10,
                train_size=n)
    identity_heads(loss, 2)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    first = loss(a.clone().requires_grad_(), b, MASK[:2], torch.tensor([0, 1]))
    assert first.item() == 0.0 and first.requires_grad  # nothing to contrast yet, but backward works
    assert loss.normalisers == [None, None]  # Z waits for a call with negatives
    s2 = torch.tensor([[2.0, 1.0], [-1.0, 3.0]], dtype=torch.float64)
    t2 = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    zs, zt = unit(s2.tolist()), unit(t2.tolist())
    bank_t, bank_s = unit(b.tolist()), unit(a.tolist())
    s_dir, z_s = ref_nce_direction(zs, zt, bank_t, tau, n)
    t_dir, z_t = ref_nce_direction(zt, zs, bank_s, tau, n)
    assert loss(s2, t2, MASK[:2], torch.tensor([2, 3])).item() == pytest.approx(s_dir + t_dir, rel=1e-12)
    assert loss.normalisers == pytest.approx([z_s, z_t], rel=1e-12)
    # Z stays what the first contrast set: the next call is scored with it, not a new mean
    s3, t3 = torch.tensor([[0.0, 2.0], [3.0, 1.0]], dtype=torch.float64), t2.flip(0)
    negatives_s = [loss.teacher_bank[i].tolist() for i in (1, 3)]
    negatives_t = [loss.student_bank[i].tolist() for i in (1, 3)]
    zs3, zt3 = unit(s3.tolist()), unit(t3.tolist())
    expected = (ref_nce_direction(zs3, zt3, negatives_s, tau, n, z_s)[0]
                + ref_nce_direction(zt3, zs3, negatives_t, tau, n, z_t)[0])
    assert loss(s3, t3, MASK[:2], torch.tensor([0, 2])).item() == pytest.approx(expected, rel=1e-12)


def test_a_student_aligned_with_its_teacher_scores_lower_under_the_nce_critic():
    def trained(student, teacher):
        loss = make(embed_dim=H, temperature=0.1, negatives="memory", critic="nce", train_size=8)
        identity_heads(loss, H)
        loss(fixed(8, H, k=0.9), fixed(8, H, k=1.3), MASK4.repeat(2, 1), torch.arange(8))  # fill the banks
        return loss(student, teacher, MASK[:4], torch.arange(4)).item()

    teacher = fixed(4, H, k=0.37)
    assert trained(teacher.clone(), teacher) < trained(teacher.flip(0), teacher)


def test_the_nce_critic_needs_a_memory_bank():
    with pytest.raises(StudyConfigError, match="critic: nce needs negatives: memory"):
        make(critic="nce")
    with pytest.raises(StudyConfigError, match="critic must be one of softmax, nce, got 'hinge'"):
        make(critic="hinge")
