"""Named objectives: shorthands for a prediction slot and a list of intermediate entries.

``objective: attention_kl`` in a grid means what it meant before the cell was opened up:

| preset         | prediction slot                                  | intermediate entries                      |
|----------------|--------------------------------------------------|-------------------------------------------|
| ``ce``         | alpha 0 (gold labels only)                       | none                                      |
| ``logit_kd``   | kl, tau_t = tau_s = 2, alpha 0.5                 | none                                      |
| ``logit_mse``  | mse, tau_t = tau_s = 1, alpha 0.5                | none                                      |
| ``hidden_mse`` | as logit_kd                                      | hidden states, mse, skip, weight 1        |
| ``attention_kl`` | as logit_kd                                    | attention, kl, skip, weight 1             |
| ``attention_mse`` | as logit_kd                                   | attention_scores (pre-softmax), mse, skip (TinyBERT) |
| ``cls_mse``    | as logit_kd                                      | cls, mse, last (Wang et al.'s hidden_mse_cls) |
| ``minilm``     | as logit_kd                                      | attention kl + value_relation kl, last (MiniLM) |
| ``minilm_v2``  | as logit_kd                                      | query/key/value_relation kl, last (MiniLMv2) |
| ``attention_kl_hidden_mse``, ``attention_mse_hidden_mse`` | as logit_kd | the two entries, skip (Wang et al.'s combinations) |
| ``crd``        | as logit_kd                                      | cls of every layer joined (combine, no projection), infonce with CRD's NCE critic and memory bank (16,384 negatives, tau 0.07, momentum 0.5, 128-d heads), weight 1 (Wang et al.'s crd) |

The names after ``attention_kl`` follow Wang et al. 2023's code (``../shared/PAPERS.md`` 2.4, 2.7);
on raw text (a general stage, ``study.grid.stages``) only their intermediate entries are used.

The legacy ``objective_params: {NAME: {...}}`` section is translated by ``legacy_params``.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict

from study.core.errors import StudyConfigError
from study.core.registry import lookup
from study.core.schema import UnitNumber, validate_settings

_KD = {"distance": "kl", "teacher_temperature": 2.0, "student_temperature": 2.0, "alpha": 0.5}

#: CRD as Wang et al. 2023's code runs it (PAPERS.md 2.4; Tian et al. 2020's crd/criterion.py): the
#: [CLS] vector of every layer concatenated on each side (their s_dim_feat 3,072, t_dim_feat 9,984),
#: weight 1 (their crd_weight), CRD's own defaults otherwise. Their negatives are drawn per class
#: (sample_neg_idx); these are drawn from every other example.
_CRD = {"features": "cls", "loss": "infonce", "mapping": "combine", "projection": False, "negatives": "memory",
        "critic": "nce", "bank_size": 16384, "weight": 1.0}

PRESETS: dict[str, dict[str, Any]] = {
    "ce": {"prediction": {"alpha": 0.0}, "intermediate": []},
    "logit_kd": {"prediction": dict(_KD), "intermediate": []},
    "logit_mse": {"prediction": {"distance": "mse", "teacher_temperature": 1.0, "student_temperature": 1.0,
                                 "alpha": 0.5}, "intermediate": []},
    "hidden_mse": {"prediction": dict(_KD),
                   "intermediate": [{"features": "hidden", "loss": "mse", "mapping": "skip", "weight": 1.0}]},
    "attention_kl": {"prediction": dict(_KD),
                     "intermediate": [{"features": "attention", "loss": "kl", "mapping": "skip", "weight": 1.0}]},
    # Wang et al. 2023's objectives as their code names them (../shared/PAPERS.md, sec. 2.4 and 2.7)
    "attention_mse": {"prediction": dict(_KD),
                      "intermediate": [{"features": "attention_scores", "loss": "mse", "mapping": "skip",
                                        "weight": 1.0}]},
    "cls_mse": {"prediction": dict(_KD),
                "intermediate": [{"features": "cls", "loss": "mse", "mapping": "last", "weight": 1.0}]},
    "minilm": {"prediction": dict(_KD),
               "intermediate": [{"features": "attention", "loss": "kl", "mapping": "last", "weight": 1.0},
                                {"features": "value_relation", "loss": "kl", "mapping": "last", "weight": 1.0}]},
    "minilm_v2": {"prediction": dict(_KD),
                  "intermediate": [{"features": f, "loss": "kl", "mapping": "last", "weight": 1.0}
                                   for f in ("query_relation", "key_relation", "value_relation")]},
    "attention_kl_hidden_mse": {"prediction": dict(_KD),
                                "intermediate": [{"features": "attention", "loss": "kl", "mapping": "skip",
                                                  "weight": 1.0},
                                                 {"features": "hidden", "loss": "mse", "mapping": "skip",
                                                  "weight": 1.0}]},
    "attention_mse_hidden_mse": {"prediction": dict(_KD),
                                 "intermediate": [{"features": "attention_scores", "loss": "mse", "mapping": "skip",
                                                   "weight": 1.0},
                                                  {"features": "hidden", "loss": "mse", "mapping": "skip",
                                                   "weight": 1.0}]},
    "crd": {"prediction": dict(_KD), "intermediate": [dict(_CRD)]},
}


class LegacyParams(BaseModel):
    """The old ``objective_params`` of one objective; each name's new place is in ``legacy_params``.
    Only ``alpha`` is checked here: the others are checked in their new slots."""

    model_config = ConfigDict(extra="forbid")
    alpha: UnitNumber = None  # the default is never read: only given keys are translated
    beta: Any = None
    layer_mapping: Any = None
    logit: Any = None
    temperature: Any = None


_LOGIT_TERMS = {"ce": None, "logit_kd": "kl", "logit_mse": "mse"}
_MAPPINGS = {"uniform": "skip", "last": "last"}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name``: ``{"prediction": {...}, "intermediate": [...]}``.

    Raises:
        StudyConfigError: unknown name (did-you-mean).
    """
    return copy.deepcopy(lookup(PRESETS, name, "objective"))


