"""Executors: where a grid's work units run, registered by name (``study run --executor NAME``).

An executor is one module in this package that subclasses ``Executor`` with a ``name``; it is
found here by that name, with a did-you-mean error for a misspelt one. ``serial`` trains in this
process, one unit after another; ``ray`` sends one Ray task per unit to a local or running Ray
cluster.
"""

from __future__ import annotations

import importlib
import pkgutil

from study.execution.executors.base import EXECUTORS, Executor, make_executor

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["EXECUTORS", "Executor", "make_executor"]
