"""An intermediate-loss entry of a cell: which feature, which loss, which layer mapping, what weight.

An entry is a mapping ``{features, loss, mapping, weight, <parameters>}``; the parameters of the
chosen loss, mapping and feature sit flat beside them (``{features: hidden, loss: mi_alpha,
alpha: 0.5}``) so that any of them can be a grid axis (``intermediate.alpha: [0.1, 0.9]``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean, lookup
from study.core.schema import NonNegativeNumber, validate_settings
from study.objectives.features import FEATURE_PARAMS, FEATURES, check_feature_params
from study.objectives.losses import INTERMEDIATE_LOSSES
from study.objectives.mappings import LAYER_MAPPINGS

ENTRY_DEFAULTS: dict[str, Any] = {"features": "hidden", "loss": "mse", "mapping": "skip", "weight": 1.0}


class _Weight(BaseModel):
    weight: NonNegativeNumber


def resolve_entry(entry: dict[str, Any] | None, where: str = "intermediate entry") -> dict[str, Any]:
    """The full entry: defaults filled, names looked up, parameters assigned and checked.

    Raises:
        StudyConfigError: an unknown feature/loss/mapping (did-you-mean), a loss that does not take
            the feature's kind, a parameter that none of the three takes, or a bad value.
    """
    if not isinstance(entry, dict):
        raise StudyConfigError(f"{where} must be a mapping such as {{features: hidden, loss: mse}}, got {entry!r}.")
    given = {**ENTRY_DEFAULTS, **entry}
    for key in ("features", "loss", "mapping"):
        if not isinstance(given[key], str):
            raise StudyConfigError(f"{where}: {key} must be a name, got {given[key]!r}.")
    feature = lookup(FEATURES, given["features"], "intermediate feature")
    loss_cls = lookup(INTERMEDIATE_LOSSES, given["loss"], "intermediate loss")
    mapping_cls = lookup(LAYER_MAPPINGS, given["mapping"], "layer mapping")
    loss_cls.check_kind(feature.name, feature.kind)
    mapping_cls.check_kind(feature.name, feature.kind)
    loss_params, mapping_params, feature_params = {}, {}, {}
    allowed = {*ENTRY_DEFAULTS, *loss_cls.defaults, *mapping_cls.defaults, *FEATURE_PARAMS}
    for key, value in given.items():
        if key in ENTRY_DEFAULTS:
            continue
        if key in loss_cls.defaults:
            loss_params[key] = value
        elif key in mapping_cls.defaults:
            mapping_params[key] = value
        elif key in FEATURE_PARAMS:
            feature_params[key] = value
        else:
            raise StudyConfigError(
                f"{where}: unknown key {key!r} for loss {loss_cls.name!r}, mapping "
                f"{mapping_cls.name!r}, feature {feature.name!r}. Allowed: {', '.join(sorted(allowed))}."
                f"{did_you_mean(key, allowed)}")
    return {"features": feature.name, "loss": loss_cls.name, "mapping": mapping_cls.name,
            "weight": validate_settings(_Weight, {"weight": given["weight"]}, where)["weight"],
            **_set(loss_cls.resolve(loss_params)), **_set(mapping_cls.resolve(mapping_params)),
            **check_feature_params(feature.name, feature_params)}


def _set(params: dict[str, Any]) -> dict[str, Any]:
    """Resolved parameters less those left unset (None): an optional parameter added to a component
    (``last``'s ``teacher_layer``) leaves the identity of entries without it unchanged."""
    return {k: v for k, v in params.items() if v is not None}


def entry_versions(entry: dict[str, Any]) -> str:
    """``feature.loss.mapping`` versions of a resolved entry, for the cell identity."""
    return ".".join((FEATURES[entry["features"]].version, INTERMEDIATE_LOSSES[entry["loss"]].version,
                     LAYER_MAPPINGS[entry["mapping"]].version))


def split_entry(entry: dict[str, Any]) -> tuple[dict, dict, dict]:
    """(loss params, mapping params, feature params) of a resolved entry."""
    loss_cls, mapping_cls = INTERMEDIATE_LOSSES[entry["loss"]], LAYER_MAPPINGS[entry["mapping"]]
    return ({k: entry.get(k, v) for k, v in loss_cls.defaults.items()},
            {k: entry.get(k, v) for k, v in mapping_cls.defaults.items()},
            {k: entry[k] for k in FEATURE_PARAMS if k in entry})
