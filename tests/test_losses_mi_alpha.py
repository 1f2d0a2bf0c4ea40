"""The ``mi_alpha`` intermediate loss: Poole et al.'s interpolated MI bound I_alpha.

MI bounds are not 0 at identity, so the tests pin the bound on hand-computable critic values,
check it against a plain-Python transcription of the bound as Poole et al. write it, check its
two endpoints (alpha = 0: TUBA/NWJ, alpha = 1: InfoNCE on K - 1 samples), and check that a
student aligned with its teacher gets a higher bound (lower loss) than a shuffled one.
"""

from __future__ import annotations

import math

import pytest
import torch
from kd_tensors import MASK4, fixed

from study.core.errors import StudyConfigError
from study.objectives import INTERMEDIATE_LOSSES
from study.objectives.losses import LossContext
from study.objectives.losses.mi_alpha import interpolated_bound

B, T, H, H_S = 4, 5, 6, 4
MASK = MASK4


def make(kind="vector", h_s=H, params=None):
    feature = "cls" if kind == "vector" else "hidden"
    return INTERMEDIATE_LOSSES["mi_alpha"](params, LossContext(feature, kind, h_s, H)).double()


# ------------------------------------------------- plain-Python references (Poole et al. 2019)


def ref_i_alpha(scores, log_q, alpha) -> float:
    """1 + 1/(K(K-1)) sum_j sum_{i != j} [log e^{f_ii} / a(y_i; x_{-j}) - e^{f_ij'} / a(y_j'; x_{-j'})]
    written as two separate averages over ordered pairs i != j, with
    a(y_i; x_{-j}) = alpha * mean_{k != j} e^{f(x_k, y_i)} + (1 - alpha) * q(y_i),
    f(x_j, y_i) = scores[i][j]."""
    f, K = scores.tolist(), len(scores)
    q = [math.exp(v) for v in log_q.tolist()]

    def a(i, j):
        loo = sum(math.exp(f[i][k]) for k in range(K) if k != j) / (K - 1)
        return alpha * loo + (1 - alpha) * q[i]

    pairs = [(i, j) for i in range(K) for j in range(K) if i != j]
    joint = sum(f[i][i] - math.log(a(i, j)) for i, j in pairs) / len(pairs)
    marginal = sum(math.exp(f[i][j]) / a(i, i) for i, j in pairs) / len(pairs)
    return 1 + joint - marginal


def ref_nwj(scores) -> float:
    """I_NWJ = E_p[f] - e^{-1} E_{p(x)p(y)}[e^f] with diagonal = joint, off-diagonal = marginal."""
    f, K = scores.tolist(), len(scores)
    off = [math.exp(f[i][j]) for i in range(K) for j in range(K) if i != j]
    return sum(f[i][i] for i in range(K)) / K - math.exp(-1) * sum(off) / len(off)


def ref_infonce(scores) -> float:
    """I_NCE = mean_i [f_ii - log (1/K) sum_k e^{f_ik}]."""
    f, K = scores.tolist(), len(scores)
    return sum(f[i][i] - math.log(sum(math.exp(v) for v in f[i]) / K) for i in range(K)) / K


SCORES = fixed(4, 4, k=0.77, scale=1.5)
LOG_Q = fixed(4, k=1.9, scale=0.7)


def test_two_by_two_by_hand():
    # K = 2: the leave-one-out mean is the other column. With f = [[1, 0], [0, 1]], log q = 1 and
    # alpha = 1/2: a[0,1] = a[1,0] = log(e/2 + e/2) = 1, a[0,0] = a[1,1] = log((1 + e)/2), so
    # joint = 0 and the marginal term is 2 / (1 + e): I = 1 - 2/(1 + e) = tanh(1/2).
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    value = interpolated_bound(scores, torch.ones(2, dtype=torch.float64), 0.5).item()
    assert value == pytest.approx(math.tanh(0.5), rel=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.3, 0.9, 1.0])
def test_matches_the_bound_as_written(alpha):
    value = interpolated_bound(SCORES, LOG_Q, alpha).item()
    assert value == pytest.approx(ref_i_alpha(SCORES, LOG_Q, alpha), rel=1e-12)


def test_golden():
    # pinned once from ref_i_alpha; a change means the estimator moved (bump the loss version)
    assert interpolated_bound(SCORES, LOG_Q, 0.3).item() == pytest.approx(-0.251051929500, rel=1e-9)


def test_alpha_zero_is_tuba_and_nwj_with_constant_baseline():
    K = len(SCORES)
    nwj = interpolated_bound(SCORES, torch.ones(K, dtype=torch.float64), 0.0).item()
    assert nwj == pytest.approx(ref_nwj(SCORES), rel=1e-12)
    # TUBA with baseline a(y) = q(y): the NWJ formula on f - log q(y)
    tuba = interpolated_bound(SCORES, LOG_Q, 0.0).item()
    assert tuba == pytest.approx(ref_nwj(SCORES - LOG_Q[:, None] + 1.0), rel=1e-12)


