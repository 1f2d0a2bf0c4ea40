"""Registered components (intermediate losses, layer mappings): parameters, versions, registry.

A component class sets ``name``, ``version``, ``defaults`` (its parameters with their default
values) and, optionally, ``checks`` (parameter name -> a field type such as ``number(...)`` or
``Literal[...]``, or a legacy ``(where, key, value) -> value`` validator). From these each
component gets a pydantic model, ``settings``, that ``resolve`` validates through
``study.core.schema``. Subclassing registers the class in its base's ``Registry``, which imports
every module of its package on first read: adding a component is one new module (and its test).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from study.core.registry import Registry
from study.core.schema import settings_model, validate_settings

__all__ = ["Component"]


class Component:
    """Mixin for a registered, versioned, parameterised component."""

    registry: ClassVar[Registry]
    kind: ClassVar[str] = "component"  # "intermediate loss", "layer mapping"
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    defaults: ClassVar[dict[str, Any]] = {}
    checks: ClassVar[dict[str, Any]] = {}
    settings: ClassVar[type[BaseModel]]  # built from defaults and checks

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete component, not an intermediate base
            cls.settings = settings_model(f"{cls.__name__}Settings", cls.defaults, cls.checks, cls.where())
            cls.registry.add(cls.name, cls)

    @classmethod
    def where(cls) -> str:
        """How refusals name this component: ``intermediate loss 'mse'``."""
        return f"{cls.kind} {cls.name!r}"

    @classmethod
    def resolve(cls, params: dict[str, Any] | None) -> dict[str, Any]:
        """``defaults`` updated with ``params``, each name and value checked (no tensors).

        Raises:
            StudyConfigError: an unknown parameter (the message lists the allowed ones) or a bad value.
        """
        return validate_settings(cls.settings, params or {}, cls.where(), noun="parameter")
