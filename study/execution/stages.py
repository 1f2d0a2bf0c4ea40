"""Stages' students, trained once: content-addressed folders under ``runs/stages/<stage_id>``.

A stage (``study.grid.stages``: a general stage on raw text, or two_stage's first stage on the
task) is trained the first time a cell needs it and then shared by every cell and grid whose
chain names the same stage id. Its folder holds the ``save_pretrained`` files (safetensors), the
tokenizer and, written last, ``stage.json`` (the stage's identity, dev losses, MLflow run id and
the SHA-256 of every file): a folder without it is an interrupted stage and is trained again. The
folder is staged as ``<id>.tmp<pid>`` and renamed into place, so a kill mid-write leaves no
half-written stage; a file lock keeps two workers of one machine from training the same stage.
Each stage is logged to the ``stages`` experiment as a run of kind ``stage``.

With a tracking server (workers on several machines) a stage is claimed like a cell
(``study.execution.locks``): one machine trains it and logs its folder as the run's artifacts
(``stage/``, tag ``study.stage_artifacts``) before the run is FINISHED; a worker elsewhere that
needs it waits for that run, then downloads the folder and checks every file's SHA-256.

General stages that share their corpus blocks, teacher, budget and seed train together, the
teacher's pass shared (``study.training.general.train_general_group``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import mlflow.artifacts
import torch
from filelock import FileLock, Timeout
from transformers import AutoModel, AutoModelForMaskedLM

from study.core import contract
from study.core.errors import StudyConfigError
from study.core.hashing import derive_seed, stable_hash
from study.core.paths import runs_dir
from study.corpora import packed_corpus
from study.execution import locks
from study.execution.datacache import DataCache
from study.execution.teacher import Teacher, file_checksums, load_tokenizer, read_checked
from study.execution.tracking import STAGE_EXPERIMENT, Tracker, environment_tags
from study.grid.stages import Stage
from study.models import StudentSize, build_student, load_pretrained_classifier, resolve_teacher_path
from study.objectives import Distillation, ModelDims
from study.tasks.catalogue import TASKS
from study.tasks.types import get_type
from study.training.general import train_general_group
from study.training.trainer import Student, TrainResult, train

STAGE_META = "stage.json"
#: Seconds between two looks at a stage another machine is training.
POLL_S = 5.0


class StageCacheError(StudyConfigError):
    """A cached stage folder is damaged (checksum mismatch, missing or unreadable file)."""


def stage_dir(stage: Stage) -> Path:
    """The stage's folder, ``runs/stages/<stage_id>``."""
    return runs_dir() / "stages" / stage.stage_id


def stage_ready(stage: Stage) -> bool:
    """True when the stage's student is saved (its ``stage.json`` exists)."""
    return (stage_dir(stage) / STAGE_META).exists()


def verify_stage(path: Path) -> dict:
    """Read ``stage.json`` and check every file against its SHA-256; return the metadata.

    Raises:
        StageCacheError: unreadable metadata, or a missing, extra or changed file (the message
            names the folder to delete).
    """
    meta, problem = read_checked(path, STAGE_META, (STAGE_META,))
    if problem:
        raise StageCacheError(f"The stage in {str(path)!r} is damaged: {problem}. Delete it (rm -r {path}) "
                              "and rerun: the stage is trained again.")
    return meta


def pending_stages(cells) -> list[Stage]:
    """The distinct stages ``cells`` need that are not saved yet, each after the stages it starts from."""
    out: dict[str, Stage] = {}
    for cell in cells:
        for stage in cell.stages:
            if stage.stage_id not in out and not stage_ready(stage):
                out[stage.stage_id] = stage
    return list(out.values())


def _group_key(stage: Stage) -> str:
    """What general stages must share to train together: corpus, teacher, budget, seed; a stage
    that starts from another stage trains alone."""
    if stage.kind != "general" or isinstance(stage.start, Stage):
        return stage.stage_id
    return stable_hash({"data": stage.data_identity, "teacher": stage.identity["teacher"],
                        "budget": {k: stage.training.get(k) for k in ("epochs", "max_steps", "batch_size",
                                                                       "max_length", "dev_every")},
                        "seed": stage.seed, "mlm": stage.prediction is not None,
                        "precision": stage.training.get("precision", "fp32")})


