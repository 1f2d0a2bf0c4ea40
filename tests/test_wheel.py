"""The package as users install it (issue 20): build the wheel, install it (not editable) into a
folder of its own, and from an empty directory run a one-cell grid, render its report, write the
findings and serve the MLflow UI. The store must land in ``./runs`` of that directory and the
installed copy, not this checkout, must be the one imported."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ONE_CELL = {
    "name": "wheel",
    "description": "One cell on SST-2, for the wheel test.",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["ce"],
             "initialisation": ["teacher_lower"], "augmentation": ["none"], "seed": [0]},
    "teacher": {"epochs": 1, "max_train_examples": 64, "max_eval_examples": 32, "max_length": 32,
                "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 32, "max_eval_examples": 32, "max_length": 32,
                 "batch_size": 16},
}
PACKAGE_DATA = ("study/grids/smoke.yaml", "study/tasks/sst2.yaml", "study/execution/calibration.json",
                "analysis/claims.yaml", "analysis/notebooks/report.ipynb",
                "analysis/notebooks/csv_report.ipynb")


def build_wheel(tmp_path: Path) -> Path:
    """The wheel, built from a copy of the sources (the build leaves nothing in the checkout)."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("study", "analysis"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("kd_study-*.whl")
    return wheel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_ui(env: dict, cwd: Path, port: int) -> int:
    """Start ``study ui`` and return the HTTP status of its front page (stopping it after)."""
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "ui", "--port", str(port)], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    return page.status
            except OSError:
                time.sleep(0.5)
        return -1
    finally:
        proc.terminate()  # study ui stops its server's process group
        proc.wait(timeout=30)


@pytest.mark.slow
def test_installed_wheel_runs_a_grid_from_an_empty_directory(tmp_path, shared_data):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(PACKAGE_DATA) <= names, set(PACKAGE_DATA) - names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    grid = tmp_path / "wheel.yaml"
    grid.write_text(yaml.safe_dump(ONE_CELL))
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("STUDY_RUNS_DIR", "MLFLOW_TRACKING_URI", "PYTHONPATH")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg")

    def study(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import study, analysis; print(study.__file__); "
                            "print(analysis.__file__)"], cwd=work, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where

    ran = study("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (work / "runs" / "mlflow.db").is_file()
    assert not (site / "runs").exists()

    report = study("report", "--grid", str(grid))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (work / "runs" / "reports" / "wheel.html").is_file()

    findings = study("findings")
    assert findings.returncode == 0, findings.stderr[-3000:]
    assert (work / "docs" / "findings.md").is_file()

    assert serve_ui(env, work, free_port()) == 200
