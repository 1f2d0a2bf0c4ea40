"""Registered components (intermediate losses, layer mappings): parameters, versions, discovery.

A component class sets ``name``, ``version``, ``defaults`` (its parameters with their default
values) and, optionally, ``checks`` (parameter name -> validator). Subclassing registers it in the
registry its base names; ``discover`` imports every module of a package, so adding a component is
one new module (and its test) and nothing else.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from typing import Any, ClassVar

from study.core.errors import StudyConfigError
from study.core.registry import did_you_mean


def number(check: Callable[[float], bool], rule: str) -> Callable[[str, str, Any], float]:
    """A validator: a finite real number satisfying ``check``; ints become floats (one identity)."""

    def validate(component: str, key: str, value: Any) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(float(value)) or not check(float(value))):
            raise StudyConfigError(f"{component}: {key} must be {rule}, got {value!r}.")
        return float(value)

    return validate


def integer(low: int, rule: str) -> Callable[[str, str, Any], int]:
    """A validator: an int >= ``low``."""

    def validate(component: str, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise StudyConfigError(f"{component}: {key} must be {rule}, got {value!r}.")
        return value

    return validate


class Component:
    """Mixin for a registered, versioned, parameterised component."""

    registry: ClassVar[dict[str, type]]
    kind: ClassVar[str] = "component"  # "intermediate loss", "layer mapping"
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    defaults: ClassVar[dict[str, Any]] = {}
    checks: ClassVar[dict[str, Callable[[str, str, Any], Any]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete component, not an intermediate base
            if cls.name in cls.registry:
                raise RuntimeError(f"{cls.kind} {cls.name!r} is registered twice")
            cls.registry[cls.name] = cls

    @classmethod
    def resolve(cls, params: dict[str, Any] | None) -> dict[str, Any]:
        """``defaults`` updated with ``params``, each name and value checked (no tensors).

        Raises:
            StudyConfigError: an unknown parameter (the message lists the allowed ones) or a bad value.
        """
        given = dict(params or {})
        for key in given:
            if key not in cls.defaults:
                allowed = ", ".join(sorted(cls.defaults)) or "(none)"
                raise StudyConfigError(
                    f"Unknown parameter {key!r} for {cls.kind} {cls.name!r}. Allowed: {allowed}."
                    f"{did_you_mean(key, cls.defaults)}")
        out = {**cls.defaults, **given}
        for key, value in out.items():
            if key in cls.checks:
                out[key] = cls.checks[key](f"{cls.kind} {cls.name!r}", key, value)
        return out


def discover(package: str) -> None:
    """Import every module of ``package`` (its components register themselves)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
