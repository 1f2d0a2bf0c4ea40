"""Contrastive representation distillation: InfoNCE between student and teacher embeddings
(CRD, Tian et al. 2020), with in-batch negatives or a memory bank over the training set."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from study.core.errors import StudyConfigError
from study.core.schema import integer, number
from study.objectives.losses.base import IntermediateLoss
from study.objectives.losses.mi_alpha import pool

NEGATIVES = ("batch", "memory")
CRITICS = ("softmax", "nce")
#: CRD's ``eps`` in its NCE loss (``ContrastLoss``), keeping the logs finite.
NCE_EPS = 1e-7


def _one_of(values: tuple[str, ...], optional: bool = False):
    """A validator that accepts one of ``values`` (and None when ``optional``)."""
    def check(component: str, key: str, value: Any) -> str | None:
        if value in values or (optional and value is None):
            return value
        raise StudyConfigError(f"{component}: {key} must be one of {', '.join(values)}, got {value!r}.")
    return check


class InfoNCE(IntermediateLoss):
    """InfoNCE between embedded student and teacher features, both directions averaged.

    ``z_s = normalise(g_s(x_s))``, ``z_t = normalise(g_t(x_t))`` with learned ``g_s =
    nn.Linear(H_s, d)``, ``g_t = nn.Linear(H_t, d)`` (CRD's embedding heads, d = ``embed_dim``).
    For the student anchor of example i, with positive ``z_t[i]`` and negatives ``n_k``::

        l_i = -log( exp(z_s[i].z_t[i] / tau) / (exp(z_s[i].z_t[i] / tau) + sum_k exp(z_s[i].n_k / tau)) )

    and symmetrically for the teacher anchor ``z_t[i]`` against student negatives; the loss is
    the mean over examples of the two, averaged. CRD (Tian et al. 2020) sums the two directions
    and scores them with a binary NCE critic (its eq. 18, the ``ContrastLoss`` of its code, which
    Distiller copies); this loss uses the softmax (InfoNCE, van den Oord et al. 2018) form instead,
    the one that gives the in-batch value in closed form. tau = ``temperature`` (CRD: 0.07).

    ``negatives: batch`` (default): the other examples of the batch (``z_t[j]``, j != i): a
    cross-entropy over the (B, B) similarity matrix with the diagonal as labels.
    ``negatives: memory`` (CRD): ``bank_size`` rows drawn at random (torch's global generator,
    seeded by the trainer) from banks of every training example's last embedding, excluding the
    batch's own rows; the banks are indexed by ``index`` (B,) and sized by
    ``LossContext.train_size``. After each training-mode call the batch's rows are updated as
    ``normalise(m * bank + (1 - m) * z)`` (``momentum`` m, CRD: 0.5), or set to z when first
    seen. Until other rows are filled there are no negatives and the loss is 0. The banks are
    non-persistent buffers (not checkpointed: a resumed run refills them).

    ``critic``: unset is the softmax form above (added unset, so entries without it keep their
    identity); ``critic: nce`` (with ``negatives: memory``) scores each direction with CRD's binary NCE
    critic instead (Tian et al. 2020, eq. 18, as its code's ``ContrastMemory`` and
    ``ContrastLoss``): for an anchor with K negatives drawn from N training examples,
    ``p = exp(a.x / tau) / Z`` for the positive and each negative, with ``Z`` set once, at the first
    call with negatives, to ``mean(exp(a.x / tau)) * N`` over that call's scores (one ``Z`` per
    direction; like the banks, not checkpointed: a resumed run sets it again), and::

        l = -( log(p_pos / (p_pos + K / N + eps)) + sum_k log((K / N) / (p_k + K / N + eps)) )

    averaged over the batch's anchors and **summed** over the two directions, as CRD's loss is.
    One difference from CRD's code: the positive is the other model's embedding of the example
    now, as in the softmax form; CRD reads it from the memory bank (its momentum copy).

    Features: ``vector`` (B, H) as given; ``states`` (B, T, H) mean-pooled over real tokens.
    Units: nats per example; not 0 at identity (its minimum, for B distinct examples, goes to 0
    only as tau -> 0), lower the better the student's embedding identifies its teacher's.

    Raises:
        StudyConfigError: ``memory`` without a training-set size, or with a mapping of more than
            one layer pair (``LossContext.pairs``; the bank holds one embedding per example);
            ``critic: nce`` without ``negatives: memory``.
        ValueError: ``memory`` called without ``index``, or an index outside the training set.
    """

    name: ClassVar[str] = "infonce"
    accepts: ClassVar[tuple[str, ...]] = ("vector", "states")
    defaults: ClassVar[dict] = {"negatives": "batch", "bank_size": 4096, "temperature": 0.07,
                                "embed_dim": 128, "momentum": 0.5, "critic": None}
    checks: ClassVar[dict] = {
        "negatives": _one_of(NEGATIVES),
        "critic": _one_of(CRITICS, optional=True),
        "bank_size": integer(1, "an integer >= 1"),
        "temperature": number(lambda x: x > 0.0, "a finite number > 0"),
        "embed_dim": integer(1, "an integer >= 1"),
        "momentum": number(lambda x: 0.0 <= x < 1.0, "a number in [0, 1)"),
    }

    def __init__(self, params, context):
        super().__init__(params, context)
        dim = self.params["embed_dim"]
        self.student_embed = torch.nn.Linear(context.student_dim, dim)
        self.teacher_embed = torch.nn.Linear(context.teacher_dim, dim)
        if self.params["critic"] == "nce" and self.params["negatives"] != "memory":
            raise StudyConfigError("Intermediate loss 'infonce' with critic: nce needs negatives: memory "
                                   f"(CRD's critic scores bank rows against the training-set size), got "
                                   f"negatives: {self.params['negatives']}.")
        #: CRD's normalising constants Z (student anchor, teacher anchor), set at the first call with negatives
        self.normalisers: list[float | None] = [None, None]
        if self.params["negatives"] == "memory":
            if context.train_size < 1:
                raise StudyConfigError(
                    "Intermediate loss 'infonce' with negatives: memory keeps a bank row per training "
                    "example, so it needs a labelled training set (a cell, or a task stage), not raw "
                    "text (a general stage); got no training-set size (LossContext.train_size 0).")
            if context.pairs != 1:
                # one bank row per example: a second layer pair would overwrite it with another layer
                raise StudyConfigError(
                    f"Intermediate loss 'infonce' with negatives: memory keeps one bank per entry and "
                    f"so takes a mapping with one layer pair (such as 'last'), got {context.pairs} pairs.")
            n = context.train_size
            self.register_buffer("student_bank", torch.zeros(n, dim), persistent=False)
            self.register_buffer("teacher_bank", torch.zeros(n, dim), persistent=False)
            self.register_buffer("filled", torch.zeros(n, dtype=torch.bool), persistent=False)

    def embed(self, student: Tensor, teacher: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, [T,] H_s), (B, [T,] H_t) -> unit-norm (B, d) student and teacher embeddings."""
        dtype = self.student_embed.weight.dtype
        z_s = F.normalize(self.student_embed(pool(student, mask).to(dtype)), dim=-1)
        z_t = F.normalize(self.teacher_embed(pool(teacher, mask).to(dtype)), dim=-1)
        return z_s, z_t

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        z_s, z_t = self.embed(student, teacher, mask)  # (B, d) each
        tau = self.params["temperature"]
        if self.params["negatives"] == "batch":
            logits = z_s @ z_t.T / tau  # (B, B): [i, j] = student i vs teacher j
            labels = torch.arange(z_s.shape[0], device=z_s.device)
            return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        if index is None:
            raise ValueError("infonce with negatives: memory needs each example's training-set index")
        index = index.to(self.filled.device).long()
        if index.min() < 0 or index.max() >= self.filled.shape[0]:
            raise ValueError(f"index outside the training set of {self.filled.shape[0]} examples")
        neg = self.negatives(index)  # (K,)
        t_neg, s_neg = self.teacher_bank[neg].to(z_s.dtype), self.student_bank[neg].to(z_t.dtype)
        if self.params["critic"] == "nce":
            loss = self._nce_loss(z_s, z_t, t_neg, 0) + self._nce_loss(z_t, z_s, s_neg, 1)
        else:
            loss = 0.5 * (self._anchor_loss(z_s, z_t, t_neg, tau) + self._anchor_loss(z_t, z_s, s_neg, tau))
        if self.training:
            self._update(index, z_s.detach(), z_t.detach())
        return loss

    def negatives(self, index: Tensor) -> Tensor:
        """Bank rows to contrast with: filled, not in this batch; all of them when there are at
        most ``bank_size`` (in order), else ``bank_size`` drawn without replacement."""
        available = self.filled.clone()
        available[index] = False
        rows = available.nonzero().squeeze(-1)
        if rows.numel() > self.params["bank_size"]:
            rows = rows[torch.randperm(rows.numel(), device=rows.device)[: self.params["bank_size"]]]
        return rows

    @staticmethod
    def _anchor_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, tau: float) -> Tensor:
        pos = (anchor * positive).sum(dim=-1, keepdim=True) / tau  # (B, 1)
        logits = torch.cat([pos, anchor @ negatives.T / tau], dim=1)  # (B, 1 + K)
        return -torch.log_softmax(logits, dim=1)[:, 0].mean()

    def _nce_loss(self, anchor: Tensor, positive: Tensor, negatives: Tensor, direction: int) -> Tensor:
        """CRD's NCE loss for one direction: anchors (B, d), positives (B, d), negatives (K, d)."""
        if negatives.shape[0] == 0:  # nothing filled yet: no contrast, a zero that keeps the graph
            return anchor.sum() * 0.0
        n, k = self.filled.shape[0], negatives.shape[0]
        scores = torch.exp(torch.cat([(anchor * positive).sum(dim=-1, keepdim=True), anchor @ negatives.T], dim=1)
                           / self.params["temperature"])  # (B, 1 + K)
        if self.normalisers[direction] is None:
            self.normalisers[direction] = float(scores.detach().mean()) * n  # one synchronisation, once
        p = scores / self.normalisers[direction]
        noise = k / n  # K * P_n, P_n = 1 / N
        log_d1 = torch.log(p[:, 0] / (p[:, 0] + noise + NCE_EPS))
        log_d0 = torch.log(noise / (p[:, 1:] + noise + NCE_EPS))
        return -(log_d1.sum() + log_d0.sum()) / anchor.shape[0]

    @torch.no_grad()
    def _update(self, index: Tensor, z_s: Tensor, z_t: Tensor) -> None:
        m = self.params["momentum"]
        seen = self.filled[index][:, None]
        for bank, z in ((self.student_bank, z_s), (self.teacher_bank, z_t)):
            z = z.to(bank.dtype)
            bank[index] = torch.where(seen, F.normalize(m * bank[index] + (1 - m) * z, dim=-1), z)
        self.filled[index] = True
