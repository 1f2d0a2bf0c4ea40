"""Kept students: a trained student saved as an artifact of its cell's run.

With ``keep_student: all`` (a grid's run setting, or ``study run --keep-student all``) a cell's
student is saved after training, before its run is FINISHED: ``save_pretrained`` (safetensors)
with the teacher's tokenizer and ``student.json`` (dev metrics, run and cell id, the SHA-256 of
every file, written last), staged in ``runs/students/<cell_id>.tmp<pid>``, logged as the run's
artifacts ``student/`` and tagged (``study.student_artifacts``, ``study.student_sha256``). The
staging folder goes once logged; one a killed process left is removed by the next save of that
cell, or at the start of the next ``study run``, as a teacher's ``.tmp`` folders are. The checksums are the teachers'
(``study.execution.teacher.file_checksums``); ``fetch_student`` downloads and checks them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import mlflow.artifacts
import psutil
import torch

from study.core import contract
from study.core.errors import StudyConfigError
from study.core.paths import runs_dir
from study.execution.teacher import file_checksums, read_checked
from study.execution.tracking import Tracker

STUDENT_META = "student.json"
#: Files of a student folder its checksums leave out: its metadata, and the model card
#: ``study export`` adds.
UNCHECKED = (STUDENT_META, "README.md")


def students_dir() -> Path:
    """Where kept students are staged before they are logged, ``runs/students``."""
    return runs_dir() / "students"


def save_student(model: torch.nn.Module, tokenizer, folder: Path, meta: dict) -> dict:
    """Save ``model`` (safetensors) and ``tokenizer`` into ``folder`` with ``student.json``
    (``meta`` plus the SHA-256 of every file, written last); return the metadata."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    meta = {**meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "sha256": file_checksums(folder, UNCHECKED)}
    (folder / STUDENT_META).write_text(json.dumps(meta, indent=2))
    return meta


def remove_stale(cell_id: str = "*") -> int:
    """Remove the staging folders of ``cell_id`` (default: of every cell) that a dead process (or
    this one) left; return how many."""
    n = 0
    for stale in students_dir().glob(f"{cell_id}.tmp*"):
        pid = stale.name.rsplit(".tmp", 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid() or not psutil.pid_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
            n += 1
    return n


def keep_student(tracker: Tracker, run_id: str, cell_id: str, model: torch.nn.Module, tokenizer,
                 dev_metrics: dict[str, float]) -> dict:
    """Save a trained student as the artifacts ``student/`` of its run ``run_id`` and tag the run;
    return its ``student.json``. An exception leaves the run untagged (no export trusts it)."""
    base = students_dir()
    base.mkdir(parents=True, exist_ok=True)
    remove_stale(cell_id)
    tmp = base / f"{cell_id}.tmp{os.getpid()}"
    try:
        meta = save_student(model, tokenizer, tmp, {"dev_metrics": dev_metrics, "run_id": run_id,
                                                    "cell_id": cell_id})
        tracker.client.log_artifacts(run_id, str(tmp), contract.STUDENT_ARTIFACT_PATH)
        tracker.client.set_tag(run_id, contract.TAG_STUDENT_SHA256, meta["sha256"].get("model.safetensors", ""))
        tracker.client.set_tag(run_id, contract.TAG_STUDENT_ARTIFACTS, contract.STUDENT_ARTIFACT_PATH)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def verify_student(folder: Path) -> dict:
    """Read ``student.json`` and check every file against its SHA-256; return the metadata.

    Raises:
        StudyConfigError: the metadata is unreadable or a file is missing, extra or changed.
    """
    meta, problem = read_checked(folder, STUDENT_META, UNCHECKED)
    if problem:
        raise StudyConfigError(f"The student in {folder} is damaged: {problem}.")
    return meta


def fetch_student(tracker: Tracker, run, dst: Path) -> dict:
    """Download the student kept by ``run`` into the empty folder ``dst`` and check its files;
    return its ``student.json``.

    Raises:
        StudyConfigError: the run kept no student, or what it kept is damaged (names the run).
    """
    path = run.data.tags.get(contract.TAG_STUDENT_ARTIFACTS)
    if path is None:
        raise StudyConfigError(f"Run {run.info.run_id} kept no student.")
    got = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path,
                                                   dst_path=str(dst), tracking_uri=tracker.uri))
    try:
        meta = verify_student(got)
    except StudyConfigError as exc:
        raise StudyConfigError(f"The student kept by run {run.info.run_id}: {exc}") from None
    if got != dst:
        for f in got.iterdir():
            os.replace(f, dst / f.name)
        got.rmdir()
    return meta
