"""Teachers every worker can load: the MLflow artifact store as the cache shared by machines.

With a sqlite store (one machine) a teacher lives in ``runs/teachers/<id>`` as before
(``study.execution.teacher.ensure_teacher``). With a tracking server, the run that fine-tunes a teacher
logs its folder as artifacts (``teacher/``) before it is FINISHED, and a worker whose disk lacks
the teacher downloads it by teacher id, checks every file against the SHA-256 in its
``teacher.json`` and keeps it in its own ``runs/teachers/``. The fine-tuning itself is claimed
like a cell (``study.execution.locks``): one machine fine-tunes, the others wait for its run to finish.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import mlflow.artifacts
import torch
from filelock import FileLock

from study.core import contract
from study.execution import locks
from study.execution.datacache import DataCache
from study.execution.teacher import (
    Teacher,
    TeacherCacheError,
    ensure_teacher,
    teacher_dir,
    verify_teacher,
)
from study.execution.tracking import TEACHER_EXPERIMENT, Tracker
from study.grid import TeacherSpec

#: Seconds between two looks at a teacher another worker is fine-tuning.
POLL_S = 5.0
SOURCES = ("fine-tuned", "local cache", "artifact store")


def _teacher_runs(tracker: Tracker, spec: TeacherSpec) -> list:
    return tracker.runs(TEACHER_EXPERIMENT, contract.KIND_TEACHER, contract.TAG_TEACHER_ID,
                        spec.teacher_id).get(spec.teacher_id, [])


def _stored(run) -> bool:
    return run.info.status == "FINISHED" and contract.TAG_TEACHER_ARTIFACTS in run.data.tags


def download_teacher(tracker: Tracker, spec: TeacherSpec, run) -> Path:
    """Download the teacher logged by ``run`` into ``runs/teachers/<id>`` (unless another
    process of this machine did first) and check it; return the folder.

    Raises:
        TeacherCacheError: a downloaded file does not match the SHA-256 in ``teacher.json`` (or is
            missing); nothing is kept, and the message names the run.
    """
    path = teacher_dir(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with FileLock(str(path) + ".lock"):
        if (path / "teacher.json").exists():
            return path
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            got = Path(mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path=run.data.tags[contract.TAG_TEACHER_ARTIFACTS],
                dst_path=str(tmp), tracking_uri=tracker.uri))
            try:
                meta = verify_teacher(got)
            except TeacherCacheError as exc:
                raise TeacherCacheError(f"The teacher downloaded from run {run.info.run_id} of {tracker.uri} "
                                        f"is damaged: {exc}") from None
            if meta.get("checksums_adopted"):
                raise TeacherCacheError(f"The teacher stored in run {run.info.run_id} has no checksums in its "
                                        "teacher.json; it cannot be checked, so it is not used.")
            if path.exists():
                shutil.rmtree(path)  # an interrupted fine-tuning on this machine
            os.replace(got, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def obtain_teacher(spec: TeacherSpec, data: DataCache, tracker: Tracker, device: torch.device,
                   checkpoint: str = "last", log=print) -> tuple[Teacher, str]:
    """The teacher for ``spec`` at ``checkpoint`` and where it came from (``SOURCES``): this
    machine's cache, the artifact store (downloaded and checked), or fine-tuned here under a
    claim while other workers wait. With a sqlite store it is ``ensure_teacher`` as it was.

    Raises:
        TeacherCacheError: a damaged cached or downloaded teacher.
    """
    if not tracker.shared:
        cached = (teacher_dir(spec) / "teacher.json").exists()
        teacher = ensure_teacher(spec, data, tracker, device, log=log, checkpoint=checkpoint)
        return teacher, "local cache" if cached else "fine-tuned"
    path = teacher_dir(spec)
    source = "local cache"
    waited_on = ""
    while not (path / "teacher.json").exists():
        stored = next((r for r in _teacher_runs(tracker, spec) if _stored(r)), None)
        if stored is not None:
            download_teacher(tracker, spec, stored)
            log(f"teacher [{spec.teacher_id}]: downloaded from the artifact store (run {stored.info.run_id}), "
                "checksums verified")
            source = "artifact store"
            break
        got = locks.claim(tracker, TEACHER_EXPERIMENT, f"teacher-{spec.dataset}-{spec.teacher_id[:8]}",
                          {contract.TAG_KIND: contract.KIND_TEACHER, contract.TAG_TEACHER_ID: spec.teacher_id},
                          lambda: _teacher_runs(tracker, spec), is_done=_stored, timeout_s=tracker.claim_timeout_s)
        if got.state == "claimed":
            try:
                teacher = ensure_teacher(spec, data, tracker, device, log=log, checkpoint=checkpoint,
                                         run_id=got.run_id)
            except BaseException as exc:
                if tracker.client.get_run(got.run_id).info.status == "RUNNING":
                    tracker.fail(got.run_id, exc)  # failed before fine-tuning began
                raise
            if teacher.run_id != got.run_id:  # another process of this machine cached it meanwhile
                locks.withdraw(tracker, got.run_id, "the teacher was found in this machine's cache")
                return _published(tracker, teacher), "local cache"
            return teacher, "fine-tuned"
        if got.state == "busy":
            if got.holder != waited_on:
                log(f"teacher [{spec.teacher_id}]: waiting for {got.holder}, which is fine-tuning it")
                waited_on = got.holder
            time.sleep(POLL_S)
    teacher = ensure_teacher(spec, data, tracker, device, log=log, checkpoint=checkpoint)
    return _published(tracker, teacher), source


def _published(tracker: Tracker, teacher: Teacher) -> Teacher:
    """Log a cached teacher's files on its run when they are not there yet (a teacher fine-tuned
    with a sqlite store, or restored into a new store), so other machines can download it."""
    run = tracker.client.get_run(teacher.run_id)
    if contract.TAG_TEACHER_ARTIFACTS not in run.data.tags:
        tracker.store_teacher_files(teacher.run_id, teacher.path)
    return teacher
