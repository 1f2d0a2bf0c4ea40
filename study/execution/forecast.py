"""A forecast before the spend: how long a grid's pending cells and teachers will take here.

The cost of a cell is modelled as ``seconds = rate * train_examples * epochs * token_factor``,
with ``rate`` (wall seconds per reference training example, the dev evaluation after each epoch
included) depending on the student size, the kind of objective and the device, and
``token_factor = (overhead + tokens) / (overhead + reference)``: ``tokens`` is the mean number of
tokens the model reads per example of the dataset at the cell's ``max_length`` (every window of
a long QA context; ``example_tokens`` measures it on a seeded sample with the teacher's
tokenizer), ``reference`` the same for the example the rates are given for (SST-2 at length 64:
13.2 tokens), ``overhead`` a step's per-example cost that does not grow with length, in tokens
(on the 2-core CPU: 18 for the 2-layer students, about 1 for fine-tuning the 6-layer teacher).
Both are in ``study/calibration.json`` (fitted on tasks-cpu, 2026-12-05: seconds per example
rise from 6-8 ms on CoLA, SST-2 and TREC at 12-13 tokens to 18 ms on MRPC at 53). Rates come
from calibration figures: the FINISHED runs already in the store (their ``wall_time_s``,
``train_examples`` and the cell's budget), else the figures shipped in
``study/calibration.json`` (measured on a 2-core CPU; see its ``measured`` note). A size never
measured is scaled from the nearest measured one by its non-embedding parameter count.

A wall time measured while other work shared the CPU says nothing about this device: on 2 cores,
a second training process halves each one's speed. So a CPU run's figure counts only when the run
had its cores (``cpu_share``: the process's CPU seconds over wall seconds times torch's threads,
at least ``MIN_CPU_SHARE``); runs that did not log their CPU seconds (from before it was logged)
are left out too.

Kinds of objective (what a training step costs): ``plain`` (no teacher: alpha 0, no
intermediate loss, no mix-up), ``logits`` (the teacher's cached logits), ``features`` (the
teacher runs every step: intermediate losses or mix-up).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from study.core import contract
from study.execution.teacher import load_tokenizer
from study.models import StudentSize
from study.tasks.catalogue import TASKS
from study.tasks.types import get_type
from study.training.general import total_steps

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
KINDS = ("plain", "logits", "features")
#: A CPU run that had less of its cores than this shared the machine: not a calibration figure.
#: Alone, a 2-core run measures about 0.99; beside a second training process about 0.5.
MIN_CPU_SHARE = 0.8


def cpu_share(metrics: dict[str, float]) -> float | None:
    """The share of its cores a run had: ``cpu_time_s / (wall_time_s * cpu_threads)`` (CPU
    seconds of the process, all threads, over the wall seconds of the same span), or None when
    the run did not log them."""
    try:
        share = metrics[contract.METRIC_CPU_TIME] / (metrics[contract.METRIC_WALL_TIME]
                                                       * metrics[contract.METRIC_CPU_THREADS])
    except (KeyError, ZeroDivisionError):
        return None
    return share if share == share else None


def _alone(metrics: dict[str, float], device: str) -> bool:
    """Whether a run's wall time is a calibration figure: any non-CPU run; a CPU run with
    ``cpu_share`` of at least ``MIN_CPU_SHARE``."""
    if device != "cpu":
        return True
    share = cpu_share(metrics)
    return share is not None and share >= MIN_CPU_SHARE


def objective_kind(cell) -> str:
    """``plain``, ``logits`` or ``features``: what one training step of ``cell`` runs."""
    if cell.intermediate or cell.mixup:
        return "features"
    return "plain" if cell.prediction["alpha"] == 0 else "logits"


def _size_weight(student: str) -> float:
    """A cost proxy for a student size: layers x hidden^2 (the non-embedding parameter count's
    dominant term), so rates can be scaled between sizes."""
    size = StudentSize.parse(student)
    return size.layers * size.hidden ** 2


@dataclass
class Calibration:
    """Seconds per training example by (device, student, kind), and per dev example by (device,
    student); ``teacher`` seconds per training example by (device, teacher model)."""

    train: dict[tuple[str, str, str], float] = field(default_factory=dict)
    teacher: dict[tuple[str, str], float] = field(default_factory=dict)
    source: str = ""
    #: tokens of the example the rates are given for; a step's per-example overhead, in tokens
    reference_tokens: float = 13.19
    overhead_tokens: float = 18.0
    teacher_overhead_tokens: float = 1.0

    def token_factor(self, tokens: float | None, teacher: bool = False) -> float:
        """What an example of ``tokens`` tokens costs against the reference example (1 when not
        known), for a student's training step or (``teacher``) the teacher's fine-tuning."""
        if tokens is None:
            return 1.0
        overhead = self.teacher_overhead_tokens if teacher else self.overhead_tokens
        return (overhead + tokens) / (overhead + self.reference_tokens)

    def rate(self, device: str, student: str, kind: str) -> tuple[float, str]:
        """(seconds per training example, how it was found). Raises LookupError with no figure."""
        if (device, student, kind) in self.train:
            return self.train[(device, student, kind)], "measured"
        same = [(s, r) for (d, s, k), r in self.train.items() if d == device and k == kind]
        if not same:
            raise LookupError(f"no calibration figure for {kind} objectives on {device}")
        s, r = min(same, key=lambda x: abs(_size_weight(x[0]) - _size_weight(student)))
        return r * _size_weight(student) / _size_weight(s), f"scaled from {s}"

    def teacher_rate(self, device: str, model: str) -> float:
        if (device, model) in self.teacher:
            return self.teacher[(device, model)]
        same = [r for (d, _), r in self.teacher.items() if d == device]
        if not same:
            raise LookupError(f"no calibration figure for teacher fine-tuning on {device}")
        return statistics.median(same)


def example_tokens(keys, data, sample: int = 256) -> dict[tuple[str, int], float]:
    """Mean tokens per training example (``TaskType.tokens_per_example``) for each (dataset,
    max_length, tokenizer model) of ``keys``, from ``data`` (a ``DataCache``); keyed by (dataset,
    max_length). A dataset that cannot be read or tokenised here is left out (the forecast then
    prices its examples as the reference one, and says so)."""
    out: dict[tuple[str, int], float] = {}
    tokenizers: dict[str, object] = {}
    for dataset, max_length, model in sorted(set(keys), key=str):
        if (dataset, max_length) in out or dataset not in TASKS:
            continue
        try:
            if model not in tokenizers:
                tokenizers[model] = load_tokenizer(model)
            spec = TASKS[dataset]
            split = data.raw(dataset)["train"]
            out[(dataset, max_length)] = get_type(spec.task_type).tokens_per_example(
                spec, split, tokenizers[model], int(max_length), sample)
        except Exception:  # no hub, no files: the forecast says the tokens are unknown
            continue
    return out


def shipped_calibration() -> Calibration:
    """The figures in ``study/calibration.json``."""
    data = json.loads(CALIBRATION_FILE.read_text())
    tokens = data["tokens"]
    cal = Calibration(source=f"{CALIBRATION_FILE.name} ({data.get('measured', '')})",
                      reference_tokens=tokens["reference"], overhead_tokens=tokens["overhead"],
                      teacher_overhead_tokens=tokens["teacher_overhead"])
    for row in data["train"]:
        cal.train[(row["device"], row["student"], row["kind"])] = row["seconds_per_example"]
    for row in data["teacher"]:
        cal.teacher[(row["device"], row["model"])] = row["seconds_per_example"]
    return cal


def store_calibration(runs: dict[str, list], teacher_runs: list,
                      tokens: dict[tuple[str, int], float] | None = None,
                      reference: Calibration | None = None) -> Calibration:
    """Rates from the FINISHED cell runs (``Tracker.cell_runs()``) and teacher runs of a store:
    the median over cells of ``wall_time_s / (train_examples * epochs * token_factor)`` per
    (device, student, kind), i.e. per reference example: ``tokens`` (``example_tokens``, keyed by
    the runs' (dataset, max_length)) and ``reference``'s token figures (default: the shipped
    ones) give each run's ``token_factor``; a run whose tokens are not known counts as 1. Kinds are
    read from the logged params (``prediction.alpha``, ``intermediate.count``, ``mixup.alpha``).
    Cells trained in a group (``group_size`` above 1) are left out: their ``wall_time_s`` is the
    whole group's; so are CPU runs that shared the machine or did not log their CPU seconds
    (``_alone``)."""
    ref = reference or shipped_calibration()
    tokens = tokens or {}

    def factor(p: dict, teacher: bool = False) -> float:
        try:
            return ref.token_factor(tokens.get((p[contract.PARAM_DATASET], int(p["max_length"]))), teacher)
        except (KeyError, ValueError):
            return 1.0

    samples: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for cell_runs in runs.values():
        for run in cell_runs:
            if run.info.status != "FINISHED":
                continue
            p, m, t = run.data.params, run.data.metrics, run.data.tags
            if m.get(contract.METRIC_GROUP_SIZE, 1) > 1 or not _alone(m, t.get(contract.TAG_DEVICE, "cpu")):
                continue
            try:
                n = m[contract.METRIC_TRAIN_EXAMPLES] * int(p["epochs"])
                wall = m[contract.METRIC_WALL_TIME]
            except (KeyError, ValueError):
                continue
            if p.get("intermediate.count", "0") != "0" or p.get("mixup.alpha", "0.0") not in ("0.0", "0"):
                kind = "features"
            else:
                kind = "plain" if float(p.get("prediction.alpha", "0.5")) == 0 else "logits"
            samples[(t.get(contract.TAG_DEVICE, "cpu"), p["student"], kind)].append(wall / (n * factor(p)))
            break
    teachers: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in teacher_runs:
        p, m = run.data.params, run.data.metrics
        try:
            n = int(p["max_train_examples"]) * int(p["epochs"])
        except (KeyError, ValueError):
            continue  # the whole training set: its size is not logged with the run
        device = run.data.tags.get(contract.TAG_DEVICE, "cpu")
        if run.info.status == "FINISHED" and contract.METRIC_WALL_TIME in m and _alone(m, device):
            per_example = m[contract.METRIC_WALL_TIME] / (n * factor(p, teacher=True))
            teachers[(device, p.get(contract.PARAM_TEACHER, ""))].append(per_example)
    return replace(ref, train={k: statistics.median(v) for k, v in samples.items()},
                   teacher={k: statistics.median(v) for k, v in teachers.items()}, source="this store's runs")


def merged(primary: Calibration, fallback: Calibration) -> Calibration:
    """``primary``'s figures, completed by ``fallback``'s (whose token figures it keeps)."""
    return replace(fallback, train={**fallback.train, **primary.train}, teacher={**fallback.teacher, **primary.teacher},
                   source=f"{primary.source}, completed by {fallback.source}")


@dataclass
class Forecast:
    """Seconds forecast for pending cells and teachers, and how each rate was found."""

    cell_seconds: dict[str, float]
    teacher_seconds: dict[str, float]
    basis: dict[str, str]
    source: str
    #: seconds that groups save: the teacher passes their students share (``group_savings``)
    group_saving_s: float = 0.0
    #: seconds for the stages still to train (``stage_seconds``), by stage id
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return (sum(self.cell_seconds.values()) + sum(self.teacher_seconds.values())
                + sum(self.stage_seconds.values()) - self.group_saving_s)


def forecast(cells: list, teachers: list, train_sizes: dict[str, int], calibration: Calibration,
             device: str, groups: list | None = None,
             tokens: dict[tuple[str, int], float] | None = None) -> Forecast:
    """Forecast the wall time of training ``cells`` and fine-tuning ``teachers`` (TeacherSpecs)
    on ``device``.

    Args:
        train_sizes: dataset -> number of training examples before subsampling.
        groups: the units the cells train in (``study.execution.units.work_units``: objects with
            ``.cells``); a group runs the teacher once per batch for all its students, so every
            ``features`` student after the first saves its teacher pass (``group_savings``).
        tokens: (dataset, max_length) -> mean tokens per example (``example_tokens``); an
            example of a pair not in it is priced as the reference example (``basis`` says so).

    Raises:
        LookupError: no calibration figure for a kind of objective or teachers on this device.
    """
    cell_s, basis, examples = {}, {}, {}
    for cell in cells:
        tr = cell.training
        n = min(tr["max_train_examples"] or train_sizes[cell.dataset], train_sizes[cell.dataset])
        # originals, then each step's copies: step k augments step k-1's copies (augment_pipeline)
        factor, copies = 1, 1
        for step in cell.augmentation_steps:
            copies *= step["params"].get("n_aug", 1)
            factor += copies
        n *= factor * _token_factor(calibration, tokens, cell.dataset, tr["max_length"], basis)
        rate, how = calibration.rate(device, cell.student, objective_kind(cell))
        cell_s[cell.cell_id] = rate * n * tr["epochs"]
        basis[f"{cell.student} {objective_kind(cell)}"] = how
        examples[cell.cell_id] = n * tr["epochs"]
    teacher_s = {}
    for spec in teachers:
        s = spec.settings
        n = min(s["max_train_examples"] or train_sizes[spec.dataset], train_sizes[spec.dataset])
        n *= _token_factor(calibration, tokens, spec.dataset, s["max_length"], basis, teacher=True)
        teacher_s[spec.teacher_id] = calibration.teacher_rate(device, spec.identity["teacher"]["model"]) * n * s["epochs"]
    saving = group_savings(groups or [], examples, calibration, device)
    return Forecast(cell_s, teacher_s, basis, calibration.source, saving)


def _token_factor(calibration: Calibration, tokens: dict | None, dataset: str, max_length: int,
                  basis: dict[str, str], teacher: bool = False) -> float:
    known = (tokens or {}).get((dataset, int(max_length)))
    if known is None:
        basis[f"{dataset} tokens"] = "not known: priced as the reference example"
    return calibration.token_factor(known, teacher)


def group_savings(groups: list, examples: dict[str, float], calibration: Calibration, device: str) -> float:
    """Seconds saved by training each group's cells together: in a group, the teacher runs once
    per batch, so each ``features`` student after the first saves a teacher pass, priced as the
    difference between its ``features`` and ``logits`` rates (what running the teacher every step
    adds) times its training examples (``examples``: cell id -> examples x epochs). Logit-only
    students read cached logits alone or grouped, and their own steps cost the same either way.
    A model: it leaves out what sharing batches may save besides (data loading, one dev pass)."""
    saved = 0.0
    for unit in groups:
        feats = [c for c in unit.cells if c.cell_id in examples and objective_kind(c) == "features"]
        for cell in feats[1:]:
            extra = (calibration.rate(device, cell.student, "features")[0]
                     - calibration.rate(device, cell.student, "logits")[0])
            saved += max(extra, 0.0) * examples[cell.cell_id]
    return saved


def stage_seconds(stages: list, train_blocks: dict[str, int], train_sizes: dict[str, int],
                  calibration: Calibration, device: str, measured: dict[tuple[str, int], float] | None = None,
                  tokens: dict[tuple[str, int], float] | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds forecast for each stage still to train (``study.grid.stages``), and how.

    A general stage reads ``total_steps`` x ``batch_size`` packed blocks of ``max_length`` tokens
    (``train_blocks``: stage id -> its corpus's training blocks), each priced at the seconds per
    block measured on this store's finished stage runs of that student and length (``measured``:
    (student, max_length) -> seconds per block), else at the ``features`` rate scaled by its
    tokens. A task stage is priced as a cell with a ``features`` objective.

    Raises:
        LookupError: no calibration figure for ``features`` objectives on this device.
    """
    seconds, basis = {}, {}
    for stage in stages:
        tr = stage.training
        rate, how = calibration.rate(device, stage.student, "features")
        if stage.kind == "general":
            n = total_steps(train_blocks[stage.stage_id], tr) * tr["batch_size"]
            per = (measured or {}).get((stage.student, int(tr["max_length"])))
            if per is None:
                per = rate * calibration.token_factor(float(tr["max_length"]))
            else:
                how = "measured on this store's stage runs"
        else:
            n = min(tr.get("max_train_examples") or train_sizes[stage.data], train_sizes[stage.data]) * tr["epochs"]
            per = rate * _token_factor(calibration, tokens, stage.data, tr["max_length"], basis)
        seconds[stage.stage_id] = per * n
        basis[f"{stage.kind} stage {stage.student}"] = how
    return seconds, basis
