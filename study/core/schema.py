"""The schema layer's one check: validate a YAML mapping with a pydantic model, and turn the
first error into a one-line ``StudyConfigError`` naming the key, the value and what is allowed.

Grids, tasks, components, augmentation policies and claims each declare a pydantic model and
validate through ``validate_settings``, so every refusal reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean


def validate_settings(model: type[BaseModel], values: Mapping, where: str) -> dict[str, Any]:
    """Validate a settings mapping with pydantic; one-line StudyConfigError naming key and value."""
    try:
        return model.model_validate(dict(values)).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(map(str, err["loc"])) or "?"
        if err["type"] == "extra_forbidden":
            allowed = [k for k in model.model_fields]
            raise StudyConfigError(f"Unknown key {key!r} in {where}. Allowed: {', '.join(allowed)}."
                                   f"{did_you_mean(key, allowed)}") from None
        raise StudyConfigError(f"{where}.{key}: {err['msg']}, got {err.get('input')!r}.") from None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The (nested) model whose key ``loc[-1]`` is, for listing the keys allowed there; parts of
    ``loc`` that are not fields (dict keys, list indices, union members) are stepped over."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            continue
        inner = _models_in(field.annotation)
        if not inner:
            break
        model = inner[0]
    return model


def validate_model(model: type[BaseModel], values: Mapping, where: str) -> BaseModel:
    """Validate ``values`` with ``model`` and return the model instance (not a dict), refusing
    with one line that starts with ``where``: an unknown key (listing the allowed ones, and the
    closest), a missing key, a value a validator refused (its message, which names the key), or
    an ill-typed value (key, pydantic's reason and the value). Unknown keys are reported first.

    Raises:
        StudyConfigError: the first error, as above.
    """
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        key = ".".join(map(str, err["loc"]))
        if err["type"] == "extra_forbidden":
            allowed = sorted(_model_at(model, err["loc"]).model_fields)
            raise StudyConfigError(f"{where}: unknown key {key!r}. Allowed: {', '.join(allowed)}."
                                   f"{did_you_mean(str(err['loc'][-1]), allowed)}") from None
        if err["type"] == "missing":
            raise StudyConfigError(f"{where}: missing key {key!r}.") from None
        if err["type"] == "value_error":
            message = str(err["ctx"]["error"]) if "error" in err.get("ctx", {}) else err["msg"]
            raise StudyConfigError(f"{where}: {message}") from None
        raise StudyConfigError(f"{where}: {key}: {err['msg']}, got {err.get('input')!r}.") from None
