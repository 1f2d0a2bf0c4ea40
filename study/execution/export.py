"""``study export``: a cell's student as a folder ``AutoModelFor<task>.from_pretrained`` loads.

The cell is named by id, or is the best of a grid (the highest ``dev_score`` among its FINISHED
cells, per dataset with ``dataset``). A student its run kept (``keep_student: all``,
``study.execution.students``) is downloaded and its checksums checked; otherwise the cell is
retrained here from its grid's definition, nothing logged, and its dev score compared with the
logged one: equal on CPU (when the logged run trained on CPU too), within ``GPU_TOLERANCE``
otherwise (GPU training is not bit-reproducible). The folder gets a model card (``README.md``,
Hugging Face's format: YAML front matter, then the recipe, teacher, dev metrics, data, cell id,
version, commit and the commands that reproduce it). ``register`` also registers it in the
MLflow Model Registry, the version tagged with the cell id.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from study import __version__
from study.core import contract
from study.core.device import select_device
from study.core.errors import StudyConfigError
from study.execution.cell import prepare_cell
from study.execution.datacache import DataCache
from study.execution.stages import StageRunner
from study.execution.students import fetch_student, save_student
from study.execution.teacher_store import obtain_teacher
from study.execution.tracking import Tracker, environment_tags
from study.grid import Cell, Grid, available_grids, load_grid
from study.tasks.catalogue import TASKS, resolve_data_dir
from study.tasks.types import get_type
from study.training.trainer import train_group

#: Largest |retrained - logged| dev score (a fraction) accepted when either run trained on a GPU.
GPU_TOLERANCE = 0.01
PIPELINE_TAGS = {"classification": "text-classification", "regression": "text-classification",
                 "token_classification": "token-classification", "extractive_qa": "question-answering"}


@dataclass
class Exported:
    """What ``export_student`` wrote: the folder, the cell and its run, whether it was retrained,
    the student's dev metrics, the score its run logged, the check made (one line) and whether it
    passed, and the registered ``name/version`` if any."""

    folder: Path
    cell_id: str
    name: str
    run_id: str
    retrained: bool
    dev_metrics: dict
    logged_score: float
    check: str
    ok: bool
    auto_class: str
    registered: str | None = None


class _NoLog:
    """A tracker stand-in for a retraining that logs nothing."""

    def log_metrics(self, run_id: str, points) -> None:
        pass

    def log_datasets(self, run_id: str, records) -> None:
        pass


def finished_run(tracker: Tracker, cell_id: str):
    """The cell's FINISHED run (one that kept its student first).

    Raises:
        StudyConfigError: the store has no finished run of ``cell_id``.
    """
    runs = [r for r in tracker.cell_runs(cell_id).get(cell_id, []) if r.info.status == "FINISHED"]
    if not runs:
        raise StudyConfigError(f"No finished run of cell {cell_id!r} in {tracker.uri}; "
                               "`study status --grid G --cells` lists a grid's cell ids and states.")
    kept = [r for r in runs if contract.TAG_STUDENT_ARTIFACTS in r.data.tags]
    return (kept or runs)[0]


def best_run(grid: Grid, tracker: Tracker, dataset: str | None = None):
    """The FINISHED run with the highest dev score among the grid's cells (of ``dataset``).

    Raises:
        StudyConfigError: ``dataset`` is not on the grid's axis, or no cell has finished.
    """
    cells = grid.cells()
    if dataset is not None:
        if dataset not in grid.axes["dataset"]:
            raise StudyConfigError(f"Grid {grid.name} has no dataset {dataset!r}; its datasets: "
                                   f"{', '.join(grid.axes['dataset'])}.")
        cells = [c for c in cells if c.dataset == dataset]
    runs = tracker.cell_runs()
    best = None
    for c in cells:
        for r in runs.get(c.cell_id, []):
            score = r.data.metrics.get(contract.METRIC_SCORE)
            if r.info.status == "FINISHED" and score is not None and (best is None or score > best[0]):
                best = (score, r)
    if best is None:
        where = f" on {dataset}" if dataset else ""
        raise StudyConfigError(f"Grid {grid.name} has no finished cell{where} in {tracker.uri}; "
                               f"`study run --grid {grid.name}` trains them.")
    return best[1]


def grid_of(run, grid: Grid | None) -> Grid:
    """The grid to find the run's cell in: ``grid``, else the shipped grid that trained it or
    lists it.

    Raises:
        StudyConfigError: no shipped grid holds the cell (pass ``--grid`` with its YAML).
    """
    if grid is not None:
        return grid
    tags = run.data.tags
    names = [tags.get(contract.TAG_GRID)] + [k[len(contract.MEMBERSHIP_PREFIX):] for k in tags
                                             if k.startswith(contract.MEMBERSHIP_PREFIX)]
    shipped = set(available_grids())
    for name in names:
        if name in shipped:
            return load_grid(name)
    raise StudyConfigError(f"Cell {tags.get(contract.TAG_CELL_ID)} was trained by grid {names[0]!r}, which is "
                           "not shipped: pass --grid with its YAML file to retrain it.")


def cell_in(grid: Grid, cell_id: str) -> Cell:
    """The grid's cell with ``cell_id``.

    Raises:
        StudyConfigError: the grid (as it is now) has no such cell.
    """
    for c in grid.cells():
        if c.cell_id == cell_id:
            return c
    raise StudyConfigError(f"Grid {grid.name} (as it is now) has no cell {cell_id}: it cannot be retrained "
                           "from its definition; pass --grid with the grid file that trained it.")


def retrain(cell: Cell, tracker: Tracker, data_dir, device: torch.device, log=print):
    """Train the cell's student again as its run did (its seeds, data, teacher, the stages it
    starts from), logging nothing but a stage that had to be trained again; return (model on CPU,
    tokenizer, dev metrics).

    Raises:
        Exception: what training raised (a nan loss, a damaged teacher).
    """
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)  # as a worker trains
    data = DataCache(resolve_data_dir(data_dir))
    teacher, _ = obtain_teacher(cell.teacher, data, tracker, device, checkpoint=cell.teacher.checkpoint, log=log)
    # the stages the cell starts from: saved ones are reused, missing ones trained (and logged) first
    starts = StageRunner(data, tracker, device, lambda spec: obtain_teacher(spec, data, tracker, device,
                                                                            checkpoint=spec.checkpoint, log=log)[0],
                         log).ensure([cell])
    prep = prepare_cell(cell, teacher, data, _NoLog(), device, run_id="", start=starts.get(cell.cell_id))
    [result] = train_group([prep.student], prep.train_ds, prep.dev_ds, prep.dev_labels, TASKS[cell.dataset],
                           teacher.tokenizer, device, teacher=teacher.model if prep.needs_teacher else None,
                           teacher_precision=cell.teacher.precision)
    teacher.model.cpu()
    if isinstance(result, Exception):
        raise result
    return prep.student.model.cpu(), teacher.tokenizer, result.dev_metrics


def compare(score: float, logged: float, device: str, logged_device: str) -> tuple[str, bool]:
    """(one line, passed) comparing a retrained dev score with the logged one: equal when both
    runs trained on CPU, else within ``GPU_TOLERANCE``."""
    if device == "cpu" and logged_device == "cpu":
        ok = score == logged
        return (f"retrained on CPU: dev score {score:.6f}, logged {logged:.6f}: "
                + ("equal, as CPU training is deterministic" if ok else "DIFFERENT (CPU training should repeat it exactly)")), ok
    ok = abs(score - logged) <= GPU_TOLERANCE
    return (f"retrained on {device} (logged on {logged_device}): GPU training is not bit-reproducible, tolerance "
            f"{GPU_TOLERANCE} on the dev score: {score:.6f} against logged {logged:.6f} (difference "
            f"{score - logged:+.6f}), " + ("within it" if ok else "OUTSIDE it")), ok


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StudyConfigError(f"--out {out} exists and is not an empty folder; give a new or empty one.")


def export_student(out: Path, tracker: Tracker, *, cell_id: str | None = None, grid: Grid | None = None,
                   dataset: str | None = None, data_dir=None, device: str = "auto", register: str | None = None,
                   log=print) -> Exported:
    """Write the student of cell ``cell_id`` (or the best cell of ``grid``, of ``dataset``) into
    the new or empty folder ``out`` with its tokenizer and model card; see the module docstring.

    Raises:
        StudyConfigError: a bad id, a grid with no finished cell, an unusable ``out``, a damaged
            kept student, or a cell that cannot be retrained (its grid is unknown).
    """
    out = Path(out)
    _check_out(out)
    run = finished_run(tracker, cell_id) if cell_id is not None else best_run(grid, tracker, dataset)
    cell_id = run.data.tags[contract.TAG_CELL_ID]
    staging = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        result = _write(staging, run, cell_id, tracker, grid, data_dir, device, log)
        result.folder = out
        (staging / "README.md").write_text(model_card(run, result, _grid_arg(run, grid)))
        if register and result.ok:
            result.registered = register_student(tracker, run, register, staging)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        umask = os.umask(0)
        os.umask(umask)
        for f in out.iterdir():  # downloads can arrive private (0600): a model folder is for sharing
            f.chmod(0o666 & ~umask)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _write(folder: Path, run, cell_id: str, tracker: Tracker, grid: Grid | None, data_dir, device: str,
           log) -> Exported:
    """Fetch the kept student into ``folder``, or retrain the cell and save it there."""
    logged = run.data.metrics[contract.METRIC_SCORE]
    name = run.info.run_name
    auto = get_type(run.data.params.get(contract.PARAM_TASK_TYPE, "classification")).auto_class.__name__
    if contract.TAG_STUDENT_ARTIFACTS in run.data.tags:
        meta = fetch_student(tracker, run, folder)
        sha = meta["sha256"].get("model.safetensors", "")
        return Exported(folder, cell_id, name, run.info.run_id, False, meta["dev_metrics"], logged,
                        f"kept by run {run.info.run_id}; checksums verified (model.safetensors {sha[:12]}...)",
                        True, auto)
    cell = cell_in(grid_of(run, grid), cell_id)
    dev = select_device(device)
    log(f"cell {cell_id} ({name}) kept no weights: retraining it from its grid's definition on {dev.type}")
    model, tokenizer, dev_metrics = retrain(cell, tracker, data_dir, dev, log)
    line, ok = compare(dev_metrics["score"], logged, dev.type, run.data.tags.get(contract.TAG_DEVICE, "unknown"))
    save_student(model, tokenizer, folder, {"dev_metrics": dev_metrics, "run_id": run.info.run_id,
                                            "cell_id": cell_id, "retrained": line})
    return Exported(folder, cell_id, name, run.info.run_id, True, dev_metrics, logged, line, ok, auto)


def register_student(tracker: Tracker, run, name: str, folder: Path) -> str:
    """Register the student in the MLflow Model Registry as a version of ``name`` (tag
    ``study.cell_id``); a retrained student is first logged as its run's artifacts ``student/``.
    Return ``name/version``."""
    client = tracker.client
    run_id = run.info.run_id
    if contract.TAG_STUDENT_ARTIFACTS not in run.data.tags:
        client.log_artifacts(run_id, str(folder), contract.STUDENT_ARTIFACT_PATH)
        sha = json.loads((folder / "student.json").read_text())["sha256"].get("model.safetensors", "")
        client.set_tag(run_id, contract.TAG_STUDENT_SHA256, sha)
        client.set_tag(run_id, contract.TAG_STUDENT_ARTIFACTS, contract.STUDENT_ARTIFACT_PATH)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"{client.get_run(run_id).info.artifact_uri}/{contract.STUDENT_ARTIFACT_PATH}",
        run_id=run_id, tags={contract.TAG_CELL_ID: run.data.tags[contract.TAG_CELL_ID]})
    return f"{name}/{version.version}"


def _grid_arg(run, grid: Grid | None) -> str:
    """How ``study run --grid`` names the cell's grid: its shipped name, else its file."""
    if grid is not None:
        return grid.name if grid.name in available_grids() or grid.source is None else str(grid.source)
    return run.data.tags.get(contract.TAG_GRID, "GRID")


