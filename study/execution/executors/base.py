"""The executor interface and its registry (``EXECUTORS``: every module of this package but
``base`` is an executor plug-in, imported the first time the registry is read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from study.core.errors import StudyConfigError
from study.core.registry import Registry
from study.execution.units import WorkUnit
from study.execution.work import CellOutcome, RunContext

#: name -> executor class; each plug-in module registers its class with ``register``.
EXECUTORS: Registry[type[Executor]] = Registry("executor", "study.execution.executors")
#: Class decorator: make ``cls`` available as ``--executor cls.name``.
register = EXECUTORS.register()


class Executor:
    """Runs work units somewhere and reports each cell's outcome to the driver.

    Subclasses set ``name`` and ``options`` (the keyword options they accept, with defaults),
    and implement ``run``. ``check`` refuses bad options or an unusable setup before anything is
    trained (``StudyConfigError``, naming the value and what is allowed).
    """

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(f"--{o.replace('_', '-')}" for o in sorted(self.options)) or "none"
            raise StudyConfigError(f"--{unknown[0].replace('_', '-')} does not apply to --executor {self.name} "
                                   f"(its options: {allowed}).")
        self.settings = {**self.options, **options}

    def check(self, ctx: RunContext, shared_store: bool) -> None:
        """Refuse, before any training, what cannot work; ``shared_store`` says whether the
        tracking URI is a server (True) or a sqlite file on this machine (False)."""

    def run(self, units: list[WorkUnit], ctx: RunContext, report: Callable[[CellOutcome], None],
            log: Callable[[str], None] = print) -> None:
        """Train ``units``, calling ``report`` once per cell as its outcome arrives (in the
        driver's process). ``KeyboardInterrupt`` stops the work in progress (its runs end KILLED)
        and propagates."""
        raise NotImplementedError


def make_executor(name: str, **options: Any) -> Executor:
    """The executor registered as ``name`` with ``options`` (those left None take defaults).

    Raises:
        StudyConfigError: an unknown name (did-you-mean) or an option the executor does not take.
    """
    cls = EXECUTORS.get(name)
    return cls(**{k: v for k, v in options.items() if v is not None})
