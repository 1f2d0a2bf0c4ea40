"""The package's exceptions."""

from __future__ import annotations


class StudyConfigError(ValueError):
    """A grid, cell or command-line value is not allowed; the message names the value and the choices."""
