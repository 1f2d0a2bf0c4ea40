"""Distillation objectives, one module per family, registered by their field names.

| name           | family                  | paper                                 | module       |
|----------------|-------------------------|---------------------------------------|--------------|
| ``ce``         | no distillation         | -                                     | logit.py     |
| ``logit_kd``   | logit KD                | Hinton et al. 2015                    | logit.py     |
| ``logit_mse``  | logit matching (MSE)    | Ba & Caruana 2014                     | logit.py     |
| ``hidden_mse`` | hidden-state transfer   | TinyBERT, Jiao et al. 2020, eq. 7     | hidden.py    |
| ``attention_kl`` | attention transfer    | MiniLM, Wang et al. 2020, eq. 4       | attention.py |

Use ``resolve_params`` to validate and complete a cell's parameters (no tensors needed) and
``build_objective`` to make the module the trainer calls.
"""

from __future__ import annotations

from typing import Any

from study.objectives.attention import AttentionKL
from study.objectives.base import IntermediateObjective, KDInputs, Objective
from study.objectives.hidden import HiddenMSE
from study.objectives.layer_mapping import LAYER_MAPPINGS, layer_mapping
from study.objectives.logit import CE, LOGIT_TERMS, LogitKD, LogitMSE
from study.registry import lookup

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (CE, LogitKD, LogitMSE, HiddenMSE, AttentionKL)
}


def resolve_params(name: str, params: dict | None = None) -> dict[str, Any]:
    """Return the full parameter dict of objective ``name``: its defaults updated by ``params``.

    Numbers are returned as floats (``alpha: 1`` -> ``1.0``) so equal settings give one cell
    identity. Needs no tensors.

    Raises:
        StudyConfigError: unknown objective (with did-you-mean), unknown parameter name (the
            message lists the allowed ones), or a value out of range.
    """
    return lookup(OBJECTIVES, name, "objective").resolve(params)


def build_objective(
    name: str,
    params: dict | None = None,
    *,
    task_type: str,
    teacher_layers: int,
    student_layers: int,
    teacher_hidden_size: int,
    student_hidden_size: int,
) -> Objective:
    """Make objective ``name`` for a student/teacher pair of the given depths and widths.

    Raises:
        StudyConfigError: as ``resolve_params``; also an unsupported ``task_type`` or a layer
            mapping that does not fit the layer counts (e.g. a student deeper than its teacher).
    """
    cls = lookup(OBJECTIVES, name, "objective")
    return cls(
        params,
        task_type=task_type,
        teacher_layers=teacher_layers,
        student_layers=student_layers,
        teacher_hidden_size=teacher_hidden_size,
        student_hidden_size=student_hidden_size,
    )


__all__ = [
    "OBJECTIVES",
    "LAYER_MAPPINGS",
    "LOGIT_TERMS",
    "AttentionKL",
    "CE",
    "HiddenMSE",
    "IntermediateObjective",
    "KDInputs",
    "LogitKD",
    "LogitMSE",
    "Objective",
    "build_objective",
    "layer_mapping",
    "resolve_params",
]