class StageRunner:
    """Trains the stages a worker's cells need, in order, general ones in groups.

    Args:
        data: the worker's ``DataCache`` (its data folder holds the corpora and tasks).
        tracker: the store stage runs are logged to.
        device: where stages train.
        teacher_for: the fine-tuned ``Teacher`` of a task stage (the cell's teacher spec -> Teacher).
    """

    def __init__(self, data: DataCache, tracker: Tracker, device: torch.device,
                 teacher_for: Callable[[object], Teacher], log=print):
        self.data, self.tracker, self.device, self.teacher_for, self.log = data, tracker, device, teacher_for, log

    def ensure(self, cells) -> dict[str, Path]:
        """Train every stage ``cells`` need that is not saved; return each cell's last stage
        folder by cell id (cells without stages are left out).

        Raises:
            StageCacheError: a damaged saved stage.
            Exception: a stage's training failed (its run is FAILED); the cells needing it cannot train.
        """
        while True:
            todo = [s for s in pending_stages(cells) if not isinstance(s.start, Stage) or stage_ready(s.start)]
            if not todo:
                break
            key = _group_key(todo[0])
            self._train([s for s in todo if _group_key(s) == key])
        out = {}
        for cell in cells:
            if cell.stages:
                path = stage_dir(cell.stages[-1])
                verify_stage(path)
                out[cell.cell_id] = path
        return out

    def _train(self, stages: list[Stage]) -> None:
        """Train ``stages`` (one group) under their file locks; stages another process holds are
        waited for instead, and what it saved is used."""
        root = runs_dir() / "stages"
        root.mkdir(parents=True, exist_ok=True)
        with ExitStack() as held:
            mine, claimed, elsewhere = [], {}, []
            for stage in stages:
                lock = FileLock(str(stage_dir(stage)) + ".lock")
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    self.log(f"stage {stage.name} [{stage.stage_id}]: another worker is training it; waiting")
                    with lock:  # the other worker's save is final once its lock is free
                        pass
                    continue
                held.callback(lock.release)
                if stage_ready(stage):
                    continue
                for stale in root.glob(stage.stage_id + ".tmp*"):  # a killed worker's staging folder
                    shutil.rmtree(stale, ignore_errors=True)
                if self.tracker.shared:  # other machines: claim it, or take what one stored
                    got = self._claim(stage)
                    if got is None:
                        continue
                    if got == "busy":
                        elsewhere.append(stage)
                        continue
                    claimed[stage.stage_id] = got
                mine.append(stage)
            if mine:
                self._train_held(mine, claimed)
            for stage in elsewhere:
                self._wait_for(stage)

    def _claim(self, stage: Stage) -> str | None:
        """On a tracking server: None when a stored run of ``stage`` was downloaded here, "busy"
        while another machine trains it, else the id of the RUNNING run claimed for training it."""
        lookup = lambda: self.tracker.runs(STAGE_EXPERIMENT, contract.KIND_STAGE, contract.TAG_STAGE_ID,  # noqa: E731
                                           stage.stage_id).get(stage.stage_id, [])
        got = locks.claim(self.tracker, STAGE_EXPERIMENT, stage.name,
                          {contract.TAG_KIND: contract.KIND_STAGE, contract.TAG_STAGE_ID: stage.stage_id},
                          lookup, is_done=_stored, timeout_s=self.tracker.claim_timeout_s)
        if got.state == "done":
            self._download(stage, got.run)
            return None
        if got.state == "busy":
            self.log(f"stage {stage.name} [{stage.stage_id}]: {got.holder} is training it; waiting")
            return "busy"
        return got.run_id

    def _wait_for(self, stage: Stage) -> None:
        """Wait for another machine's run of ``stage`` (claiming it if that machine died)."""
        while not stage_ready(stage):
            got = self._claim(stage)
            if got not in (None, "busy"):
                self._train_held([stage], {stage.stage_id: got})
            elif got == "busy":
                time.sleep(POLL_S)

    def _download(self, stage: Stage, run) -> Path:
        """Download a stored stage's folder into ``runs/stages/<id>`` and check its checksums."""
        path = stage_dir(stage)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            got = Path(mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path=run.data.tags[contract.TAG_STAGE_ARTIFACTS],
                dst_path=str(tmp), tracking_uri=self.tracker.uri))
            verify_stage(got)
            if path.exists():
                shutil.rmtree(path)
            os.replace(got, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.log(f"stage {stage.name} [{stage.stage_id}]: downloaded from the artifact store "
                 f"(run {run.info.run_id}), checksums verified")
        return path

    def _train_held(self, stages: list[Stage], claimed: dict[str, str] | None = None) -> None:
        """Train ``stages`` (held under their locks), each logged to a new run or to its
        ``claimed`` RUNNING run (by stage id)."""
        runs = {}
        for stage in stages:
            tags = {contract.TAG_KIND: contract.KIND_STAGE, contract.TAG_STAGE_ID: stage.stage_id,
                    contract.TAG_MLFLOW_NOTE: describe(stage), **environment_tags(self.device.type)}
            if (claimed or {}).get(stage.stage_id):
                runs[stage.stage_id] = claimed[stage.stage_id]
                self.tracker.annotate(claimed[stage.stage_id], tags, stage.params())
                continue
            orphans = self.tracker.runs(STAGE_EXPERIMENT, contract.KIND_STAGE, contract.TAG_STAGE_ID, stage.stage_id)
            if self.tracker.kill_orphans(orphans.get(stage.stage_id, [])):
                self.log(f"stage {stage.name} [{stage.stage_id}]: an earlier attempt died; its run is marked KILLED")
            runs[stage.stage_id] = self.tracker.start(STAGE_EXPERIMENT, stage.name, tags, stage.params())
        try:
            if stages[0].kind == "general":
                results, models, tokenizer = self._general(stages, runs)
            else:
                results, models, tokenizer = self._task(stages[0], runs)
        except BaseException as exc:
            for run_id in runs.values():
                self.tracker.fail(run_id, exc)
            raise
        failed = None
        for stage, result, model in zip(stages, results, models):
            run_id = runs[stage.stage_id]
            if isinstance(result, Exception):
                self.tracker.fail(run_id, result)
                failed = failed or result
                continue
            try:
                self._save(stage, model, tokenizer, result, run_id)
                self.tracker.finish(run_id)
            except BaseException as exc:
                self.tracker.fail(run_id, exc)
                raise
            self.log(f"stage {stage.name} [{stage.stage_id}]: trained in {result.train_time_s:.0f} s, "
                     f"dev loss {result.dev_metrics.get('loss', float('nan')):.4f}")
        if failed is not None:
            raise failed

    def _general(self, stages: list[Stage], runs: dict[str, str]):
        """Train general stages together; (results, models, tokenizer)."""
        first = stages[0]
        mlm = first.prediction is not None
        path = resolve_teacher_path(first.teacher)
        auto = AutoModelForMaskedLM if mlm else AutoModel
        teacher = auto.from_pretrained(path, attn_implementation="sdpa")
        tokenizer = load_tokenizer(first.teacher)
        blocks = packed_corpus(first.data, self.data.data_dir, tokenizer, first.training["max_length"]).input_ids
        students = []
        for stage in stages:
            model = self._start_model(stage, teacher, auto)
            torch.manual_seed(derive_seed(stage.seed, "objective_init"))
            objective = Distillation(stage.prediction, list(stage.intermediate),
                                     task_type="token_classification" if mlm else "classification",
                                     student=ModelDims.of(model.config), teacher=ModelDims.of(teacher.config))
            run_id = runs[stage.stage_id]
            students.append(Student(model, objective, dict(stage.training), stage.seed,
                                    log_metrics=lambda pts, r=run_id: self.tracker.log_metrics(r, pts),
                                    desc=stage.name))
        results = train_general_group(students, blocks, teacher, self.device,
                                      dev_every=first.training["dev_every"], tokenizer=tokenizer,
                                      teacher_precision=first.training.get("precision", "fp32"))
        return results, [s.model for s in students], tokenizer

    def _start_model(self, stage: Stage, teacher: torch.nn.Module, auto) -> torch.nn.Module:
        """A general stage's student: built from ``stage.start`` (seeded by the ``init`` stream), or
        the previous stage's student."""
        torch.manual_seed(derive_seed(stage.seed, "init"))
        if isinstance(stage.start, Stage):
            return auto.from_pretrained(str(stage_dir(stage.start)), attn_implementation="sdpa")
        return build_student(teacher, StudentSize.parse(stage.student), stage.start, 2, "sdpa", auto_class=auto)

    def _task(self, stage: Stage, runs: dict[str, str]):
        """Train two_stage's first stage (intermediate losses only) on the cell's task."""
        teacher = self.teacher_for(stage.teacher)
        task = TASKS[stage.data]
        ttype = get_type(task.task_type)
        tr = stage.training
        torch.manual_seed(derive_seed(stage.seed, "init"))
        if isinstance(stage.start, Stage):
            model = load_pretrained_classifier(str(stage_dir(stage.start)), ttype.num_labels(task), "sdpa",
                                               ignore_mismatched_sizes=True, auto_class=ttype.auto_class)
        else:
            model = build_student(teacher.model, StudentSize.parse(stage.student), stage.start,
                                  ttype.num_labels(task), "sdpa", auto_class=ttype.auto_class)
        train_ds = self.data.tokenized(stage.data, "train", teacher.tokenizer, tr["max_length"],
                                       max_examples=tr.get("max_train_examples"), data_seed=tr.get("data_seed", 0),
                                       augmentation=list(stage.augmentation_steps), augmentation_seed=stage.seed)
        dev_ds, dev_labels = self.data.tokenized_dev(stage.data, teacher.tokenizer, tr["max_length"],
                                                     tr.get("max_eval_examples"))
        torch.manual_seed(derive_seed(stage.seed, "objective_init"))
        objective = Distillation(None, list(stage.intermediate), task_type=task.task_type,
                                 student=ModelDims.of(model.config), teacher=ModelDims.of(teacher.model.config),
                                 train_size=len(train_ds))
        run_id = runs[stage.stage_id]
        try:
            result: TrainResult | Exception = train(
                model, objective, train_ds, dev_ds, dev_labels, task, teacher.tokenizer, tr, stage.seed, self.device,
                teacher=teacher.model, log_metrics=lambda pts: self.tracker.log_metrics(run_id, pts), desc=stage.name,
                teacher_precision=stage.teacher.precision)
        except Exception as exc:  # the stage fails; the caller ends its run FAILED
            result = exc
        return [result], [model], teacher.tokenizer

    def _save(self, stage: Stage, model: torch.nn.Module, tokenizer, result: TrainResult, run_id: str) -> Path:
        """Write the stage's folder atomically (staged, checksums, ``stage.json`` last, renamed)."""
        path = stage_dir(stage)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {"stage_id": stage.stage_id, "name": stage.name, "identity": stage.identity, "run_id": run_id,
                "dev_metrics": result.dev_metrics, "train_time_s": result.train_time_s,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "sha256": file_checksums(tmp, (STAGE_META,))}
        (tmp / STAGE_META).write_text(json.dumps(meta, indent=2, default=str))
        if path.exists():
            shutil.rmtree(path)  # a folder without stage.json: an interrupted save
        os.replace(tmp, path)
        if self.tracker.shared:  # every machine can download it (``_download``)
            self.tracker.client.log_artifacts(run_id, str(path), contract.STAGE_ARTIFACT_PATH)
            self.tracker.client.set_tag(run_id, contract.TAG_STAGE_ARTIFACTS, contract.STAGE_ARTIFACT_PATH)
        n_params = sum(p.numel() for p in model.parameters())
        self.tracker.log_metrics(run_id, [(contract.METRIC_TRAIN_TIME, result.train_time_s, 0),
                                          (contract.METRIC_WALL_TIME, result.wall_time_s, 0),
                                          (contract.METRIC_STUDENT_PARAMETERS, n_params, 0),
                                          (contract.METRIC_GROUP_SIZE, result.group_size, 0),
                                          (contract.METRIC_EXAMPLES_PER_S, result.train_examples_per_s, 0),
                                          (contract.METRIC_CPU_TIME, result.cpu_time_s, 0)])
        return path


def reap_stage_runs(tracker: Tracker) -> int:
    """Mark KILLED every RUNNING stage run whose holder is dead (a killed process on this machine,
    or a machine whose heartbeat stopped; ``Tracker.kill_orphans``): a stage no grid needs any more
    would otherwise stay RUNNING. Returns how many."""
    runs = [r for rs in tracker.runs(STAGE_EXPERIMENT, contract.KIND_STAGE, contract.TAG_STAGE_ID).values()
            for r in rs if r.info.status == "RUNNING"]
    return tracker.kill_orphans(runs) if runs else 0


def _stored(run) -> bool:
    return run.info.status == "FINISHED" and contract.TAG_STAGE_ARTIFACTS in run.data.tags


def describe(stage: Stage) -> str:
    """The stage in one line (its run's description in MLflow's UI)."""
    start = f"the student of stage {stage.start.stage_id}" if isinstance(stage.start, Stage) else \
        f"{stage.start} initialisation"
    objective = "+".join(f"{e['features']}:{e['loss']}" for e in stage.intermediate) or "none"
    prediction = "no prediction-layer loss" if stage.prediction is None else (
        "masked-LM KD" if stage.kind == "general" else "prediction-layer KD")
    data = f"raw text of corpus {stage.data}" if stage.kind == "general" else f"task {stage.data}"
    tr = stage.training
    budget = f"{tr.get('max_steps') or str(tr.get('epochs')) + ' epoch(s)'}" + (" steps" if tr.get("max_steps") else "")
    return (f"{stage.kind} stage: {stage.student} student ({start}) distilled on {data}; intermediate "
            f"{objective}, {prediction}; {budget}, learning rate {tr.get('learning_rate')}, seed {stage.seed}")
