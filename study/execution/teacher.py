"""Teachers: fine-tuned once per (dataset, teacher model, budget, seed), cached under ``runs/teachers/``.

A teacher folder holds the ``save_pretrained`` files and, written last, ``teacher.json`` (its dev
metrics and MLflow run id): a folder without ``teacher.json`` is an interrupted fine-tuning and is
redone. A file lock keeps two workers from fine-tuning the same teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoTokenizer

from study.core import contract
from study.core.errors import StudyConfigError
from study.core.faults import environment_fault
from study.core.hashing import derive_seed
from study.core.paths import runs_dir
from study.execution.datacache import DataCache
from study.execution.tracking import TEACHER_EXPERIMENT, Tracker, environment_tags
from study.grid import TeacherSpec
from study.models import load_pretrained_classifier, resolve_teacher_path, teacher_identity
from study.objectives import Distillation, ModelDims
from study.tasks.catalogue import TASKS
from study.tasks.spec import TaskSpec
from study.tasks.types import get_type
from study.training.trainer import TrainResult, train


@dataclass
class Teacher:
    """A fine-tuned teacher ready for distillation."""

    spec: TeacherSpec
    model: torch.nn.Module
    tokenizer: object
    dev_metrics: dict[str, float]
    run_id: str
    path: Path
    checkpoint: str = "last"

    @property
    def dev_score(self) -> float:
        return self.dev_metrics["score"]


class TeacherCacheError(StudyConfigError):
    """A cached teacher folder is damaged (checksum mismatch, missing or unreadable file)."""


def teacher_dir(spec: TeacherSpec) -> Path:
    """The teacher's cache folder, ``runs/teachers/<teacher_id>``."""
    return runs_dir() / "teachers" / spec.teacher_id


def file_checksums(folder: Path, skip: tuple[str, ...] = ("teacher.json",)) -> dict[str, str]:
    """SHA-256 (hex) of every file in ``folder`` except those named in ``skip`` (and their temp
    copies: a name starting with one of them), by name. Students use it too
    (``study.execution.students``, with ``student.json``)."""
    out = {}
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and not f.name.startswith(skip):
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[f.name] = h.hexdigest()
    return out


def _damaged(path: Path, what: str) -> TeacherCacheError:
    return TeacherCacheError(
        f"The cached teacher in {str(path)!r} is damaged: {what}. Delete that folder "
        f"(rm -r {path}) and rerun: the teacher is fine-tuned again and the cells retried."
    )


