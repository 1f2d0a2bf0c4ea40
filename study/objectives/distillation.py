"""The objective a cell trains with: the prediction-layer loss plus its intermediate entries.

    loss = (1 - alpha) * L_gold + alpha * L_teacher + sum_e weight_e * mapping_e(loss_e on feature_e)

The trainer asks this module what the models must expose (``needs_teacher``, ``needs_hidden``,
``taps``) and hands it one ``KDInputs`` per batch; it returns ``{"loss": total, <components>}``
with components detached (``loss_ce``/``loss_mse``, ``loss_kd``, ``loss_<feature>_<loss>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from study.objectives import prediction as prediction_mod
from study.objectives.features import FEATURES, FeatureSource
from study.objectives.intermediate import resolve_entry, split_entry
from study.objectives.losses import INTERMEDIATE_LOSSES, LossContext
from study.objectives.mappings import LAYER_MAPPINGS, ConcatMapping
from study.tasks.types import get_type


@dataclass(frozen=True)
class ModelDims:
    """Depth L, width H and attention heads A of a transformer encoder."""

    layers: int
    hidden: int
    heads: int

    @classmethod
    def of(cls, config) -> "ModelDims":
        return cls(config.num_hidden_layers, config.hidden_size, config.num_attention_heads)


@dataclass
class KDInputs:
    """One batch as the objective sees it.

    ``student_logits`` (B, C) float; ``labels`` (B,) int64 class ids or float targets;
    ``mask`` (B, T) bool real tokens; ``teacher_logits`` (B, C) or None; ``student`` and
    ``teacher``: ``FeatureSource`` of each model (None when no intermediate entry);
    ``index``: (B,) int64 rows of the examples in the training set, or None;
    ``positions``: (B, T) bool, the token positions the prediction-layer loss compares, None for
    sequence tasks. Token classification: the labelled first sub-tokens, so ``student_logits``
    and ``teacher_logits`` are (B, T, C) and ``labels`` (B, T); extractive QA: the context tokens
    and CLS, logits (B, T, 2) (start, end) and ``labels`` (B, 2). Intermediate losses read
    ``mask`` (padding) as before.
    """

    student_logits: Tensor
    labels: Tensor
    mask: Tensor
    teacher_logits: Tensor | None = None
    student: FeatureSource | None = None
    teacher: FeatureSource | None = None
    index: Tensor | None = None
    positions: Tensor | None = None


class IntermediateTerm(torch.nn.Module):
    """One resolved entry: its feature, loss module and mapping module."""

    def __init__(self, entry: dict[str, Any], student: ModelDims, teacher: ModelDims, train_size: int):
        super().__init__()
        self.entry = entry
        loss_params, mapping_params, self.feature_params = split_entry(entry)
        self.feature = FEATURES[entry["features"]]
        self.weight = entry["weight"]
        if self.feature.kind in ("states", "vector"):
            dims = (student.hidden, teacher.hidden)
        else:
            heads = self.feature_params.get("relation_heads")
            dims = (heads or student.heads, heads or teacher.heads)
        self.mapping = LAYER_MAPPINGS[entry["mapping"]](
            mapping_params, student_layers=student.layers, teacher_layers=teacher.layers,
            embeddings=self.feature.embeddings, student_dim=dims[0], teacher_dim=dims[1])
        pairs = getattr(self.mapping, "pairs", None)
        if isinstance(self.mapping, ConcatMapping):  # one comparison of the joined features
            dims, n_pairs = self.mapping.joined_dims(), 1
        elif pairs is not None:
            n_pairs = len(pairs())
        else:  # a learned mapping may compare every pair
            student_layers, teacher_layers = self.mapping.layers_used()
            n_pairs = len(student_layers) * len(teacher_layers)
        context = LossContext(self.feature.name, self.feature.kind, dims[0], dims[1], train_size,
                              pairs=n_pairs)
        self.loss = INTERMEDIATE_LOSSES[entry["loss"]](loss_params, context)

    def forward(self, inputs: KDInputs) -> Tensor:
        name, fp = self.feature.name, self.feature_params
        if isinstance(self.mapping, ConcatMapping):
            s_layers, t_layers = self.mapping.layers_used()
            student, teacher = self.mapping.join([inputs.student.get(name, m, fp) for m in sorted(s_layers)],
                                                 [inputs.teacher.get(name, n, fp).detach() for n in sorted(t_layers)])
            return self.loss(student, teacher, inputs.mask, inputs.index)

        def pair_loss(m: int, n: int) -> Tensor:
            return self.loss(inputs.student.get(name, m, fp), inputs.teacher.get(name, n, fp).detach(),
                             inputs.mask, inputs.index)

        return self.mapping(pair_loss)


class Distillation(torch.nn.Module):
    """The prediction-layer loss plus the intermediate terms of one cell.

    Args:
        prediction: a prediction slot (``study.objectives.prediction.resolve``), or None for no
            prediction-layer term (intermediate losses only).
        intermediate: entries (``resolve_entry``); resolved again here, so raw ones work too.
        task_type: a ``task_type`` of ``study.tasks.types.TASK_TYPES`` (``classification``, ...).
        student, teacher: the models' ``ModelDims``.
        train_size: training examples (for memory banks).

    Raises:
        StudyConfigError: an unknown task type, a bad slot, or a mapping that does not fit the depths.
    """

    def __init__(self, prediction: dict[str, Any], intermediate: list[dict[str, Any]], *, task_type: str,
                 student: ModelDims, teacher: ModelDims, train_size: int = 0):
        super().__init__()
        get_type(task_type)  # an unknown task type fails here, not at the first batch
        self.task_type = task_type
        # None: no prediction-layer term at all (a stage of intermediate losses only, study.grid.stages)
        self.prediction = None if prediction is None else prediction_mod.resolve(prediction)
        entries = [resolve_entry(e, f"intermediate[{i}]") for i, e in enumerate(intermediate)]
        self.terms = torch.nn.ModuleList(IntermediateTerm(e, student, teacher, train_size) for e in entries)
        for term in self.terms:
            term.mapping.layers_used()  # a mapping that does not fit the depths fails here
        names = [f"loss_{t.feature.name}_{t.loss.name}" for t in self.terms]
        self.component_names = [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]

    @property
    def needs_teacher(self) -> bool:
        """True when any term reads the teacher (alpha > 0 or an intermediate entry)."""
        return (self.prediction is not None and self.prediction["alpha"] > 0) or len(self.terms) > 0

    @property
    def needs_teacher_forward(self) -> bool:
        """True when the teacher must run on each batch (intermediate features), not only its logits."""
        return len(self.terms) > 0

    @property
    def needs_hidden(self) -> bool:
        return any(t.feature.needs == "hidden" for t in self.terms)

    def taps(self) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
        """Per model (student, teacher): layer (1-based) -> projections ("q", "k", "v") to capture."""
        student: dict[int, set[str]] = {}
        teacher: dict[int, set[str]] = {}
        for t in self.terms:
            if t.feature.needs != "qkv":
                continue
            s_layers, t_layers = t.mapping.layers_used()
            for layers, out in ((s_layers, student), (t_layers, teacher)):
                for layer in layers:
                    out.setdefault(layer, set()).update(t.feature.projections)
        return student, teacher

    def forward(self, inputs: KDInputs) -> dict[str, Tensor]:
        if self.prediction is None:
            out = {"loss": inputs.mask.new_zeros((), dtype=torch.float32)}
        else:
            out = prediction_mod.prediction_loss(inputs.student_logits, inputs.labels, inputs.teacher_logits,
                                                 self.prediction, self.task_type, inputs.positions)
        for term, name in zip(self.terms, self.component_names):
            value = term(inputs)
            out["loss"] = out["loss"] + term.weight * value
            out[name] = value.detach()
        return out
