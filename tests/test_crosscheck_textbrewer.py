"""Cross-check of our losses against TextBrewer 0.2.1's ``textbrewer.losses`` on fixed tensors.

TextBrewer (Yang et al. 2020) is a published KD toolkit; its functions are called as released.
Each test names the convention conversion between the two:

| ours                                  | TextBrewer                                   | conversion                        |
|---------------------------------------|----------------------------------------------|-----------------------------------|
| prediction ``soft_ce`` at tau_t=tau_s=T | ``kd_ce_loss(s, t, T)`` (no T^2)            | ours = T^2 * theirs               |
| prediction ``kl`` at tau_t=tau_s=T    | ``kd_ce_loss`` (has no KL)                   | ours = T^2 * (CE(t, s) - CE(t, t)) |
| prediction ``mse`` at tau_t=tau_s=T   | ``kd_mse_loss(s, t, T)`` (no T^2)            | ours = T^2 * theirs               |
| intermediate ``mse`` on ``hidden``    | ``hid_mse_loss(S, T, mask)``                 | equal                             |
| intermediate ``kl`` on ``attention``  | ``att_ce_loss(scores_S, scores_T, mask)``: CE over softmax(scores) | ours = CE(S, T) - CE(T, T) |
| intermediate ``cosine``               | ``cos_loss(S, T, mask)``                     | equal                             |
| intermediate ``pkd`` on ``cls``       | ``pkd_loss(S, T)`` on (B, H) vectors         | equal                             |

``mi_alpha`` has no TextBrewer counterpart; it is checked against Poole et al.'s bound as written
in ``tests/test_losses_mi_alpha.py`` and against torch-mist's ``AlphaTUBA`` in
``tests/test_crosscheck_torch_mist.py``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from kd_tensors import fixed

from study.objectives import INTERMEDIATE_LOSSES, prediction
from study.objectives.losses import LossContext

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    tb = pytest.importorskip("textbrewer.losses")

B, C, T, H, A = 3, 4, 5, 6, 2
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]).bool()


def slot(distance, temp):
    return prediction.resolve({"distance": distance, "teacher_temperature": temp, "student_temperature": temp,
                               "alpha": 1.0})


S_LOGITS, T_LOGITS = fixed(B, C, k=0.9), fixed(B, C, k=1.7, scale=2.0)


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_prediction_soft_ce_kl_and_mse(temp):
    ce = tb.kd_ce_loss(S_LOGITS, T_LOGITS, temp).item()
    entropy = tb.kd_ce_loss(T_LOGITS, T_LOGITS, temp).item()  # CE of the teacher with itself
    ours = lambda d: prediction.teacher_loss(S_LOGITS, T_LOGITS, slot(d, temp), "classification").item()
    assert ours("soft_ce") == pytest.approx(temp ** 2 * ce, rel=1e-12)
    assert ours("kl") == pytest.approx(temp ** 2 * (ce - entropy), rel=1e-12)
    assert ours("mse") == pytest.approx(temp ** 2 * tb.kd_mse_loss(S_LOGITS, T_LOGITS, temp).item(), rel=1e-12)


def test_hidden_mse():
    s, t = fixed(B, T, H, k=0.31), fixed(B, T, H, k=0.53, scale=1.2)
    ours = INTERMEDIATE_LOSSES["mse"](None, LossContext("hidden", "states", H, H))(s, t, MASK)
    assert ours.item() == pytest.approx(tb.hid_mse_loss(s, t, MASK.long()).item(), rel=1e-12)


def test_attention_kl():
    # TextBrewer takes pre-softmax scores; padded keys get a large negative score, as HF's additive
    # attention mask does, so both sides see the same distributions (exp(-1e4) is 0 in float64).
    keys = MASK[:, None, None, :]
    scores_s = fixed(B, A, T, T, k=0.37, scale=2.0).masked_fill(~keys, -1e4)
    scores_t = fixed(B, A, T, T, k=0.71, scale=2.0).masked_fill(~keys, -1e4)
    ours = INTERMEDIATE_LOSSES["kl"](None, LossContext("attention", "distribution", A, A))(
        scores_s.softmax(-1), scores_t.softmax(-1), MASK)
    ce = tb.att_ce_loss(scores_s, scores_t, MASK.long()).item()
    entropy = tb.att_ce_loss(scores_t, scores_t, MASK.long()).item()
    assert ours.item() == pytest.approx(ce - entropy, rel=1e-10)


def test_cosine_and_pkd():
    s, t = fixed(B, T, H, k=0.31), fixed(B, T, H, k=0.53, scale=1.2)
    cosine = INTERMEDIATE_LOSSES["cosine"](None, LossContext("hidden", "states", H, H))(s, t, MASK)
    assert cosine.item() == pytest.approx(tb.cos_loss(s, t, MASK.long()).item(), rel=1e-12)
    pkd = INTERMEDIATE_LOSSES["pkd"](None, LossContext("cls", "vector", H, H))(s[:, 0], t[:, 0], MASK)
    assert pkd.item() == pytest.approx(tb.pkd_loss(s[:, 0], t[:, 0]).item(), rel=1e-12)
