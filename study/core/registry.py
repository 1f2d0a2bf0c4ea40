"""Plug-in registries: one ``Registry`` class (registration, discovery by package, lookup with
"did you mean" errors) shared by every plug-in table (losses, mappings, task types, executors, ...)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from study.core.errors import StudyConfigError

T = TypeVar("T")


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``table[name]``.

    Raises:
        StudyConfigError: ``name`` is not a key; the message lists the allowed keys and the
            closest one.
    """
    if name in table:
        return table[name]
    allowed = ", ".join(sorted(table))
    raise StudyConfigError(
        f"Unknown {kind} {name!r}. Allowed: {allowed}.{did_you_mean(name, table)}"
    )


class Registry(Mapping[str, T]):
    """Plug-ins of one kind, found by name: the package's one registry and discovery mechanism.

    A plug-in module registers itself when imported (``registry.add(name, obj)`` or the
    ``register`` decorator); ``package`` names the package whose modules are imported the first
    time the registry is read, so adding a plug-in is one new module and nothing else. Modules
    whose names start with ``_`` (helpers) and the names in ``skip`` (the package's base module)
    are not imported. Discovery is ``importlib`` by package name, so a lower layer may hold the
    registry of plug-ins that live in a higher one without importing them.

    Args:
        kind: what a plug-in is called in messages ("layer mapping", "executor", "task_type").
        package: dotted name of the package holding the plug-ins, or None (filled by hand).
        skip: module names in ``package`` that are not plug-ins.
    """

    def __init__(self, kind: str, package: str | None = None, skip: Iterable[str] = ("base",)):
        self.kind = kind
        self.package = package
        self.skip = frozenset(skip)
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    def discover(self) -> None:
        """Import every plug-in module of ``package`` once (each registers itself)."""
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_") and info.name not in self.skip:
                importlib.import_module(f"{self.package}.{info.name}")

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``.

        Raises:
            ValueError: ``name`` is already registered to another entry.
        """
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str | None = None):
        """Decorator: ``@REGISTRY.register("name")`` (or the decorated object's ``name``)."""
        def wrap(obj):
            self.add(name if name is not None else obj.name, obj)
            return obj
        return wrap

    def get(self, name: str) -> T:  # type: ignore[override]
        """The entry registered as ``name``.

        Raises:
            StudyConfigError: unknown name; the message lists the registered names and the closest.
        """
        return lookup(self, name, self.kind)

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self))

    def __getitem__(self, name: str) -> T:
        self.discover()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self.discover()
        return iter(self._entries)

    def __len__(self) -> int:
        self.discover()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries
