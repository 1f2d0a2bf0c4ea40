"""The contract of a layer mapping.

Layers are 1-indexed; layer 0 is the embedding output, which exists only for features that have
it (``hidden``, ``cls``: HF ``output_hidden_states`` has L + 1 entries, embeddings first;
attention-like features have L). A mapping is built for (L_s, L_t, whether layer 0 exists) and
combines per-pair losses: ``mapping(pair_loss)`` where ``pair_loss(m, n)`` is the scalar loss
between student layer m and teacher layer n. Fixed mappings list weighted pairs; learned ones
(EMD) may call ``pair_loss`` on every pair and hold parameters of their own. A concatenating
mapping (``ConcatMapping``: Wang et al. 2023's ``combine``) compares no pairs: it joins every
layer's features of each model into one and the loss compares the two once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from study.core.errors import StudyConfigError
from study.core.registry import Registry
from study.objectives.component import Component

#: Every layer mapping, by name; its package's modules are imported on first read.
LAYER_MAPPINGS: Registry = Registry("layer mapping", "study.objectives.mappings")

Pair = tuple[int, int, float]


class LayerMapping(Component, torch.nn.Module):
    """Base class; subclasses set ``name`` and implement ``forward`` (or ``pairs`` via FixedMapping)."""

    registry: ClassVar[Registry] = LAYER_MAPPINGS
    kind: ClassVar[str] = "layer mapping"

    def __init__(self, params: dict[str, Any] | None, *, student_layers: int, teacher_layers: int,
                 embeddings: bool = False, student_dim: int = 0, teacher_dim: int = 0):
        torch.nn.Module.__init__(self)
        for what, n in (("student_layers", student_layers), ("teacher_layers", teacher_layers)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise StudyConfigError(f"Layer mapping {self.name!r}: {what} must be an integer >= 1, got {n!r}.")
        self.params = self.resolve(params)
        self.student_layers = student_layers
        self.teacher_layers = teacher_layers
        self.embeddings = embeddings
        #: the features' last dimension (H_s, H_t; 0 when not given): what a concatenating mapping sizes
        self.student_dim, self.teacher_dim = student_dim, teacher_dim

    @classmethod
    def check_kind(cls, feature: str, kind: str) -> None:
        """Raises StudyConfigError when this mapping cannot take ``feature`` (of ``kind``); every
        mapping of layer pairs takes every feature."""

    def layers_used(self) -> tuple[set[int], set[int]]:
        """(student layers, teacher layers) whose features ``forward`` reads."""
        first = 0 if self.embeddings else 1
        return set(range(first, self.student_layers + 1)), set(range(first, self.teacher_layers + 1))

    def forward(self, pair_loss: Callable[[int, int], Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ConcatMapping(LayerMapping):
    """A mapping that joins each model's layers into one feature (``join``) for a single call of
    the loss; only for ``states`` and ``vector`` features (``accepts``)."""

    accepts: ClassVar[tuple[str, ...]] = ("states", "vector")

    @classmethod
    def check_kind(cls, feature: str, kind: str) -> None:
        """Raises StudyConfigError for a feature this mapping cannot join (attention maps)."""
        if kind not in cls.accepts:
            raise StudyConfigError(f"Layer mapping {cls.name!r} joins hidden states or vectors; feature {feature!r} "
                                   f"is a {kind} feature. Use skip, last or emd for it.")

    def joined_dims(self) -> tuple[int, int]:  # pragma: no cover - abstract
        """(student, teacher) last dimension of ``join``'s outputs, as the loss sees them."""
        raise NotImplementedError

    def join(self, student: list[Tensor], teacher: list[Tensor]) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


class FixedMapping(LayerMapping):
    """A mapping given by weighted pairs; the combined loss is ``sum_p w_p * pair_loss(m_p, n_p)``
    with weights that sum to 1 (equal weights: the mean over pairs)."""

    def pairs(self) -> list[Pair]:  # pragma: no cover - abstract
        raise NotImplementedError

    def layers_used(self) -> tuple[set[int], set[int]]:
        pairs = self.pairs()
        return {m for m, _, _ in pairs}, {n for _, n, _ in pairs}

    def forward(self, pair_loss: Callable[[int, int], Tensor]) -> Tensor:
        return torch.stack([w * pair_loss(m, n) for m, n, w in self.pairs()]).sum()


class OneToOneMapping(FixedMapping):
    """A mapping that gives each student layer m one teacher layer ``teacher_layer(m)``, with
    equal weights and, with embeddings, the pair (0, 0) first (TinyBERT's embedding loss)."""

    def teacher_layer(self, m: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def pairs(self) -> list[Pair]:
        """Raises StudyConfigError for a student deeper than its teacher."""
        ls, lt = self.student_layers, self.teacher_layers
        if ls > lt:
            raise StudyConfigError(
                f"Layer mapping {self.name!r} needs student layers <= teacher layers, got {ls} > {lt}.")
        pairs = [(m, self.teacher_layer(m)) for m in range(1, ls + 1)]
        return equal_weights([(0, 0), *pairs] if self.embeddings else pairs)


def equal_weights(pairs: list[tuple[int, int]]) -> list[Pair]:
    """Pairs with weight 1/|pairs| each."""
    return [(m, n, 1.0 / len(pairs)) for m, n in pairs]
