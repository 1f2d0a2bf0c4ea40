"""What every objective sees (``KDInputs``) and promises (``Objective``).

An objective maps one batch of student (and teacher) outputs to a dict of scalar losses:
``"loss"`` is the total to backprop; the other keys (``loss_ce``, ``loss_kd``, ``loss_hidden``,
...) are its components, unweighted and detached, for logging.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from study.objectives.layer_mapping import LAYER_MAPPINGS, layer_mapping
from study.registry import StudyConfigError, did_you_mean, lookup

TASK_TYPES = ("classification", "regression")


@dataclass
class KDInputs:
    """One batch of outputs. Teacher tensors are read as constants (objectives detach them).

    Shapes: B batch, T tokens, C classes (1 for regression), H hidden width, A heads,
    L transformer layers.
    """

    student_logits: Tensor  # (B, C) float
    labels: Tensor  # (B,) int64 class ids, or (B,) float targets for regression
    attention_mask: Tensor  # (B, T) int/bool, 1 = real token
    teacher_logits: Tensor | None = None  # (B, C), computed under no_grad
    student_hidden: tuple[Tensor, ...] | None = None  # L_s + 1 x (B, T, H_s): embeddings, layers
    teacher_hidden: tuple[Tensor, ...] | None = None  # L_t + 1 x (B, T, H_t)
    student_attentions: tuple[Tensor, ...] | None = None  # L_s x (B, A_s, T, T), probabilities
    teacher_attentions: tuple[Tensor, ...] | None = None  # L_t x (B, A_t, T, T)


def _number(check: Callable[[float], bool], rule: str) -> Callable[[str, str, Any], float]:
    def validate(objective: str, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not check(float(value)):
            raise StudyConfigError(f"Objective {objective!r}: {key} must be {rule}, got {value!r}.")
        # ints become floats so that alpha=1 and alpha=1.0 give one cell identity
        return float(value)

    return validate


# Value checks shared by every objective, keyed by parameter name.
PARAM_CHECKS: dict[str, Callable[[str, str, Any], Any]] = {
    "alpha": _number(lambda x: 0.0 <= x <= 1.0, "a number in [0, 1]"),
    "temperature": _number(lambda x: x > 0.0, "a number > 0"),
    "beta": _number(lambda x: x >= 0.0, "a number >= 0"),
}


def check_param_names(objective: str, given: dict[str, Any], allowed: dict[str, Any]) -> None:
    """Raise StudyConfigError naming the first key of ``given`` that is not in ``allowed``."""
    for key in given:
        if key not in allowed:
            names = ", ".join(sorted(allowed)) or "(none)"
            raise StudyConfigError(
                f"Unknown parameter {key!r} for objective {objective!r}. "
                f"Allowed: {names}.{did_you_mean(key, allowed)}"
            )


class Objective(torch.nn.Module):
    """Base class of a distillation objective.

    Subclasses set the class variables and implement ``forward``. ``params`` may be partial;
    the constructor resolves it against ``defaults`` (``self.params`` holds the result).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    needs_teacher: ClassVar[bool]
    needs_hidden: ClassVar[bool] = False
    needs_attentions: ClassVar[bool] = False
    task_types: ClassVar[tuple[str, ...]] = TASK_TYPES
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        params: dict | None,
        *,
        task_type: str,
        teacher_layers: int,
        student_layers: int,
        teacher_hidden_size: int,
        student_hidden_size: int,
    ):
        super().__init__()
        if task_type not in self.task_types:
            raise StudyConfigError(
                f"Objective {self.name!r} does not support task_type {task_type!r}. "
                f"Allowed: {', '.join(self.task_types)}.{did_you_mean(task_type, self.task_types)}"
            )
        self.params: dict[str, Any] = self.resolve(params)
        self.task_type = task_type
        self.teacher_layers = teacher_layers
        self.student_layers = student_layers
        self.teacher_hidden_size = teacher_hidden_size
        self.student_hidden_size = student_hidden_size

    @classmethod
    def resolve(cls, params: dict | None) -> dict[str, Any]:
        """Return ``defaults`` updated with ``params``, names and values checked (no tensors).

        Raises:
            StudyConfigError: an unknown parameter name (message lists the allowed ones) or a
                value out of range.
        """
        given = dict(params or {})
        check_param_names(cls.name, given, cls.defaults)
        resolved = {**cls.defaults, **given}
        for key, value in resolved.items():
            if key in PARAM_CHECKS:
                resolved[key] = PARAM_CHECKS[key](cls.name, key, value)
        return resolved

    def forward(self, inputs: KDInputs) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"task_type={self.task_type!r}, params={self.params}"


