"""Executors: where a grid's work units run, registered by name (``study run --executor NAME``).

An executor is one module in this package that subclasses ``Executor`` with a ``name`` and
registers it (``EXECUTORS``, a ``study.core.registry.Registry`` that imports the package's modules
the first time it is read); a misspelt name gets a did-you-mean error. ``serial`` trains in this
process, one unit after another; ``ray`` sends one Ray task per unit to a local or running Ray
cluster.
"""

from __future__ import annotations

from study.execution.executors.base import EXECUTORS, Executor, make_executor

__all__ = ["EXECUTORS", "Executor", "make_executor"]
