"""Where a study writes: one ``runs/`` folder (MLflow store, teacher cache, data cache, reports)."""

from __future__ import annotations

import os
from pathlib import Path

from study.core.errors import StudyConfigError

#: The folder holding the ``study`` and ``analysis`` packages: the project's checkout, or
#: site-packages when installed. Never a place to write to.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def runs_dir() -> Path:
    """The outputs folder: ``$STUDY_RUNS_DIR`` if set, else ``./runs`` in the working directory
    (as MLflow's ``./mlruns``), wherever the package is installed."""
    return Path(os.environ.get("STUDY_RUNS_DIR") or Path.cwd() / "runs").resolve()


def make_directory(path: Path, what: str) -> None:
    """Create ``path`` (and parents) if missing.

    Raises:
        StudyConfigError: it is a file, or cannot be created; the message names it as ``what``.
    """
    if path.exists() and not path.is_dir():
        raise StudyConfigError(f"The {what} {str(path)!r} is a file, not a directory; point "
                               "STUDY_RUNS_DIR (or MLFLOW_TRACKING_URI) at a writable directory.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyConfigError(f"Cannot create the {what} {str(path)!r} ({exc.strerror}); "
                               "point STUDY_RUNS_DIR at a writable directory.") from None


def writable_runs_dir() -> Path:
    """``runs_dir()``, created if missing, after checking that it is a writable directory.

    Raises:
        StudyConfigError: it is a file, cannot be created, or is read-only (the message names it).
    """
    path = runs_dir()
    make_directory(path, "runs folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StudyConfigError(f"The runs folder {str(path)!r} is read-only: `study run` writes "
                               "teachers, locks and the store there; make it writable or point "
                               "STUDY_RUNS_DIR at another directory (study status still reads it).")
    return path


def tracking_uri(uri: str | None = None) -> str:
    """The MLflow tracking URI: ``uri``, else ``$MLFLOW_TRACKING_URI``, else sqlite under ``runs/``.

    MLflow 3 refuses a plain file store by default, hence sqlite.
    """
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{runs_dir() / 'mlflow.db'}"


def grids_dir() -> Path:
    """The folder of the shipped grid YAML files."""
    return Path(__file__).resolve().parents[1] / "grids"
