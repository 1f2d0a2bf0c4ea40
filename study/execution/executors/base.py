"""The executor interface and its registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from study.core.errors import StudyConfigError
from study.core.registry import lookup
from study.execution.work import CellOutcome, RunContext, WorkUnit

#: name -> executor class; filled by ``register`` as each module of the package is imported.
EXECUTORS: dict[str, type[Executor]] = {}


def register(cls: type[Executor]) -> type[Executor]:
    """Class decorator: make ``cls`` available as ``--executor cls.name``."""
    EXECUTORS[cls.name] = cls
    return cls


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
    cls = lookup(EXECUTORS, name, "executor")
    return cls(**{k: v for k, v in options.items() if v is not None})