def _at_most(params: dict, key: str, what: str) -> str:
    """``at most N <what> examples`` from the run's param ``key``, or ``all <what> examples`` where unset."""
    value = params.get(key)
    return f"all {what} examples" if value in (None, "None", "") else f"at most {value} {what} examples"


def model_card(run, result: Exported, grid_arg: str) -> str:
    """The folder's ``README.md``: Hugging Face model-card front matter, then what the student is
    and how it was made."""
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    dataset = p.get(contract.PARAM_DATASET, "")
    front = {"library_name": "transformers", "pipeline_tag": PIPELINE_TAGS.get(p.get(contract.PARAM_TASK_TYPE, ""),
                                                                               "text-classification"),
             "base_model": p.get(contract.PARAM_TEACHER, ""), "datasets": [dataset],
             "tags": ["knowledge-distillation", "kd-study", f"kd-study-cell-{result.cell_id}"],
             "model-index": [{"name": result.name, "results": [{
                 "task": {"type": PIPELINE_TAGS.get(p.get(contract.PARAM_TASK_TYPE, ""), "text-classification")},
                 "dataset": {"name": dataset, "type": dataset, "split": "validation"},
                 "metrics": [{"type": k, "value": float(v), "name": f"dev {k}"}
                             for k, v in result.dev_metrics.items() if k != "loss"]}]}]}
    recipe = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(p.items()))
    metrics = "\n".join(f"| {k} | {float(v):.6f} |" for k, v in result.dev_metrics.items())
    here = environment_tags("cpu")
    origin = ("retrained by `study export` (the run kept no weights): " + result.check) if result.retrained \
        else "the weights its run kept: " + result.check
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {result.name}

