"""Shared test helpers: where the real benchmark data lives, and an isolated runs/ folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No model hub is reachable where the suite runs (CI, the dev machine): offline mode makes a hub
# lookup fail at once instead of after ~20 s of connection retries (a test that names a missing
# hub model took 23 s for that alone). Set before any test imports huggingface_hub, which reads it
# once; `study` processes the tests start inherit it. A run that sets it keeps its own value.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(os.environ.get("STUDY_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real GLUE copies in ../shared/data (skips when absent)."""
    if not (DATA / "glue" / "SST-2" / "train.tsv").exists():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@pytest.fixture
def isolated_runs(tmp_path, monkeypatch) -> Path:
    """A fresh runs/ folder and MLflow store for one test."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("STUDY_RUNS_DIR", str(runs))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{runs / 'mlflow.db'}")
    runs.mkdir()
    return runs