def f32(x: Tensor) -> Tensor:
    """Upcast bf16/fp16 to float32; float32 and float64 are returned unchanged."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def require(inputs: KDInputs, field: str, objective: str) -> Any:
    """Return ``inputs.<field>``; raise ValueError naming the objective when it is None."""
    value = getattr(inputs, field)
    if value is None:
        raise ValueError(f"Objective {objective!r} needs KDInputs.{field}, which is None.")
    return value


class IntermediateObjective(Objective):
    """An intermediate-layer term (hidden states, attentions) added to a logit term.

    ``loss = logit_loss + beta * intermediate_loss``, where the logit term is the objective
    named by ``logit`` (``ce``, ``logit_kd`` or ``logit_mse``) with its own parameters.

    Parameters: ``beta``, ``layer_mapping`` (a key of ``LAYER_MAPPINGS``), ``logit``, and the
    chosen logit term's parameters (``temperature``, ``alpha`` for ``logit_kd``; ``alpha`` for
    ``logit_mse``; none for ``ce``). A parameter of another logit term is an error (e.g.
    ``temperature`` with ``logit: ce``), so two cells that train the same way have one identity.
    """

    needs_teacher: ClassVar[bool] = True
    # key of the intermediate term in the returned dict
    component: ClassVar[str] = "loss_intermediate"
    # layer mapping includes the embedding pair (0, 0) where the kind allows it
    include_embeddings: ClassVar[bool] = False
    own_defaults: ClassVar[dict[str, Any]] = {"beta": 1.0, "layer_mapping": "uniform", "logit": "logit_kd"}
    # every parameter any logit term may take, for the table of allowed names
    defaults: ClassVar[dict[str, Any]] = {**own_defaults, "temperature": 2.0, "alpha": 0.5}

    @classmethod
    def resolve(cls, params: dict | None) -> dict[str, Any]:
        from study.objectives.logit import LOGIT_TERMS  # here: logit.py imports this module

        given = dict(params or {})
        check_param_names(cls.name, given, cls.defaults)
        logit = given.get("logit", cls.own_defaults["logit"])
        if not isinstance(logit, str):
            raise StudyConfigError(f"Objective {cls.name!r}: logit must be a string, got {logit!r}.")
        logit_cls = lookup(LOGIT_TERMS, logit, "logit term")
        mapping = given.get("layer_mapping", cls.own_defaults["layer_mapping"])
        if not isinstance(mapping, str):
            raise StudyConfigError(f"Objective {cls.name!r}: layer_mapping must be a string, got {mapping!r}.")
        lookup(LAYER_MAPPINGS, mapping, "layer mapping")
        unused = [key for key in given if key not in cls.own_defaults and key not in logit_cls.defaults]
        if unused:
            raise StudyConfigError(
                f"Objective {cls.name!r}: parameter {unused[0]!r} is not used with logit={logit!r} "
                f"(that term takes: {', '.join(sorted(logit_cls.defaults)) or 'no parameters'})."
            )
        own = {key: given.get(key, value) for key, value in cls.own_defaults.items()}
        term = logit_cls.resolve({k: v for k, v in given.items() if k in logit_cls.defaults})
        resolved = {**own, **term}
        for key, value in resolved.items():
            if key in PARAM_CHECKS:
                resolved[key] = PARAM_CHECKS[key](cls.name, key, value)
        return resolved

    def __init__(self, params: dict | None, **dims: Any):
        super().__init__(params, **dims)
        from study.objectives.logit import LOGIT_TERMS  # here: logit.py imports this module

        logit_cls = LOGIT_TERMS[self.params["logit"]]
        self.logit_term = logit_cls(
            {k: v for k, v in self.params.items() if k in logit_cls.defaults}, **dims
        )
        self.pairs = layer_mapping(
            self.params["layer_mapping"],
            self.student_layers,
            self.teacher_layers,
            include_embeddings=self.include_embeddings,
        )

    def intermediate_loss(self, inputs: KDInputs) -> Tensor:
        """The unweighted intermediate term, a scalar of at least float32."""
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, inputs: KDInputs) -> dict[str, Tensor]:
        out = self.logit_term(inputs)
        intermediate = self.intermediate_loss(inputs)
        out["loss"] = out["loss"] + self.params["beta"] * intermediate
        out[self.component] = intermediate.detach()
        return out


def real_token_mask(attention_mask: Tensor, shape: tuple[int, ...], objective: str) -> Tensor:
    """``attention_mask`` (B, T) as bool, checked against the (B, T, ...) tensor ``shape``."""
    if tuple(attention_mask.shape) != tuple(shape[:2]):
        raise ValueError(
            f"Objective {objective!r}: attention_mask has shape {tuple(attention_mask.shape)}, "
            f"expected (B, T) = {tuple(shape[:2])}."
        )
    return attention_mask.bool()
