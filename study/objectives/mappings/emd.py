"""``emd``: many-to-many layer mapping by Earth Mover's Distance (BERT-EMD, Li et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

from study.core.errors import StudyConfigError
from study.objectives.mappings.base import LayerMapping

# A layer whose transport cost is 0 would get an infinite weight; its unit cost is floored here.
EPS = 1e-12


def _flag(component: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise StudyConfigError(f"{component}: {key} must be true or false, got {value!r}.")
    return value


def transport(cost: np.ndarray, student_weights: np.ndarray, teacher_weights: np.ndarray) -> np.ndarray:
    """Optimal flows of the balanced transport problem, by linear programming (scipy's HiGHS).

    ``min_F sum_mn F[m, n] cost[m, n]`` s.t. ``sum_n F[m, n] = student_weights[m]``,
    ``sum_m F[m, n] = teacher_weights[n]``, ``F >= 0``; both weight vectors sum to 1.
    cost: (L_s, L_t) float64. Returns F, (L_s, L_t) float64.

    Raises:
        RuntimeError: the solver fails (it should not on finite costs).
    """
    ls, lt = cost.shape
    rows = np.kron(np.eye(ls), np.ones((1, lt)))  # sum over n of F[m, n]
    cols = np.kron(np.ones((1, ls)), np.eye(lt))  # sum over m of F[m, n]
    a_eq = np.vstack([rows, cols])[:-1]  # one constraint is implied by the others (equal totals)
    b_eq = np.concatenate([student_weights, teacher_weights])[:-1]
    result = linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if not result.success:
        raise RuntimeError(f"EMD transport failed: {result.message}")
    return result.x.reshape(ls, lt)


def reweight(flow: np.ndarray, cost: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """BERT-EMD's layer-weight update for one side (``axis`` 1: student rows, 0: teacher columns).

    Per layer k: transport cost ``c_k = sum flow * cost`` over its row (column), unit cost
    ``u_k = c_k / w_k`` (floored at EPS), new weight ``w_k = (1 / u_k) / sum_l (1 / u_l)``: layers
    whose mass moves cheaply gain weight. Returns (L,) float64 summing to 1.

    A layer whose transport cost is exactly 0 (its features already equal the teacher's) is where
    ours and BERT-EMD's ``get_new_layer_weight`` part: ours floors its unit cost at EPS, so it
    takes all the weight ([1, 0, ..., 0] up to 1e-12); BERT-EMD's skips a zero unit cost
    (``if weight != 0``), so that layer gets weight 0 and the others share it ([0, .2, .2, .2, .2,
    .2] for six layers of equal cost). The two agree whenever every unit cost is above 0.
    """
    unit = np.maximum((flow * cost).sum(axis=axis) / np.maximum(weights, EPS), EPS)
    inverse = 1.0 / unit
    return inverse / inverse.sum()


class EMD(LayerMapping):
    """Every student layer m against every teacher layer n, combined by EMD flows (Li et al.
    2020, "BERT-EMD: Many-to-Many Layer Mapping for BERT Compression with Earth Mover's
    Distance", sec. 3).

    Cost ``D[m, n] = pair_loss(m, n)`` for m = 1..L_s, n = 1..L_t (L_s * L_t pair losses per
    step); flows ``F`` solve the transport problem between student layer weights ``w_s`` and
    teacher layer weights ``w_t`` (``transport``; both sum to 1, so it is balanced and every
    unit of mass moves); the loss is ``sum_mn F[m, n] D[m, n]``, with F a constant (the gradient
    reaches the students through D only, as in BERT-EMD's code). The embeddings never join
    (BERT-EMD distils them separately, one to one).

    Layer weights start uniform (1/L_s, 1/L_t). With ``update_weights: true`` (default), after
    each training-mode call they are updated from the costs by ``reweight`` on each side: the rule
    of BERT-EMD's released ``get_new_layer_weight`` as read in a copy of that code (per-layer unit
    transport cost, inverted, normalised by its sum; some copies pass the result through a
    softmax with a temperature T instead, which is not implemented here), except at a layer of
    zero cost, where the two rules go opposite ways (see ``reweight``). With ``false`` the
    weights stay uniform. Weights are buffers (saved with the objective).
    """

    name: ClassVar[str] = "emd"
    version: ClassVar[str] = "1"
    defaults: ClassVar[dict] = {"update_weights": True}
    checks: ClassVar[dict] = {"update_weights": _flag}

    def __init__(self, params, *, student_layers: int, teacher_layers: int, **kwargs):
        super().__init__(params, student_layers=student_layers, teacher_layers=teacher_layers, **kwargs)
        self.register_buffer("student_weights", torch.full((student_layers,), 1.0 / student_layers,
                                                           dtype=torch.float64))
        self.register_buffer("teacher_weights", torch.full((teacher_layers,), 1.0 / teacher_layers,
                                                           dtype=torch.float64))
        self.last_flow: np.ndarray | None = None

    def layers_used(self) -> tuple[set[int], set[int]]:
        return set(range(1, self.student_layers + 1)), set(range(1, self.teacher_layers + 1))

    def forward(self, pair_loss: Callable[[int, int], Tensor]) -> Tensor:
        costs = torch.stack([torch.stack([pair_loss(m, n) for n in range(1, self.teacher_layers + 1)])
                             for m in range(1, self.student_layers + 1)])  # (L_s, L_t)
        cost = costs.detach().double().cpu().numpy()
        w_s = self.student_weights.double().cpu().numpy()
        w_t = self.teacher_weights.double().cpu().numpy()
        flow = transport(cost, w_s, w_t)
        self.last_flow = flow
        if self.training and self.params["update_weights"]:
            self.student_weights.copy_(torch.from_numpy(reweight(flow, cost, w_s, axis=1)))
            self.teacher_weights.copy_(torch.from_numpy(reweight(flow, cost, w_t, axis=0)))
        return (torch.from_numpy(flow).to(costs.device, costs.dtype) * costs).sum()
