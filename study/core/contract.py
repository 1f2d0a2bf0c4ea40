"""The MLflow contract between the runner (``study``) and the analysis: one place for every name.

The runner writes runs with these tags, params and metrics; ``analysis.table`` reads them. The
analysis never keeps its own list of factors: each run says, per grid that contains it, which
factors that grid varies and the cell's value of each (``membership_tag``). This module imports
nothing from ``study`` (the analysis imports no part of the runner); the runner imports it, and so
do ``benchmarks/`` and ``scripts/faults.py`` where they read a store. No other module spells one of
these names as a string literal; the values are what stores already hold, so they never change.

Tags:
- ``study.kind``: ``cell`` or ``teacher``
- ``study.cell_id``: the cell's id (hash of its resolved choices); ``study.teacher_id`` likewise
- ``study.grid``: the grid whose run trained it
- ``study.in.<grid>``: JSON ``{"name": display name, "factors": {factor: value}, "grid_version":
  V}`` for every grid that contains the cell (a cell trained by one grid is found, not retrained,
  by another: the runner adds that grid's tag); ``factors`` lists every axis of the grid with more
  than one value; ``grid_version`` is the hash of the grid's cell ids when the tag was written
- experiment tag ``study.grid_version`` on a grid's experiment: the hash of its current cell ids.
  A grid edited after it ran keeps old members tagged with an older version: the analysis reads
  only the members of the current version (the runner re-tags the cells still in the grid)
- ``study.teacher_run_id``, ``study.error`` (on FAILED/KILLED runs), ``study.failed_stage``
  (``teacher`` on a cell run that failed for want of its teacher)
- claims (``study.execution.locks``): ``study.claim.node`` (host and boot), ``study.claim.pid``,
  ``study.claim.process_start`` (the process that holds a RUNNING run), ``study.claim.state``
  (``pending``/``confirmed``), ``study.heartbeat`` (Unix seconds, renewed while it runs),
  ``study.duplicate_of`` (on a KILLED run whose cell another run finished first),
  ``study.claim.withdrawn`` (why a claim that trained nothing was given up, before its run is deleted)
- ``study.teacher_source`` on a cell: where its worker got the teacher (``fine-tuned``,
  ``local cache``, ``artifact store``); ``study.teacher_artifacts`` on a teacher run: the
  artifact folder holding the teacher's files; ``study.restored_from`` on a teacher run recreated
  from a cached ``teacher.json`` (the run id it recorded)
- ``study.student_artifacts`` on a cell whose student was kept: its artifact folder (``student``);
  ``study.student_sha256``: the SHA-256 of its ``model.safetensors``. A registered model version
  (``study export --register``) carries ``study.cell_id``
- ``study.augmentation_version`` on a cell: which EDA operations its machine offered
- provenance, on every run: ``study.version``, ``study.git_commit``, ``study.device``,
  ``study.host``, ``study.versions.<package>`` (torch, transformers, python)
- MLflow's own, for its UI: ``mlflow.note.content`` (a run's recipe in one line; a grid
  experiment's description), ``mlflow.experimentKind`` on every experiment
  (``custom_model_development``), ``mlflow.source.name``/``.type``/``.git.commit`` and
  ``mlflow.user`` on every run; dataset inputs (``mlflow.data.context`` ``training``/``eval``)

Metrics: ``dev_score`` (the task's official metric, a fraction), ``dev_<metric>`` per official
metric (``DEV_METRICS``; step = epoch), ``train_loss`` and ``train_<component>`` (step = optimiser
step), ``teacher_dev_score``, ``wall_time_s``, ``train_time_s``, ``train_examples_per_s``,
``peak_memory_mb``, ``cpu_time_s``, ``cpu_threads``, ``student_parameters``, ``train_examples``,
``group_size`` (students trained together on the same batches, ``study run --group-size``; a
grouped cell's time and throughput are its group's); ``<checkpoint>_epoch`` on teacher runs.

Params ``dataset`` and ``teacher`` (the teacher's identity) on every run; a cell's other params are
its grid slots (``study.grid``'s names, e.g. ``student``, ``epochs``, ``prediction.alpha``).

Param ``score_metric``: the metric(s) the task's ``score`` averages (its YAML's ``score``, e.g.
``accuracy``, ``f1``, ``pearson+spearman``), so tables name what each dataset's score is.
Params ``n_labels`` (1 for regression) and ``task_type`` (the task YAML's, e.g. ``classification``,
``regression``): the dataset features of the analysis's recommender. Runs logged without them still
load: the recommender then leaves ``n_labels`` out and reads ``is_regression`` from ``score_metric``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

TAG_KIND = "study.kind"
KIND_CELL = "cell"
KIND_TEACHER = "teacher"
#: A stage before a cell's own (``study.grid.stages``): a general-distilled or stage-1 student.
KIND_STAGE = "stage"
TAG_STAGE_ID = "study.stage_id"
#: On a stage run with a tracking server: where its student's folder is among the run's artifacts.
TAG_STAGE_ARTIFACTS = "study.stage_artifacts"
STAGE_ARTIFACT_PATH = "stage"
TAG_CELL_ID = "study.cell_id"
TAG_TEACHER_ID = "study.teacher_id"
TAG_TEACHER_RUN_ID = "study.teacher_run_id"
TAG_GRID = "study.grid"
TAG_ERROR = "study.error"
MEMBERSHIP_PREFIX = "study.in."
TAG_GRID_VERSION = "study.grid_version"
#: On a grid's experiment: the absolute path of the YAML it was last run from (a user grid).
TAG_GRID_SOURCE = "study.grid_source"
TAG_CLAIM_NODE = "study.claim.node"
TAG_CLAIM_PID = "study.claim.pid"
TAG_CLAIM_PROCESS_START = "study.claim.process_start"
TAG_CLAIM_STATE = "study.claim.state"
TAG_HEARTBEAT = "study.heartbeat"
TAG_DUPLICATE_OF = "study.duplicate_of"
TAG_TEACHER_SOURCE = "study.teacher_source"
TAG_TEACHER_ARTIFACTS = "study.teacher_artifacts"
TEACHER_ARTIFACT_PATH = "teacher"
#: On a cell run whose student was kept (``keep_student: all``): the artifact folder holding it
#: (``save_pretrained`` with its tokenizer and ``student.json``), and the SHA-256 of its weights.
TAG_STUDENT_ARTIFACTS = "study.student_artifacts"
STUDENT_ARTIFACT_PATH = "student"
TAG_STUDENT_SHA256 = "study.student_sha256"
#: Why a claim that trained nothing was given up (on the run, just before it is deleted).
TAG_CLAIM_WITHDRAWN = "study.claim.withdrawn"
#: ``teacher`` on a cell run that failed because its teacher could not be had (``study status``).
TAG_FAILED_STAGE = "study.failed_stage"
#: On a teacher run restored from a cached ``teacher.json``: the run id the cache recorded.
TAG_RESTORED_FROM = "study.restored_from"
#: On a cell run resumed from a checkpoint (``study.execution.checkpoints``): where it resumed,
#: ``epoch E, batch B (step S)``.
TAG_RESUMED_FROM = "study.resumed_from"
#: The cell's augmentation version (which EDA operations the machine offered).
TAG_AUGMENTATION_VERSION = "study.augmentation_version"

# Provenance tags (``study.execution.tracking.environment_tags``), on cell and teacher runs.
TAG_VERSION = "study.version"
TAG_GIT_COMMIT = "study.git_commit"
TAG_DEVICE = "study.device"
TAG_HOST = "study.host"
#: ``study.versions.<package>``: torch, transformers, python.
TAG_VERSIONS_PREFIX = "study.versions."

# MLflow's own names, set beside the project's so that its UI shows them (``study.execution.tracking``).
#: The description of a run (the cell's recipe in one line) and of an experiment (the grid's).
TAG_MLFLOW_NOTE = "mlflow.note.content"
#: MLflow 3's experiment kind: a model-training experiment opens on its runs list, not the GenAI overview.
TAG_MLFLOW_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
#: The runs list's Source column: the command, its type, the code's git commit; and who ran it.
TAG_MLFLOW_SOURCE_NAME = "mlflow.source.name"
TAG_MLFLOW_SOURCE_TYPE = "mlflow.source.type"
TAG_MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
TAG_MLFLOW_USER = "mlflow.user"
#: Dataset inputs of a cell run (``mlflow.data.context``): its training and dev data.
TAG_MLFLOW_DATASET_CONTEXT = "mlflow.data.context"
DATASET_CONTEXT_TRAIN = "training"
DATASET_CONTEXT_DEV = "eval"
#: Prefix of MLflow's system metrics (``study run --system-metrics``): ``system/cpu_utilization_percentage``...
SYSTEM_METRICS_PREFIX = "system/"

METRIC_SCORE = "dev_score"
#: Per-metric dev columns, each a fraction. ``dev_f1`` is the task's F1: binary (MRPC), entity-level
#: (token classification: with ``dev_precision``, ``dev_recall``) or SQuAD's token F1 (extractive
#: QA: with ``dev_exact_match``).
DEV_METRICS = ("dev_accuracy", "dev_f1", "dev_matthews_corr", "dev_pearson", "dev_spearman",
               "dev_precision", "dev_recall", "dev_exact_match")
PARAM_SCORE_METRIC = "score_metric"
PARAM_N_LABELS = "n_labels"
PARAM_TASK_TYPE = "task_type"
METRIC_TEACHER_SCORE = "teacher_dev_score"
#: Prefix of the per-epoch dev metrics (``dev_<metric>``, step = epoch) and of training losses
#: (``train_<component>``, step = optimiser step; ``train_loss`` is the total).
DEV_PREFIX = "dev_"
TRAIN_PREFIX = "train_"
METRIC_TRAIN_LOSS = "train_loss"
#: ``<checkpoint>_epoch`` on a teacher run: the epoch of each kept checkpoint.
EPOCH_SUFFIX = "_epoch"

# Costs (step 0). A grouped cell's time and throughput are its group's.
METRIC_WALL_TIME = "wall_time_s"
METRIC_EXAMPLES_PER_S = "train_examples_per_s"
METRIC_PEAK_MEMORY = "peak_memory_mb"
COST_METRICS = (METRIC_WALL_TIME, METRIC_EXAMPLES_PER_S, METRIC_PEAK_MEMORY)
METRIC_TRAIN_TIME = "train_time_s"
METRIC_TRAIN_EXAMPLES = "train_examples"
METRIC_STUDENT_PARAMETERS = "student_parameters"
METRIC_GROUP_SIZE = "group_size"
#: CPU seconds of the process (all threads) and its thread count: with ``wall_time_s``, the share
#: of its cores a run had (``study.execution.forecast.cpu_share``).
METRIC_CPU_TIME = "cpu_time_s"
METRIC_CPU_THREADS = "cpu_threads"

#: Params every teacher and cell run logs: the dataset and the teacher's identity.
PARAM_DATASET = "dataset"
PARAM_TEACHER = "teacher"

#: Factors with a fixed role in the analysis: datasets are blocks, seeds are replicates.
#: The level a cell has of a factor its grid does not vary, for factors added after runs were
#: logged without them: a claim's ``where`` on such a factor matches those runs at this level.
FACTOR_DEFAULTS = {"schedule": "one_stage"}
BLOCK_FACTORS = ("dataset",)
REPLICATE_FACTOR = "seed"

#: What a grid name may be: it names an MLflow experiment, a tag and a report file.
GRID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def membership_tag(grid: str) -> str:
    """The tag key that marks a run as a cell of ``grid``.

    Raises:
        ValueError: ``grid`` is not a valid grid name (letters, digits, ``_ . -``).
    """
    if not GRID_NAME.match(grid or ""):
        raise ValueError(f"Bad grid name {grid!r}: use letters, digits, '_', '.' and '-' (at most 100), "
                         "starting with a letter or digit.")
    return MEMBERSHIP_PREFIX + grid


def encode_membership(name: str, factors: Mapping[str, str], grid_version: str | None = None) -> str:
    """The value of a membership tag: the cell's display name, its value of each grid factor, and
    the version of the grid (hash of its cell ids) that wrote it."""
    # factors keep the grid's order (tables show them in it)
    data = {"name": name, "factors": {k: str(v) for k, v in factors.items()}}
    if grid_version is not None:
        data["grid_version"] = grid_version
    return json.dumps(data)


def membership_version(value: str) -> str | None:
    """The grid version recorded in a membership tag's value (None for tags written before)."""
    return json.loads(value).get("grid_version")


def decode_membership(value: str) -> tuple[str, dict[str, str]]:
    """(display name, {factor: value}) from a membership tag's value."""
    data = json.loads(value)
    return data["name"], dict(data["factors"])


def treatments(factors: list[str]) -> list[str]:
    """The factors whose effect the analysis estimates: all but blocks and the replicate."""
    return [f for f in factors if f not in BLOCK_FACTORS and f != REPLICATE_FACTOR]