def verify_teacher(path: Path) -> dict:
    """Read ``teacher.json`` and check every file against its stored SHA-256; return the metadata.

    A folder written before checksums were stored has them computed and added now (a warning is
    the caller's to print: ``meta["checksums_adopted"]`` is True).

    Raises:
        TeacherCacheError: ``teacher.json`` is unreadable, or a file is missing, extra or differs
            from its checksum; the message names the folder to delete.
    """
    meta_file = path / "teacher.json"
    try:
        meta = json.loads(meta_file.read_text())
        meta["dev_metrics"]["score"], meta["run_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _damaged(path, f"teacher.json cannot be read ({type(exc).__name__}: {exc})") from None
    found = file_checksums(path)
    expected = meta.get("sha256")
    if expected is None:
        meta["sha256"] = found
        _write_json(meta_file, meta)
        meta["checksums_adopted"] = True
        return meta
    problem = checksum_problem(found, expected, "the teacher")
    if problem:
        raise _damaged(path, problem)
    return meta


def read_checked(folder: Path, meta_name: str, skip: tuple[str, ...]) -> tuple[dict | None, str | None]:
    """A saved folder's metadata file and the first problem with its files: (metadata, None) when
    every file matches the SHA-256 in ``meta["sha256"]``; (None, why) when the metadata cannot be
    read; (metadata, what differs) otherwise. ``skip``: files the checksums leave out. Kept
    students and stages read their folders through it (``study.execution.students``, ``stages``)."""
    try:
        meta = json.loads((folder / meta_name).read_text())
        expected = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{meta_name} cannot be read ({type(exc).__name__}: {exc})"
    return meta, checksum_problem(file_checksums(folder, skip), expected, f"the folder {folder}")


def checksum_problem(found: dict[str, str], expected: dict[str, str], what: str) -> str | None:
    """The first difference between a folder's checksums (``file_checksums``) and the saved ones,
    in words (a file missing, extra, or changed), or None when they match."""
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            return f"{name} is missing"
        if name not in expected:
            return f"{name} was not there when {what} was saved"
        if found[name] != expected[name]:
            return f"{name} has SHA-256 {found[name][:12]}..., saved as {expected[name][:12]}..."
    return None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _record(spec: TeacherSpec, device: torch.device) -> tuple[dict[str, str], dict[str, str]]:
    """The teacher run's (tags, params)."""
    params = {contract.PARAM_DATASET: spec.dataset, contract.PARAM_TEACHER: teacher_identity(spec.model),
              **{k: str(v) for k, v in spec.settings.items() if k not in ("model", "checkpoint")}}
    s = spec.settings
    note = (f"{spec.model} fine-tuned on {spec.dataset}: {s.get('epochs')} epoch(s), learning rate "
            f"{s.get('learning_rate')}, batch {s.get('batch_size')}, "
            f"{s.get('max_train_examples') or 'all'} training examples, seed {s.get('seed')}")
    tags = {contract.TAG_KIND: contract.KIND_TEACHER, contract.TAG_TEACHER_ID: spec.teacher_id,
            contract.TAG_MLFLOW_NOTE: note, **environment_tags(device.type)}
    return tags, params


def teacher_run_id(spec: TeacherSpec, meta: dict, tracker: Tracker, device: torch.device, log=print) -> str:
    """The id of this store's FINISHED run for the cached teacher: the one in ``teacher.json``,
    else another FINISHED run with its ``study.teacher_id``, else a restored record (params, tags,
    dev metrics from ``teacher.json``, tag ``study.restored_from``) created now."""
    runs = tracker.runs(TEACHER_EXPERIMENT, contract.KIND_TEACHER, contract.TAG_TEACHER_ID,
                        spec.teacher_id).get(spec.teacher_id, [])
    finished = [r.info.run_id for r in runs if r.info.status == "FINISHED"]
    if meta["run_id"] in finished:
        return meta["run_id"]
    if finished:
        return finished[0]
    tags, params = _record(spec, device)
    tags[contract.TAG_RESTORED_FROM] = meta["run_id"]
    run_id = tracker.start(TEACHER_EXPERIMENT, f"teacher-{spec.dataset}-{spec.teacher_id[:8]}", tags, params)
    epochs = int(spec.settings.get("epochs", 1))
    points = [(contract.DEV_PREFIX + k, v, epochs) for k, v in meta["dev_metrics"].items()]
    if "wall_time_s" in meta:
        points.append((contract.METRIC_WALL_TIME, meta["wall_time_s"], 0))
    tracker.log_metrics(run_id, points)
    tracker.finish(run_id)
    log(f"teacher {spec.dataset}/{spec.model} [{spec.teacher_id}]: this store had no record of the "
        f"cached teacher (run {meta['run_id']} is not in it); restored it as run {run_id}")
    return run_id


def load_tokenizer(model_name: str):
    """The teacher's tokenizer (students share it)."""
    return AutoTokenizer.from_pretrained(resolve_teacher_path(model_name))


#: Which of the teacher's checkpoints a cell distils from (Sultan et al. 2024 compare the two
#: kept ones): the end of fine-tuning, the epoch with the best dev metric, or with the lowest dev
#: loss (ties: the earliest epoch).
CHECKPOINTS = ("last", "best_metric", "lowest_loss")


class _Keeper:
    """Keeps CPU copies of the best-metric and lowest-loss weights as epochs end."""

    def __init__(self):
        self.best: dict[str, tuple[float, int, dict, dict]] = {}

    def __call__(self, epoch: int, model: torch.nn.Module, dev: dict[str, float]) -> None:
        for name, value in (("best_metric", -dev["score"]), ("lowest_loss", dev["loss"])):
            if name not in self.best or value < self.best[name][0]:
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                self.best[name] = (value, epoch, dict(dev), state)


def ensure_teacher(spec: TeacherSpec, data: DataCache, tracker: Tracker, device: torch.device,
                   log=print, checkpoint: str = "last", run_id: str | None = None) -> Teacher:
    """Return the cached teacher for ``spec`` at ``checkpoint`` (``CHECKPOINTS``), fine-tuning and
    logging it first if needed. One fine-tuning keeps every checkpoint: the final weights in the
    teacher's folder, the others under ``checkpoints/<name>/`` with their own checksums; a teacher
    cached before checkpoints were kept is fine-tuned again when a cell asks for one.
    ``run_id``: a RUNNING run already claimed for this fine-tuning (``study.execution.teacher_store``),
    used instead of a new one. On a tracking server the folder is logged as the run's artifacts
    before it is FINISHED.

    Raises:
        TeacherCacheError: a damaged cached teacher (the message names the folder to delete).
    """
    path = teacher_dir(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    task = TASKS[spec.dataset]
    with FileLock(str(path) + ".lock"):
        # Holding the lock, nothing else works on this teacher: what a killed worker left is stale.
        for stale in path.parent.glob(path.name + ".tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        orphans = tracker.runs(TEACHER_EXPERIMENT, contract.KIND_TEACHER, contract.TAG_TEACHER_ID, spec.teacher_id)
        if tracker.kill_orphans(orphans.get(spec.teacher_id, [])):
            log(f"teacher {spec.dataset}/{spec.model} [{spec.teacher_id}]: an earlier fine-tuning "
                "died; its run is marked KILLED")
        meta_file = path / "teacher.json"
        tokenizer = load_tokenizer(spec.model)
        if meta_file.exists() and checkpoint != "last" and "checkpoints" not in json.loads(meta_file.read_text()):
            log(f"teacher [{spec.teacher_id}]: cached before checkpoints were kept; fine-tuning it again "
                f"for its {checkpoint} checkpoint")
            shutil.rmtree(path)
        if meta_file.exists():
            return _load_cached(spec, task, path, tokenizer, tracker, device, checkpoint, log)
        if path.exists():
            shutil.rmtree(path)  # an interrupted fine-tuning
        return _fine_tune(spec, task, path, data, tokenizer, tracker, device, checkpoint, run_id, log)


def _load_cached(spec: TeacherSpec, task: TaskSpec, path: Path, tokenizer, tracker: Tracker,
                 device: torch.device, checkpoint: str, log) -> Teacher:
    """The teacher cached in ``path``, its files checked and its run found (or restored) in
    this store.

    Raises:
        TeacherCacheError: the folder is damaged or does not load.
    """
    meta = verify_teacher(path)
    if meta.pop("checksums_adopted", False):
        log(f"teacher [{spec.teacher_id}]: saved before checksums were kept; its files are "
            "trusted as they are now and checked from now on")
    try:
        model = get_type(task.task_type).auto_class.from_pretrained(path)
    except Exception as exc:
        raise _damaged(path, f"it does not load ({type(exc).__name__}: {exc})") from None
    run_id = teacher_run_id(spec, meta, tracker, device, log)
    if checkpoint != "last":
        model, dev_metrics = _load_checkpoint(path, meta, checkpoint, task.task_type)
    else:
        dev_metrics = meta["dev_metrics"]
    log(f"teacher {spec.dataset}/{spec.model} [{spec.teacher_id}]: cached, {checkpoint} checkpoint, "
        f"dev score {dev_metrics['score']:.4f}")
    return Teacher(spec, model, tokenizer, dev_metrics, run_id, path, checkpoint)


def _fine_tune(spec: TeacherSpec, task: TaskSpec, path: Path, data: DataCache, tokenizer, tracker: Tracker,
               device: torch.device, checkpoint: str, run_id: str | None, log) -> Teacher:
    """Fine-tune the teacher (cross-entropy only: alpha 0), save it to ``path`` with its kept
    checkpoints and checksums, log it on its run (``run_id``, else a new one) and end the run
    FINISHED; any exception ends it FAILED (KILLED when interrupted) and propagates."""
    s = spec.settings
    log(f"teacher {spec.dataset}/{spec.model} [{spec.teacher_id}]: fine-tuning "
        f"({s['epochs']} epochs, max {s['max_train_examples']} examples)")
    train_ds = data.tokenized(spec.dataset, "train", tokenizer, s["max_length"],
                              max_examples=s["max_train_examples"], data_seed=s["data_seed"])
    dev_ds, dev_labels = data.tokenized_dev(spec.dataset, tokenizer, s["max_length"], s["max_eval_examples"])
    torch.manual_seed(derive_seed(s["seed"], "teacher_init"))
    ttype = get_type(task.task_type)
    model = load_pretrained_classifier(spec.model, ttype.num_labels(task), auto_class=ttype.auto_class)
    dims = ModelDims.of(model.config)
    objective = Distillation({"alpha": 0.0}, [], task_type=task.task_type, student=dims, teacher=dims)
    tags, params = _record(spec, device)
    if run_id is None:
        run_id = tracker.start(TEACHER_EXPERIMENT, f"teacher-{spec.dataset}-{spec.teacher_id[:8]}", tags, params)
    else:
        tracker.annotate(run_id, tags, params)
    tracker.log_datasets(run_id, [data.record(spec.dataset, "train", train_ds, contract.DATASET_CONTEXT_TRAIN),
                                  data.record(spec.dataset, "dev", dev_ds, contract.DATASET_CONTEXT_DEV)])
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    keeper = _Keeper()
    try:
        result = train(model, objective, train_ds, dev_ds, dev_labels, task, tokenizer, s, s["seed"],
                       device, log_metrics=lambda pts: tracker.log_metrics(run_id, pts),
                       desc=f"teacher {spec.dataset}", on_epoch_end=keeper)
        tracker.log_metrics(run_id, [(contract.METRIC_WALL_TIME, result.wall_time_s, 0),
                                     (contract.METRIC_EXAMPLES_PER_S, result.train_examples_per_s, 0),
                                     (contract.METRIC_PEAK_MEMORY, result.peak_memory_mb, 0),
                                     (contract.METRIC_CPU_TIME, result.cpu_time_s, 0),
                                     (contract.METRIC_CPU_THREADS, result.cpu_threads, 0)])
        meta = _save(model, keeper, result, spec, run_id, tmp, tracker)
        os.replace(tmp, path)
        tracker.store_teacher_files(run_id, path)  # for workers on other machines
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk gets its space back
        fault = environment_fault(exc, tracker.uri) if isinstance(exc, Exception) else None
        tracker.fail(run_id, fault or exc)  # KILLED, not FAILED, on an environment fault
        raise
    tracker.finish(run_id)
    log(f"teacher {spec.dataset}/{spec.model}: dev score {result.dev_metrics['score']:.4f} "
        f"in {result.wall_time_s:.0f} s ({result.train_examples_per_s:.0f} examples/s)")
    model.cpu()
    if checkpoint != "last":
        model, dev_metrics = _load_checkpoint(path, meta, checkpoint, task.task_type)
        return Teacher(spec, model, tokenizer, dev_metrics, run_id, path, checkpoint)
    return Teacher(spec, model, tokenizer, result.dev_metrics, run_id, path)


def _save(model: torch.nn.Module, keeper: _Keeper, result: TrainResult, spec: TeacherSpec, run_id: str,
          tmp: Path, tracker: Tracker) -> dict:
    """Save the final weights and the kept checkpoints into ``tmp`` with ``teacher.json``
    (written last: dev metrics, run id, checksums); log the checkpoints' epochs; return the
    metadata."""
    model.save_pretrained(tmp)
    checkpoints = {}
    for name, (_, epoch, dev, state) in keeper.best.items():
        folder = tmp / "checkpoints" / name
        model.save_pretrained(folder, state_dict=state)
        checkpoints[name] = {"epoch": epoch, "dev_metrics": dev, "sha256": file_checksums(folder)}
    tracker.log_metrics(run_id, [(name + contract.EPOCH_SUFFIX, c["epoch"], 0) for name, c in checkpoints.items()])
    meta = {"dev_metrics": result.dev_metrics, "run_id": run_id, "identity": spec.identity,
            "wall_time_s": result.wall_time_s, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "sha256": file_checksums(tmp), "checkpoints": checkpoints}
    (tmp / "teacher.json").write_text(json.dumps(meta, indent=2))
    return meta


def _load_checkpoint(path: Path, meta: dict, checkpoint: str,
                     task_type: str = "classification") -> tuple[torch.nn.Module, dict]:
    """(model, dev metrics) of a kept checkpoint, its files checked against their checksums.

    Raises:
        TeacherCacheError: the checkpoint is missing or damaged (names the folder to delete).
    """
    info = meta.get("checkpoints", {}).get(checkpoint)
    folder = path / "checkpoints" / checkpoint
    if info is None or not folder.is_dir():
        raise _damaged(path, f"its {checkpoint} checkpoint is missing")
    found = file_checksums(folder)
    if found != info["sha256"]:
        raise _damaged(path, f"checkpoints/{checkpoint} does not match its saved SHA-256")
    try:
        return get_type(task_type).auto_class.from_pretrained(folder), info["dev_metrics"]
    except Exception as exc:
        raise _damaged(path, f"checkpoints/{checkpoint} does not load ({type(exc).__name__}: {exc})") from None
