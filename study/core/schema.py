"""The schema layer's one check: validate a YAML mapping with a pydantic model, and turn the
first error into a one-line ``StudyConfigError`` naming the key, the value and what is allowed.

Grids, tasks, components, augmentation policies and claims each declare a pydantic model and
validate through ``validate_settings``, so every refusal reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