def test_alpha_one_is_infonce_on_the_batch_without_each_example():
    K = len(SCORES)
    value = interpolated_bound(SCORES, LOG_Q, 1.0).item()
    keep = [[k for k in range(K) if k != j] for j in range(K)]
    expected = sum(ref_infonce(SCORES[idx][:, idx]) for idx in keep) / K
    assert value == pytest.approx(expected, rel=1e-12)
    # and the baseline q plays no part
    assert interpolated_bound(SCORES, LOG_Q + 5.0, 1.0).item() == pytest.approx(value, rel=1e-12)


def identity_critic(loss):
    with torch.no_grad():
        for lin in (loss.student_critic, loss.teacher_critic):
            lin.weight.copy_(torch.eye(H, dtype=torch.float64))
            lin.bias.zero_()


def test_aligned_student_has_a_higher_bound_than_shuffled():
    teacher = fixed(B, H, k=0.53, scale=2.0)
    loss = make(params={"alpha": 0.5, "critic_dim": H})
    identity_critic(loss)
    aligned = loss(teacher.clone(), teacher, MASK).item()
    shuffled = loss(teacher[[1, 2, 3, 0]], teacher, MASK).item()
    assert aligned < shuffled
    # the loss is minus the bound on the critic's scores, f(x_j, y_i) = <x_j, y_i> / sqrt(H)
    scores = teacher @ teacher.T / math.sqrt(H)
    assert aligned == pytest.approx(-ref_i_alpha(scores, torch.ones(B, dtype=torch.float64), 0.5), rel=1e-12)


def test_states_are_mean_pooled_over_real_tokens_and_padding_changes_nothing():
    s, t = fixed(B, T, H_S, k=0.31), fixed(B, T, H, k=0.53, scale=1.2)
    loss = make("states", h_s=H_S)
    pooled = [[sum(s[b, i, h].item() for i in range(T) if MASK[b, i]) / MASK[b].sum().item() for h in range(H_S)]
              for b in range(B)]
    pooled_t = torch.stack([t[b][MASK[b]].mean(0) for b in range(B)])
    expected = loss(torch.tensor(pooled, dtype=torch.float64), pooled_t, MASK).item()
    assert loss(s, t, MASK).item() == pytest.approx(expected, rel=1e-12)
    pad = ~MASK[:, :, None]
    s_bad = torch.where(pad, float("nan"), s).requires_grad_()
    out = loss(s_bad, torch.where(pad, float("nan"), t), MASK)
    assert out.item() == pytest.approx(expected, rel=1e-12)
    out.backward()
    assert torch.isfinite(s_bad.grad).all() and (s_bad.grad[~MASK] == 0).all()


def test_gradient_reaches_student_critic_and_baseline_not_teacher():
    s = fixed(B, H_S, k=0.31).requires_grad_()
    t = fixed(B, H, k=0.53, scale=1.2).requires_grad_()
    loss = make(h_s=H_S, params={"alpha": 0.3, "critic_dim": 3})
    loss(s, t.detach(), MASK).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    names = {n for n, p in loss.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert names == {"student_critic.weight", "student_critic.bias", "teacher_critic.weight",
                     "teacher_critic.bias", "baseline.weight", "baseline.bias"}


def test_single_example_batch_gives_zero_and_bad_params_raise():
    loss = make()
    assert loss(fixed(1, H, k=0.3), fixed(1, H, k=0.5), MASK[:1]).item() == 0.0
    with pytest.raises(ValueError, match="K >= 2"):
        interpolated_bound(torch.zeros(1, 1), torch.zeros(1), 0.5)
    with pytest.raises(StudyConfigError, match="alpha must be a number in \\[0, 1\\], got 1.5"):
        make(params={"alpha": 1.5})
    with pytest.raises(StudyConfigError, match="critic_dim"):
        make(params={"critic_dim": 0})
    assert make().params == {"alpha": 0.5, "critic_dim": 128}


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9, 1.0])
def test_lower_limit_of_the_loss(alpha):
    # The docstring's limit: -I_alpha > -(1 + log((K - 1) / alpha)) for 0 < alpha < 1, approached
    # with a large diagonal critic and a large baseline; at alpha = 1 the limit is -log(K - 1).
    K = 8
    limit = math.log(K - 1) if alpha == 1.0 else 1.0 + math.log((K - 1) / alpha)
    scores = torch.zeros(K, K, dtype=torch.float64).fill_diagonal_(60.0)
    log_q = torch.full((K,), math.log(1e6), dtype=torch.float64)
    assert interpolated_bound(scores, log_q, alpha).item() == pytest.approx(limit, abs=1e-5)
    torch.manual_seed(0)
    for _ in range(200):
        bound = interpolated_bound(10 * torch.randn(K, K, dtype=torch.float64),
                                   10 * torch.randn(K, dtype=torch.float64), alpha)
        assert bound.item() <= limit + 1e-9
