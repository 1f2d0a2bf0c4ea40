"""Intermediate features: what an intermediate loss compares, read from a model's forward pass.

A feature is a per-layer tensor of one *kind*; losses declare which kinds they accept:

| kind           | shape          | what it is                                                   |
|----------------|----------------|--------------------------------------------------------------|
| ``states``     | (B, T, H)      | token representations (padding masked by the loss)           |
| ``vector``     | (B, H)         | one vector per example                                       |
| ``distribution`` | (B, A, T, T) | per (head, query) a probability row over the T keys          |
| ``scores``     | (B, A, T, T)   | unnormalised attention scores (padded keys hold 0)           |

| feature            | kind          | layers   | paper                                              |
|--------------------|---------------|----------|----------------------------------------------------|
| ``hidden``         | states        | 0..L     | TinyBERT (Jiao et al. 2020), eq. 7; 0 = embeddings  |
| ``cls``            | vector        | 0..L     | PKD (Sun et al. 2019): the [CLS] (first) token      |
| ``attention``      | distribution  | 1..L     | MiniLM (Wang et al. 2020), eq. 4; TinyBERT eq. 6   |
| ``attention_scores`` | scores      | 1..L     | TinyBERT (Jiao et al. 2020), eq. 6 (pre-softmax)   |
| ``value_relation`` | distribution  | 1..L     | MiniLM (Wang et al. 2020), eq. 6                   |
| ``query_relation``, ``key_relation`` | distribution | 1..L | MiniLMv2 (Wang et al. 2021), eq. 2-3 (Q-Q, K-K) |

Attention-like features are computed from the query/key/value projections captured by forward
hooks, *before* attention dropout: the maps HF's eager attention returns are taken after
dropout, so in training their rows do not sum to 1 (a student identical to its teacher paid
about 2.6 nats per row on a tiny BERT, ``tests/test_features.py``). Computing them here also
lets both models run the fast ``sdpa`` kernel.

This removes attention dropout only. A student identical to its teacher pays exactly 0 when
both forward passes are the same: without dropout (eval mode, or dropout probabilities 0) or
with the same dropout masks (the test seeds both passes alike). In training the student runs in
train mode and the teacher in eval mode, so the student's hidden dropout (on the embeddings and
on each layer's output, BERT's ``hidden_dropout_prob``) changes the Q/K it reads: an identical
student then pays a small positive attention KL, 0.0085-0.0095 nats per row in the issue's
measurement and 0.039-0.065 nats per row per layer measured here on the untuned
all-MiniLM-L6-v2 (32 SST-2 dev sentences, length 64, dropout 0.1, three dropout seeds). That is a
real difference between the two forward passes, not a bug in the loss.
Relation features (MiniLMv2) split the width into ``relation_heads`` heads (default: the model's
attention heads), so students and teachers with different head counts can be compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from study.core.errors import StudyConfigError

KINDS = ("states", "vector", "distribution", "scores")

# Names of the attention projections per family: BERT/RoBERTa/ELECTRA, DistilBERT.
_QKV_NAMES = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"))


@dataclass(frozen=True)
class Feature:
    """A registered feature: its kind, whether layer 0 (the embeddings) exists, and what it needs."""

    name: str
    kind: str
    embeddings: bool  # layer 0 exists (hidden states); attention-like features start at layer 1
    needs: str  # "hidden" (output_hidden_states) or "qkv" (projection hooks)
    doc: str
    version: str = "1"
    # projections needed for a "qkv" feature: any of "q", "k", "v"
    projections: tuple[str, ...] = ()


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("hidden", "states", True, "hidden", "hidden states (embeddings = layer 0)"),
        Feature("cls", "vector", True, "hidden", "the first ([CLS]) token's hidden state"),
        Feature("attention", "distribution", False, "qkv", "self-attention distributions", projections=("q", "k")),
        Feature("attention_scores", "scores", False, "qkv", "scaled QK^T before the softmax", projections=("q", "k")),
        Feature("value_relation", "distribution", False, "qkv", "softmax(V V^T / sqrt(d))", projections=("v",)),
        Feature("query_relation", "distribution", False, "qkv", "softmax(Q Q^T / sqrt(d))", projections=("q",)),
        Feature("key_relation", "distribution", False, "qkv", "softmax(K K^T / sqrt(d))", projections=("k",)),
    )
}

#: Feature parameters an intermediate entry may set (validated here, part of the cell identity).
FEATURE_PARAMS: dict[str, Any] = {"relation_heads": None}


def check_feature_params(feature: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the feature parameters of an entry; ``relation_heads`` applies to relation features.

    Raises:
        StudyConfigError: ``relation_heads`` on a feature without relations, or not a positive int.
    """
    heads = params.get("relation_heads")
    if heads is None:
        return {}
    if not feature.endswith("_relation"):
        raise StudyConfigError(
            f"relation_heads applies to the relation features (value_relation, query_relation, "
            f"key_relation), not to {feature!r}.")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise StudyConfigError(f"relation_heads must be a positive integer, got {heads!r}.")
    return {"relation_heads": heads}