A student distilled by kd-study (cell `{result.cell_id}` of grid `{t.get(contract.TAG_GRID, '')}`,
MLflow run `{result.run_id}`). Load it with `{result.auto_class}.from_pretrained(<this folder>)`;
its tokenizer is the teacher's, saved beside it.

Weights: {origin}.

## Teacher

`{p.get(contract.PARAM_TEACHER, '')}`, fine-tuned on `{dataset}` (teacher id `{t.get(contract.TAG_TEACHER_ID, '')}`,
run `{t.get(contract.TAG_TEACHER_RUN_ID, '')}`): dev score {m.get(contract.METRIC_TEACHER_SCORE, float('nan')):.6f}.

## Student dev metrics

The task's dev split (score: `{p.get(contract.PARAM_SCORE_METRIC, '')}`); the run logged dev score {result.logged_score:.6f}.

| metric | value |
|---|---|
{metrics}

## Data

Dataset `{dataset}`: {_at_most(p, 'max_train_examples', 'training')} (data seed {p.get('data_seed', '?')},
augmentation `{p.get('augmentation', 'none')}`), {_at_most(p, 'max_eval_examples', 'dev')},
sequences of at most {p.get('max_length', '?')} tokens; {int(m.get(contract.METRIC_TRAIN_EXAMPLES, 0))} training
examples seen per epoch.

## Recipe (every resolved choice of the cell)

| setting | value |
|---|---|
{recipe}

## Provenance

- cell id: `{result.cell_id}`
- trained with kd-study {t.get(contract.TAG_VERSION, '?')}, git commit `{t.get(contract.TAG_GIT_COMMIT, '?')}`,
  on {t.get(contract.TAG_DEVICE, '?')} (torch {t.get(contract.TAG_VERSIONS_PREFIX + 'torch', '?')},
  transformers {t.get(contract.TAG_VERSIONS_PREFIX + 'transformers', '?')})
- exported with kd-study {__version__}, git commit `{here[contract.TAG_GIT_COMMIT]}`

## Reproduce

```
study run --grid {grid_arg} --keep-student all
study export --cell {result.cell_id} --out DIR
```
"""
