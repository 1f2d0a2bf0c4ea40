"""The package's exceptions."""

from __future__ import annotations


class StudyConfigError(ValueError):
    """A grid, cell or command-line value is not allowed; the message names the value and the choices."""


#: The exit status of ``study run`` stopped by an ``EnvironmentFault`` (sysexits' EX_TEMPFAIL:
#: a temporary failure, rerun when it is fixed). 2 stays the exit status of bad input.
EXIT_ENVIRONMENT = 75


class EnvironmentFault(RuntimeError):
    """The machine, not the cell, failed: a full disk or quota, a read-only or unreadable store,
    an I/O error, a lost data folder, an unreachable tracking server. It stops the grid (exit
    ``EXIT_ENVIRONMENT``) with the cells left pending; ``what`` ran out, ``where``, and the ``hint``
    says what to do."""

    def __init__(self, what: str, where: str, hint: str):
        super().__init__(f"{what} ({where}); {hint}")
        self.what, self.where, self.hint = what, where, hint
