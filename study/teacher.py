"""Teachers: fine-tuned once per (dataset, teacher model, budget, seed), cached under ``runs/teachers/``.

A teacher folder holds the ``save_pretrained`` files and, written last, ``teacher.json`` (its dev
metrics and MLflow run id): a folder without ``teacher.json`` is an interrupted fine-tuning and is
redone. A file lock keeps two workers from fine-tuning the same teacher.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from study.data import TASKS
from study.datacache import DataCache
from study.grid import TeacherSpec
from study.models import load_pretrained_classifier, resolve_teacher_path, teacher_identity
from study.objectives import Distillation, ModelDims
from study.paths import runs_dir
from study.tracking import TEACHER_EXPERIMENT, Tracker, environment_tags
from study.trainer import derive_seed, train


@dataclass
class Teacher:
    """A fine-tuned teacher ready for distillation."""

    spec: TeacherSpec
    model: torch.nn.Module
    tokenizer: object
    dev_metrics: dict[str, float]
    run_id: str
    path: Path

    @property
    def dev_score(self) -> float:
        return self.dev_metrics["score"]


def teacher_dir(spec: TeacherSpec) -> Path:
    return runs_dir() / "teachers" / spec.teacher_id


def load_tokenizer(model_name: str):
    """The teacher's tokenizer (students share it)."""
    return AutoTokenizer.from_pretrained(resolve_teacher_path(model_name))


def ensure_teacher(spec: TeacherSpec, data: DataCache, tracker: Tracker, device: torch.device,
                   log=print) -> Teacher:
    """Return the cached teacher for ``spec``, fine-tuning and logging it first if needed."""
    path = teacher_dir(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    task = TASKS[spec.dataset]
    with FileLock(str(path) + ".lock"):
        meta_file = path / "teacher.json"
        tokenizer = load_tokenizer(spec.model)
        if meta_file.exists():
            meta = json.loads(meta_file.read_text())
            model = AutoModelForSequenceClassification.from_pretrained(path)
            log(f"teacher {spec.dataset}/{spec.model} [{spec.teacher_id}]: cached, dev score "
                f"{meta['dev_metrics']['score']:.4f}")
            return Teacher(spec, model, tokenizer, meta["dev_metrics"], meta["run_id"], path)
        if path.exists():
            shutil.rmtree(path)  # an interrupted fine-tuning
        s = spec.settings
        log(f"teacher {spec.dataset}/{spec.model} [{spec.teacher_id}]: fine-tuning "
            f"({s['epochs']} epochs, max {s['max_train_examples']} examples)")
        train_ds = data.tokenized(spec.dataset, "train", tokenizer, s["max_length"],
                                  max_examples=s["max_train_examples"], data_seed=s["data_seed"])
        dev_ds, dev_labels = data.tokenized_dev(spec.dataset, tokenizer, s["max_length"], s["max_eval_examples"])
        torch.manual_seed(derive_seed(s["seed"], "teacher_init"))
        model = load_pretrained_classifier(spec.model, task.num_labels)
        dims = ModelDims.of(model.config)
        objective = Distillation({"alpha": 0.0}, [], task_type=task.task_type, student=dims, teacher=dims)
        params = {"dataset": spec.dataset, "teacher": teacher_identity(spec.model),
                  **{k: str(v) for k, v in s.items() if k != "model"}}
        tags = {"study.kind": "teacher", "study.teacher_id": spec.teacher_id,
                **environment_tags(device.type)}
        run_id = tracker.start(TEACHER_EXPERIMENT, f"teacher-{spec.dataset}-{spec.teacher_id[:8]}", tags, params)
        try:
            result = train(model, objective, train_ds, dev_ds, dev_labels, task, tokenizer, s, s["seed"],
                           device, log_metrics=lambda pts: tracker.log_metrics(run_id, pts),
                           desc=f"teacher {spec.dataset}")
        except BaseException as exc:
            tracker.fail(run_id, exc)
            raise
        tracker.log_metrics(run_id, [("wall_time_s", result.wall_time_s, 0),
                                     ("train_examples_per_s", result.train_examples_per_s, 0),
                                     ("peak_memory_mb", result.peak_memory_mb, 0)])
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        meta = {"dev_metrics": result.dev_metrics, "run_id": run_id, "identity": spec.identity,
                "wall_time_s": result.wall_time_s, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "teacher.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, path)
        tracker.finish(run_id)
        log(f"teacher {spec.dataset}/{spec.model}: dev score {result.dev_metrics['score']:.4f} "
            f"in {result.wall_time_s:.0f} s ({result.train_examples_per_s:.0f} examples/s)")
        model.cpu()
        return Teacher(spec, model, tokenizer, result.dev_metrics, run_id, path)
