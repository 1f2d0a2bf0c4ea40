"""The schema layer's one check: validate a YAML mapping with a pydantic model, and turn the
first error into a one-line ``StudyConfigError`` naming the key, the value and what is allowed.

Grids, tasks, components, augmentation policies and claims each declare a pydantic model and
validate through ``validate_settings``, so every refusal reads the same. Three kinds of message:

- an unknown key: ``Unknown key 'x' in WHERE. Allowed: a, b. Did you mean 'a'?``;
- a missing required key: ``WHERE needs 'x' (required keys: x, y).``;
- a field typed ``number(...)``/``integer(...)``: ``WHERE: key must be RULE, got VALUE.``;
- any other pydantic error: ``WHERE.key: pydantic's message, got VALUE.``.

A validator that raises ``StudyConfigError`` itself has its message passed through unchanged.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, create_model
from pydantic_core import PydanticCustomError

from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean

_RULE = "study_rule"  # the error type of number/integer: the message is the rule, not pydantic's


def validate_settings(model: type[BaseModel], values: Mapping, where: str, *, noun: str = "key") -> dict[str, Any]:
    """Validate a settings mapping with pydantic; the resolved values (defaults filled) as a dict.

    ``noun`` names a key in the unknown-key message ("key", "parameter").

    Raises:
        StudyConfigError: one line naming ``where``, the key, the value and what is allowed; an
            unknown key is reported before a bad value.
    """
    try:
        return model.model_validate(dict(values)).model_dump()
    except ValidationError as exc:
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = ".".join(map(str, err["loc"])) or "?"
    raised = (err.get("ctx") or {}).get("error")
    if isinstance(raised, StudyConfigError):
        raise StudyConfigError(str(raised)) from None
    if err["type"] == "extra_forbidden":
        allowed = list(model.model_fields)
        raise StudyConfigError(f"Unknown {noun} {key!r} in {where}. Allowed: {', '.join(allowed) or '(none)'}."
                               f"{did_you_mean(key, allowed)}") from None
    if err["type"] == "missing":
        raise StudyConfigError(f"{where} needs {key!r} (required keys: "
                               f"{', '.join(k for k, f in model.model_fields.items() if f.is_required())}).") from None
    if err["type"] == _RULE:
        raise StudyConfigError(f"{where}: {key} {err['msg']}, got {err.get('input')!r}.") from None
    raise StudyConfigError(f"{where}.{key}: {err['msg']}, got {err.get('input')!r}.") from None


def number(check: Callable[[float], bool], rule: str) -> Any:
    """A field type: a finite real number (not a bool, not a string) satisfying ``check``; ints
    become floats, so ``1`` and ``1.0`` are one value (and one identity). ``rule`` says what is
    allowed in the refusal ("a number in [0, 1]")."""

    def validate(value: Any) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(float(value)) or not check(float(value))):
            raise PydanticCustomError(_RULE, "must be {rule}", {"rule": rule})
        return float(value)

    return Annotated[float, PlainValidator(validate)]


def integer(low: int, rule: str) -> Any:
    """A field type: an int (not a bool, not a float) >= ``low``; ``rule`` as for ``number``."""

    def validate(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise PydanticCustomError(_RULE, "must be {rule}", {"rule": rule})
        return value

    return Annotated[int, PlainValidator(validate)]


#: The common ranges, each with the rule its refusal states.
PositiveNumber = number(lambda x: x > 0.0, "a finite number > 0")
NonNegativeNumber = number(lambda x: x >= 0.0, "a finite number >= 0")
UnitNumber = number(lambda x: 0.0 <= x <= 1.0, "a number in [0, 1]")
PositiveInt = integer(1, "an integer >= 1")


def settings_model(name: str, defaults: Mapping[str, Any], checks: Mapping[str, Any], where: str) -> type[BaseModel]:
    """A pydantic model of the keys of ``defaults`` (in that order, unknown keys refused, defaults
    validated too). ``checks[key]`` is a field type (``number(...)``, ``Literal[...]``, ...) or a
    callable ``(where, key, value) -> value`` that raises ``StudyConfigError``; a key without a
    check takes any value unchanged."""
    fields: dict[str, Any] = {}
    for key, default in defaults.items():
        check = checks.get(key, Any)
        if inspect.isroutine(check):  # a function, not a type
            check = Annotated[Any, PlainValidator(lambda v, _k=key, _c=check: _c(where, _k, v))]
        fields[key] = (check, default)
    config = ConfigDict(extra="forbid", validate_default=True, arbitrary_types_allowed=True)
    return create_model(name, __config__=config, **fields)


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