def _attention_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module, int]]:
    """(query, key, value, num_heads) Linear modules of each encoder layer, in order."""
    base = getattr(model, model.base_model_prefix, model)
    encoder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    layers = getattr(encoder, "layer", None)
    if layers is None:
        raise StudyConfigError(f"Cannot find the encoder layers of {type(model).__name__} for attention features.")
    heads = model.config.num_attention_heads
    found = []
    for layer in layers:
        for names in _QKV_NAMES:
            mods = {n: m for n, m in layer.named_modules() if n.rsplit(".", 1)[-1] in names}
            if len(mods) == 3:
                by = {n.rsplit(".", 1)[-1]: m for n, m in mods.items()}
                found.append((by[names[0]], by[names[1]], by[names[2]], heads))
                break
        else:
            raise StudyConfigError(
                f"Cannot find query/key/value projections in {type(model).__name__}; attention "
                f"features support BERT-like ({'/'.join(_QKV_NAMES[0])}) and DistilBERT "
                f"({'/'.join(_QKV_NAMES[1])}) layers.")
    return found


class FeatureTap:
    """Forward hooks that keep the query/key/value projections of chosen layers of a model.

    Use as ``tap = FeatureTap(model, layers={1, 2}, projections={"q", "k"})`` once; after each
    forward pass ``tap.projections[layer]["q"]`` is the (B, T, H) output of that layer's query
    projection (layers 1-indexed). ``tap.clear()`` drops them; ``tap.remove()`` removes the hooks.
    """

    def __init__(self, model: torch.nn.Module, layers: set[int], projections: set[str]):
        self.projections: dict[int, dict[str, Tensor]] = {}
        self.num_heads = model.config.num_attention_heads
        self._handles = []
        modules = _attention_modules(model)
        for layer in sorted(layers):
            q, k, v, _ = modules[layer - 1]
            for name, mod in (("q", q), ("k", k), ("v", v)):
                if name in projections:
                    self._handles.append(mod.register_forward_hook(self._keep(layer, name)))

    def _keep(self, layer: int, name: str) -> Callable:
        def hook(module, inputs, output):
            self.projections.setdefault(layer, {})[name] = output

        return hook

    def clear(self) -> None:
        self.projections = {}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, H) -> (B, A, T, H/A)."""
    B, T, H = x.shape
    if H % heads:
        raise StudyConfigError(f"relation_heads={heads} does not divide the width {H}.")
    return x.view(B, T, heads, H // heads).transpose(1, 2)


def _masked_softmax_rows(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over keys with padded keys excluded; scores (B, A, T, T), mask (B, T) bool."""
    keys = mask[:, None, None, :]
    return torch.softmax(scores.masked_fill(~keys, torch.finfo(scores.dtype).min), dim=-1)


@dataclass
class FeatureSource:
    """One model's outputs for one batch, and the features read from them (cached per call).

    ``hidden_states``: L + 1 tensors (B, T, H) (HF ``output_hidden_states``), or None.
    ``projections``: layer (1-based) -> {"q"|"k"|"v": (B, T, H)} from a ``FeatureTap``.
    ``mask``: (B, T) bool, True = real token. ``num_heads``: the model's attention heads.
    """

    mask: Tensor
    num_heads: int
    hidden_states: tuple[Tensor, ...] | None = None
    projections: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    @classmethod
    def precomputed(cls, mask: Tensor, maps: dict[str, "list[Tensor] | tuple[Tensor, ...]"],
                    hidden_states: tuple[Tensor, ...] | None = None, num_heads: int = 1) -> "FeatureSource":
        """A source whose attention-like features are given: ``maps[name][l - 1]`` is layer l
        (B, A, T, T). For tests and for callers that compute features themselves."""
        source = cls(mask=mask.bool(), num_heads=num_heads, hidden_states=hidden_states)
        for name, layers in maps.items():
            for i, value in enumerate(layers):
                source._cache[(name, i + 1, ())] = value
        return source

    def get(self, feature: str, layer: int, params: dict[str, Any] | None = None) -> Tensor:
        """Feature ``feature`` at ``layer`` (0 = embeddings where the feature has them), float32+.

        Raises:
            ValueError: the outputs this feature needs were not collected.
        """
        key = (feature, layer, tuple(sorted((params or {}).items())))
        if key not in self._cache:
            self._cache[key] = self._compute(feature, layer, params or {})
        return self._cache[key]

    def _compute(self, feature: str, layer: int, params: dict[str, Any]) -> Tensor:
        spec = FEATURES[feature]
        if spec.needs == "hidden":
            if self.hidden_states is None:
                raise ValueError(f"feature {feature!r} needs hidden states, which were not collected")
            h = _f32(self.hidden_states[layer])  # (B, T, H)
            return h if feature == "hidden" else h[:, 0]  # (B, T, H) or (B, H)
        proj = self.projections.get(layer)
        if proj is None or any(p not in proj for p in spec.projections):
            raise ValueError(f"feature {feature!r} at layer {layer} needs projections that were not collected")
        if feature in ("attention", "attention_scores"):
            q, k = _split_heads(_f32(proj["q"]), self.num_heads), _split_heads(_f32(proj["k"]), self.num_heads)
            scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, A, T, T)
            if feature == "attention_scores":
                return scores.masked_fill(~self.mask[:, None, None, :], 0.0)
            return _masked_softmax_rows(scores, self.mask)
        which = {"value_relation": "v", "query_relation": "q", "key_relation": "k"}[feature]
        x = _split_heads(_f32(proj[which]), params.get("relation_heads") or self.num_heads)
        return _masked_softmax_rows(x @ x.transpose(-1, -2) / x.shape[-1] ** 0.5, self.mask)


def _f32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))