def legacy_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Translate the old ``objective_params[name]`` into slot settings on top of preset ``name``.

    ``temperature`` -> both temperatures; ``alpha`` (which weighed the gold term) -> prediction
    alpha = 1 - alpha; ``logit`` (ce, logit_kd, logit_mse) -> the prediction distance;
    ``beta`` -> the intermediate weight; ``layer_mapping`` (uniform = skip, last) -> the mapping.

    Raises:
        StudyConfigError: an unknown parameter name or value.
    """
    slots = preset(name)
    if not isinstance(params, dict):
        raise StudyConfigError(f"objective_params.{name} must be a mapping, got {params!r}.")
    checked = validate_settings(LegacyParams, params, f"objective_params.{name}", noun="parameter")
    pred = slots["prediction"]
    if "logit" in params:
        distance = lookup(_LOGIT_TERMS, params["logit"], "logit term")
        if distance is None:
            pred = {"alpha": 0.0}
        else:
            pred = {**_KD, "distance": distance}
            if distance == "mse":
                pred.update(teacher_temperature=1.0, student_temperature=1.0)
    if "temperature" in params:
        pred.update(teacher_temperature=params["temperature"], student_temperature=params["temperature"])
    if "alpha" in params:
        pred["alpha"] = 1.0 - checked["alpha"]
    slots["prediction"] = pred
    for entry in slots["intermediate"]:
        if "beta" in params:
            entry["weight"] = params["beta"]
        if "layer_mapping" in params:
            entry["mapping"] = lookup(_MAPPINGS, params["layer_mapping"], "layer mapping")
    if not slots["intermediate"] and ({"beta", "layer_mapping"} & set(params)):
        raise StudyConfigError(f"objective_params.{name}: beta and layer_mapping apply to objectives with an "
                               "intermediate loss (hidden_mse, attention_kl).")
    return slots
