"""The interpolated lower bound I_alpha on mutual information (Poole et al. 2019), as Distiller
(He et al. 2021) uses it for intermediate distillation; the loss is -I_alpha."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from study.core.schema import integer, number
from study.objectives.losses.base import IntermediateLoss


def interpolated_bound(scores: Tensor, log_baseline: Tensor, alpha: float) -> Tensor:
    """The minibatch estimate of I_alpha (Poole et al. 2019, "On Variational Bounds of Mutual
    Information", the section on nonlinearly interpolated lower bounds), in nats.

    Args:
        scores: (K, K) critic values, ``scores[i, j] = f(x_j, y_i)``: row i is the teacher
            feature y_i, column j the student feature x_j; the diagonal holds the K joint samples.
        log_baseline: (K,) ``log q(y_i)``, the learned single-sample baseline.
        alpha: mixture weight in [0, 1].

    With ``m_{-j}(y_i) = mean_{k != j} exp f(x_k, y_i)`` (the leave-one-out InfoNCE baseline) and
    ``a[i, j] = log(alpha m_{-j}(y_i) + (1 - alpha) q(y_i))``::

        I_alpha = 1 + mean_{i != j} [f(x_i, y_i) - a[i, j]] - mean_{i != j} exp(f(x_j, y_i) - a[i, i])

    i.e. holding out sample j as the independent draw from p(y) and using the other K-1 for the
    multi-sample baseline, averaged over every choice of j; this is the estimator of Poole et al.'s
    reference notebook (google-research/vbmi, ``interpolated_lower_bound``). Its endpoints:
    alpha = 0 is I_TUBA with baseline q (I_NWJ when log q = 1); alpha = 1 makes the last term
    exactly 1 and leaves ``mean_j I_NCE(batch without j)``, the InfoNCE bound on K - 1 samples.
    Note that the notebook's docstring states the limits the other way round, while its
    ``log_interpolate(nce, baseline, alpha_logit)`` weighs the InfoNCE baseline by
    sigmoid(alpha_logit) -> 1, as here; Distiller's ``mi_loss`` passes its ``alpha`` as that
    logit, so Distiller's alpha = a is this alpha = sigmoid(a).

    The leave-one-out sums are taken exactly over a (K, K, K) masked tensor (memory O(K^3)).

    Raises:
        ValueError: scores not square, or K < 2 (no independent sample to hold out).
    """
    K = scores.shape[0]
    if scores.dim() != 2 or scores.shape[1] != K or K < 2:
        raise ValueError(f"interpolated_bound needs (K, K) scores with K >= 2, got {tuple(scores.shape)}")
    eye = torch.eye(K, dtype=torch.bool, device=scores.device)
    # loo[i, j] = log mean_{k != j} exp scores[i, k]
    held_out = scores[:, None, :].expand(K, K, K).masked_fill(eye[None], float("-inf"))
    loo = torch.logsumexp(held_out, dim=-1) - math.log(K - 1)  # (K, K)
    log_q = log_baseline[:, None].expand(K, K)
    if alpha == 1.0:
        log_a = loo
    elif alpha == 0.0:
        log_a = log_q
    else:
        log_a = torch.logaddexp(math.log(alpha) + loo, math.log1p(-alpha) + log_q)  # (K, K)
    off = ~eye
    joint = (scores.diagonal()[:, None] - log_a)[off].mean()
    marginal = torch.logsumexp((scores - log_a.diagonal()[:, None])[off], dim=0) - math.log(K * (K - 1))
    return 1.0 + joint - marginal.exp()


class MIAlpha(IntermediateLoss):
    """``-I_alpha(student; teacher)`` with a learned separable critic and baseline.

    Distiller (He et al. 2021, the intermediate loss "MI-alpha") maximises the interpolated
    bound of Poole et al. 2019 between student and teacher intermediate representations, with
    alpha as a tunable axis; see ``interpolated_bound`` for the estimator and its endpoints
    (alpha = 0: TUBA/NWJ, alpha = 1: InfoNCE). The batch supplies the K joint samples (matching
    examples) and the K (K - 1) marginal ones (mismatched examples).

    Parts: critic ``f(x, y) = <g(x), h(y)> / sqrt(d)`` with ``g = nn.Linear(H_s, d)``,
    ``h = nn.Linear(H_t, d)``, d = ``critic_dim`` (Poole et al.'s separable critic, linear here);
    baseline ``log q(y) = v.y + c`` initialised to the constant 1 (NWJ's e), learned. Both are
    trained with the student to tighten the bound.

    Features: ``vector`` (B, H) as given; ``states`` (B, T, H) are mean-pooled over real tokens
    first (Distiller's ``mi_loss`` instead flattens the padded (T, H) states, which lets padding
    in; pooling keeps padding out). Units: nats (the negative bound). It is not 0 at identity:
    it is lower when the student carries more information about the teacher. Its lower limit,
    with K the batch size: for 0 < alpha < 1, ``-(1 + log((K - 1) / alpha))``, approached but not
    reached (the joint term is at most log((K - 1) / alpha), since a[i, j] >= log(alpha) +
    f(x_i, y_i) - log(K - 1) for j != i, and the marginal term is above 0, tending to 0 as the
    baseline q grows); at alpha = 1, ``-log(K - 1)`` (the marginal term is exactly 1: InfoNCE on
    K - 1 samples); at alpha = 0 it is unbounded below (NWJ), as Poole et al. discuss. For K = 8:
    -5.25 at alpha = 0.1, -3.64 at 0.5, -1.95 at 1. Batches with fewer than 2 examples give 0
    (no negatives).
    """

    name: ClassVar[str] = "mi_alpha"
    accepts: ClassVar[tuple[str, ...]] = ("vector", "states")
    defaults: ClassVar[dict] = {"alpha": 0.5, "critic_dim": 128}
    checks: ClassVar[dict] = {
        "alpha": number(lambda x: 0.0 <= x <= 1.0, "a number in [0, 1]"),
        "critic_dim": integer(1, "an integer >= 1"),
    }

    def __init__(self, params, context):
        super().__init__(params, context)
        dim = self.params["critic_dim"]
        self.student_critic = torch.nn.Linear(context.student_dim, dim)
        self.teacher_critic = torch.nn.Linear(context.teacher_dim, dim)
        self.baseline = torch.nn.Linear(context.teacher_dim, 1)
        with torch.no_grad():
            self.baseline.weight.zero_()
            self.baseline.bias.fill_(1.0)

    def scores(self, student: Tensor, teacher: Tensor) -> Tensor:
        """(K, H_s), (K, H_t) -> (K, K) critic values, ``[i, j] = f(student_j, teacher_i)``."""
        dtype = self.student_critic.weight.dtype
        g = self.student_critic(student.to(dtype))  # (K, d)
        h = self.teacher_critic(teacher.to(dtype))  # (K, d)
        return h @ g.T / math.sqrt(g.shape[-1])

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        s, t = pool(student, mask), pool(teacher, mask)  # (B, H_s), (B, H_t)
        scores = self.scores(s, t)
        log_q = self.baseline(t.to(self.baseline.weight.dtype)).squeeze(-1)  # (B,)
        if s.shape[0] < 2:
            return 0.0 * (scores.sum() + log_q.sum())
        return -interpolated_bound(scores, log_q, self.params["alpha"])


def pool(x: Tensor, mask: Tensor) -> Tensor:
    """(B, T, H) -> (B, H) mean over real tokens (padding, even nan, never enters); (B, H) as is."""
    if x.dim() == 2:
        return x
    real = mask[:, :, None]
    return torch.where(real, x, 0.0).sum(dim=1) / real.sum(dim=1).clamp(min=1)
