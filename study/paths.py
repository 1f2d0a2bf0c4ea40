"""Where a study writes: one ``runs/`` folder (MLflow store, teacher cache, data cache, reports)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """The outputs folder: ``$STUDY_RUNS_DIR`` if set, else ``<project>/runs``."""
    return Path(os.environ.get("STUDY_RUNS_DIR") or PROJECT_ROOT / "runs").resolve()


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
    return Path(__file__).resolve().parent / "grids"
