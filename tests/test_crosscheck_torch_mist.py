"""Cross-check of ``mi_alpha`` against a published implementation of Poole et al.'s I_alpha:
``AlphaTUBA`` of torch-mist 0.2.17 (Federici, PyPI ``torch-mist``, MIT), called as released.

Conventions, converted here:

| ours (``interpolated_bound``, ``MIAlpha``)          | torch-mist                                      |
|------------------------------------------------------|-------------------------------------------------|
| teacher feature y_i: the row, the baseline's input   | ``x`` (its baseline is a function of ``x``)     |
| student feature x_j: the column                      | ``y``                                           |
| critic ``h(t) . g(s) / sqrt(d)``                     | ``SeparableCritic(f_x=h, f_y=g, temperature=sqrt(d))`` |
| negatives: the other K - 1 examples of the batch     | ``neg_samples=-1`` (all but one)                |
| result: I_alpha in nats; the loss is its negative     | ``mutual_information`` (its loss is the negative) |

Both interpolate the leave-one-out InfoNCE baseline with the learned one,
``A[i, j] = log(alpha * mean_{k != j} exp f(x_k, y_i) + (1 - alpha) * q(y_i))``, and both use
``A[i, i]`` in the marginal term. They differ in the joint term: Poole et al.'s reference notebook
(google-research/vbmi, ``interpolated_lower_bound``), and so ours, averages
``f(x_i, y_i) - A[i, j]`` over the K - 1 held-out samples j != i, while torch-mist uses
``f(x_i, y_i) - A[i, i]`` (the baseline without the positive). Hence, exactly:

    ours = torch-mist + mean_i A[i, i] - mean_{i != j} A[i, j]

and at alpha = 0, where the baseline is q alone, the two are equal (TUBA; with log q = 1, NWJ,
which torch-mist also ships as ``NWJ``). The tests check these identities, with ``A`` computed
here from its definition by loops, on fixed float64 tensors.
"""

from __future__ import annotations

import math

import pytest
import torch
from kd_tensors import fixed
from torch_mist.baseline import LearnableBaseline
from torch_mist.critic import SeparableCritic
from torch_mist.estimators.discriminative.implementations import NWJ, TUBA, AlphaTUBA

from study.objectives import INTERMEDIATE_LOSSES
from study.objectives.losses import LossContext
from study.objectives.losses.mi_alpha import interpolated_bound

K, H_S, H_T, D = 6, 5, 7, 4
ALPHAS = [0.01, 0.3, 0.5, 0.99, 1.0]


def linear(n_in: int, n_out: int, k: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(n_in, n_out).double()
    with torch.no_grad():
        layer.weight.copy_(fixed(n_out, n_in, k=k))
        layer.bias.copy_(fixed(n_out, k=k + 0.5, scale=0.3))
    return layer


STUDENT, TEACHER = fixed(K, H_S, k=0.7, scale=1.5), fixed(K, H_T, k=1.3, scale=1.5)
G, H, Q = linear(H_S, D, 0.37), linear(H_T, D, 0.91), linear(H_T, 1, 0.53)


def scores() -> torch.Tensor:
    """(K, K) ``[i, j] = f(student_j, teacher_i)``, our orientation."""
    return (H(TEACHER) @ G(STUDENT).T / math.sqrt(D)).detach()


def log_q() -> torch.Tensor:
    return Q(TEACHER).squeeze(-1).detach()


def theirs(estimator_cls, **kw) -> float:
    critic = SeparableCritic(f_x=H, f_y=G, temperature=math.sqrt(D))
    estimator = estimator_cls(critic=critic, neg_samples=-1, **kw).double()
    with torch.no_grad():
        return estimator.mutual_information(TEACHER, STUDENT).item()


def interpolated_baseline(f: torch.Tensor, lq: torch.Tensor, alpha: float) -> torch.Tensor:
    """A[i, j] from its definition, one entry at a time."""
    a = torch.empty(K, K, dtype=torch.float64)
    for i in range(K):
        for j in range(K):
            nce = sum(math.exp(f[i, k]) for k in range(K) if k != j) / (K - 1)
            a[i, j] = math.log(alpha * nce + (1 - alpha) * math.exp(lq[i]))
    return a


def joint_baseline_gap(f: torch.Tensor, lq: torch.Tensor, alpha: float) -> float:
    """mean_i A[i, i] - mean_{i != j} A[i, j]: ours minus torch-mist's."""
    a = interpolated_baseline(f, lq, alpha)
    off = ~torch.eye(K, dtype=torch.bool)
    return (a.diagonal().mean() - a[off].mean()).item()


def test_alpha_zero_is_torch_mists_tuba_and_alpha_tuba():
    ours = interpolated_bound(scores(), log_q(), 0.0).item()
    assert ours == pytest.approx(theirs(TUBA, baseline=LearnableBaseline(Q)), rel=1e-12)
    assert ours == pytest.approx(theirs(AlphaTUBA, baseline=LearnableBaseline(Q), alpha=0.0), rel=1e-12)


def test_constant_baseline_one_is_torch_mists_nwj():
    ours = interpolated_bound(scores(), torch.ones(K, dtype=torch.float64), 0.0).item()
    assert ours == pytest.approx(theirs(NWJ), rel=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_interpolated_bound_is_alpha_tuba_plus_the_joint_baseline_gap(alpha):
    f, lq = scores(), log_q()
    ours = interpolated_bound(f, lq, alpha).item()
    mist = theirs(AlphaTUBA, baseline=LearnableBaseline(Q), alpha=alpha)
    gap = joint_baseline_gap(f, lq, alpha)
    assert gap != pytest.approx(0.0, abs=1e-6)  # the two estimators really differ here
    assert ours == pytest.approx(mist + gap, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_the_mi_alpha_loss_is_minus_alpha_tuba_on_its_own_critic(alpha):
    """The registered loss, with its critic and baseline, on (B, H) vectors and on padded
    (B, T, H) states (mean-pooled over real tokens first)."""
    loss = INTERMEDIATE_LOSSES["mi_alpha"]({"alpha": alpha, "critic_dim": D},
                                           LossContext("cls", "vector", H_S, H_T)).double()
    with torch.no_grad():
        for mine, ref in [(loss.student_critic, G), (loss.teacher_critic, H), (loss.baseline, Q)]:
            mine.weight.copy_(ref.weight)
            mine.bias.copy_(ref.bias)
    mask = torch.ones(K, 3, dtype=torch.bool)
    mask[1, 2] = mask[4, 1:] = False
    pad = lambda x: torch.where(mask[:, :, None], x[:, None, :].expand(K, 3, x.shape[-1]), torch.nan)
    mist = theirs(AlphaTUBA, baseline=LearnableBaseline(Q), alpha=alpha)
    gap = joint_baseline_gap(scores(), log_q(), alpha) if alpha > 0 else 0.0
    with torch.no_grad():
        as_vectors = loss(STUDENT, TEACHER, torch.ones(K, 1, dtype=torch.bool)).item()
        as_states = loss(pad(STUDENT), pad(TEACHER), mask).item()
    assert -as_vectors == pytest.approx(mist + gap, rel=1e-10, abs=1e-12)
    assert as_states == pytest.approx(as_vectors, rel=1e-10, abs=1e-12)
