"""Distillation in stages: what a cell trains before its own (task) stage, and each stage's identity.

A cell's training is a list of stages; the last is the cell itself (its dataset, objective and
budget, as always). What comes before it is decided by two slots:

| slot                      | stages before the cell's own                                    | paper                    |
|---------------------------|-----------------------------------------------------------------|--------------------------|
| ``schedule: one_stage``   | none: today's cells, their ids unchanged                        |                          |
| ``schedule: two_stage``   | a task stage with the cell's intermediate entries only; the cell's stage then trains its prediction-layer loss only, from that student | TinyBERT (Jiao et al. 2020); Wang et al. 2023's ``two_stage`` |
| ``schedule: task_agnostic`` | a general stage on raw text with the cell's intermediate entries; the cell's stage then fine-tunes on gold labels | Wang et al. 2023's task-agnostic setting |
| ``initialisation: general`` | a general stage with ``general.objective``; the cell then distils as its slots say from that student | DistilBERT, TinyBERT, MiniLM ship such students |

A *general* stage distils the pretrained teacher (``teacher.model``, not fine-tuned) on a corpus
of raw text (``study.corpora``) with intermediate losses, plus prediction-layer KD over masked-LM
outputs when ``general.prediction`` is given (DistilBERT's L_ce + L_mlm; the teacher needs an MLM
head). Its settings are the grid's ``general`` slot (``GeneralSettings``), each a grid axis by
dotted name (``general.max_steps``, ``general.corpus``, ``general.objective``).

A stage is content-addressed: its id hashes the teacher, the data (a corpus's content identity or
the task and its subsample), the objective, the student's shape and start (an initialisation or
the previous stage's id), the budget and the seed, so a stage shared by several cells or grids is
trained once (``study.execution.stages``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from study.core.errors import StudyConfigError
from study.core.hashing import stable_hash
from study.core.registry import lookup
from study.core.schema import validate_settings
from study.corpora import VERSION as CORPUS_VERSION
from study.corpora import get_corpus
from study.grid.schema import GeneralSettings
from study.models import INIT_VERSION, has_mlm_head, initialisation_identity, teacher_identity
from study.objectives import prediction as prediction_mod
from study.objectives.distillation import Distillation, ModelDims
from study.objectives.intermediate import entry_versions, resolve_entry
from study.objectives.presets import preset

SCHEDULES: dict[str, str] = {
    "one_stage": "the cell's objective in one stage (no stage before it)",
    "two_stage": "stage 1 intermediate losses only, stage 2 the prediction-layer loss from the stage-1 student "
                 "(TinyBERT; Wang et al. 2023)",
    "task_agnostic": "general distillation on raw text with the cell's intermediate losses, then fine-tuning on "
                     "gold labels (Wang et al. 2023's task-agnostic setting)",
}
DEFAULT_SCHEDULE = "one_stage"

#: The initialisation that puts a general stage before the cell (``general.initialisation`` is that
#: stage's own start).
GENERAL_INITIALISATION = "general"

#: Version of the stage rules (what a stage trains, how its student is handed on); part of every
#: stage's identity.
STAGE_VERSION = "1"

#: The prediction slot of a stage that trains no prediction-layer loss (two_stage's stage 1).
NO_PREDICTION = "none"


#: The budget part of the general settings (the rest says what is trained, not how long).
_GENERAL_BUDGET = ("epochs", "max_steps", "learning_rate", "batch_size", "warmup_ratio", "weight_decay",
                   "max_grad_norm", "max_length", "dev_every", "precision")


@dataclass(frozen=True)
class Stage:
    """One stage before a cell's own: ``kind`` "general" (raw text) or "task" (the cell's dataset).

    ``start`` is an initialisation name (the stage builds the student) or the previous ``Stage``
    (it continues that student). ``prediction`` is a resolved prediction slot, or None for no
    prediction-layer term. ``data`` is the corpus name (general) or the dataset (task);
    ``data_identity`` what the data contributes to the id (a corpus's content, never its path).
    ``teacher`` is the pretrained teacher's model name (general) or the cell's ``TeacherSpec`` (task).
    """

    kind: str
    student: str
    seed: int
    start: Any  # str | Stage
    data: str
    data_identity: Any
    intermediate: tuple = ()
    prediction: dict[str, Any] | None = None
    training: dict[str, Any] = None  # type: ignore[assignment]
    teacher: Any = None
    augmentation: Any = None  # the task stage's augmentation identity (study.grid.cell.augmentation_identity)
    augmentation_steps: tuple = ()

    @cached_property
    def identity(self) -> dict[str, Any]:
        """What the stage's id hashes (see the module docstring)."""
        start = self.start.stage_id if isinstance(self.start, Stage) else initialisation_identity(self.start)
        if self.kind == "general":
            teacher = {"model": teacher_identity(self.teacher)}
        else:
            teacher = {**self.teacher.identity, "checkpoint": self.teacher.checkpoint}
        out = {
            "kind": self.kind, "student": self.student, "seed": self.seed, "start": start,
            "data": self.data_identity, "teacher": teacher,
            "intermediate": [{**e, "version": entry_versions(e)} for e in self.intermediate],
            "prediction": NO_PREDICTION if self.prediction is None else {**self.prediction,
                                                                         "version": prediction_mod.VERSION},
            "training": self.training, "stage_version": STAGE_VERSION, "initialisation_version": INIT_VERSION,
        }
        if self.augmentation is not None:
            out["augmentation"] = self.augmentation
        return out

    @cached_property
    def stage_id(self) -> str:
        return stable_hash(self.identity)

    @property
    def chain(self) -> list[Stage]:
        """This stage and the stages before it, first first."""
        before = self.start.chain if isinstance(self.start, Stage) else []
        return [*before, self]

    @property
    def initialisation(self) -> str:
        """The initialisation the chain's first stage builds its student with."""
        return self.chain[0].start

    @property
    def name(self) -> str:
        """Display name: ``general-wiki-offline-L3_H384-random-s0`` or ``task-sst2-L2_H384-...-s0``."""
        start = "after-" + self.start.kind if isinstance(self.start, Stage) else self.start
        return f"{self.kind}-{self.data}-{self.student}-{start}-s{self.seed}"

    def params(self) -> dict[str, str]:
        """Flat MLflow params of the stage run."""
        out: dict[str, Any] = {"kind": self.kind, "data": self.data, "student": self.student, "seed": self.seed,
                               "start": self.start.stage_id if isinstance(self.start, Stage) else self.start,
                               "teacher": self.teacher if self.kind == "general" else self.teacher.model}
        out.update(self.training)
        out.update({f"prediction.{k}": v for k, v in (self.prediction or {"distance": NO_PREDICTION}).items()})
        for i, entry in enumerate(self.intermediate):
            out.update({f"intermediate.{i}.{k}": v for k, v in entry.items()})
        out["intermediate.count"] = len(self.intermediate)
        return {k: str(v) for k, v in out.items()}


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """A corpus file's SHA-256 (16 hex digits), read once per process and version of the file:
    every cell of a grid resolves its stages, so a large corpus must not be hashed per cell."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def corpus_identity(name: str) -> dict[str, Any]:
    """What a corpus contributes to a stage id: a file's SHA-256 (its content, never its path), a
    hub dataset's coordinates, or a registered corpus's name; each with the packing version.

    Raises:
        StudyConfigError: an unknown corpus (``study.corpora.get_corpus``), a corpus file that
            does not exist.
    """
    spec = get_corpus(name)
    path = Path(spec.path).expanduser() if getattr(spec, "path", None) else None
    if spec.source in ("text", "jsonl") and path is not None:
        if not path.is_file():  # else its id would hold the path, and training would fail late
            raise StudyConfigError(f"Corpus {name!r}: no file at {str(path)!r}.")
        stat = path.stat()
        digest = _file_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        return {"content": digest, "source": spec.source, "text_field": spec.text_field,
                "separator": spec.separator, "version": CORPUS_VERSION}
    if spec.source == "hub":
        return {"hub": spec.hub, "max_documents": spec.max_documents, "version": CORPUS_VERSION}
    return {"name": spec.name, "source": spec.source, "version": CORPUS_VERSION, "max_documents": spec.max_documents}


def resolve_general(settings: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict], dict | None]:
    """The general slot checked: (its settings with defaults, its intermediate entries, its
    masked-LM prediction slot or None).

    Raises:
        StudyConfigError: an unknown key or value, an objective without intermediate entries and
            no prediction slot (nothing to distil on raw text).
    """
    out = validate_settings(GeneralSettings, settings, "general")
    if out["intermediate"] is not None:
        from_preset = out["intermediate"] if isinstance(out["intermediate"], list) else [out["intermediate"]]
    elif out["objective"] is not None:
        from_preset = preset(out["objective"])["intermediate"]
    else:
        from_preset = []
    entries = [resolve_entry(dict(e), f"general.intermediate[{i}]") for i, e in enumerate(from_preset)]
    prediction = prediction_mod.resolve(out["prediction"]) if out["prediction"] is not None else None
    if not entries and prediction is None:
        raise StudyConfigError(f"{where}: the general stage has nothing to distil on raw text: give "
                               "general.objective (a preset with intermediate losses, e.g. minilm_v2), "
                               "general.intermediate, or general.prediction (masked-LM KD).")
    return out, entries, prediction


def general_stage(student: str, seed: int, start: str, teacher_model: str, settings: dict[str, Any],
                  entries: list[dict], prediction: dict | None) -> Stage:
    """The general stage of a cell (settings from ``resolve_general``)."""
    budget = {k: settings[k] for k in _GENERAL_BUDGET}
    if budget["precision"] == "fp32":
        budget.pop("precision")  # as cells: the default precision stays out of identities
    return Stage(kind="general", student=student, seed=seed, start=start, data=settings["corpus"],
                 data_identity=corpus_identity(settings["corpus"]), intermediate=tuple(entries),
                 prediction=prediction, training=budget, teacher=teacher_model)


def stages_for(schedule: str, initialisation: str, *, student: str, seed: int, teacher, dataset: str,
               training: dict[str, Any], prediction: dict[str, Any], intermediate: list[dict],
               augmentation: dict[str, Any], augmentation_steps: list, general: dict[str, Any],
               where: str) -> tuple[list[Stage], dict[str, Any], list[dict]]:
    """The stages before a cell's own, and the cell's own prediction slot and intermediate entries
    as its schedule leaves them: (stages, prediction, intermediate).

    ``teacher`` is the cell's ``TeacherSpec`` (its ``model`` is the general stages' teacher);
    ``training`` the cell's resolved budget (without the default precision); ``augmentation`` its
    identity. Raises StudyConfigError for an unknown schedule, a two_stage cell without
    intermediate entries, a task_agnostic cell with nothing to distil on raw text.
    """
    lookup(SCHEDULES, schedule, "schedule")
    stages: list[Stage] = []
    start: Any = initialisation
    if initialisation == GENERAL_INITIALISATION:
        settings, entries, general_prediction = resolve_general(general, where)
        stage = general_stage(student, seed, settings["initialisation"], teacher.model, settings, entries,
                              general_prediction)
        stages.append(stage)
        start = stage
    if schedule == "two_stage":
        if not intermediate:
            raise StudyConfigError(f"{where}: schedule two_stage trains the intermediate losses first, but the "
                                   "cell has none; use one_stage for it (an exclude in the grid), or add "
                                   "intermediate entries.")
        stage = Stage(kind="task", student=student, seed=seed, start=start, data=dataset, data_identity=dataset,
                      intermediate=tuple(intermediate), prediction=None, training=training, teacher=teacher,
                      augmentation=augmentation, augmentation_steps=tuple(augmentation_steps))
        stages.append(stage)
        intermediate = []
    elif schedule == "task_agnostic":
        if initialisation == GENERAL_INITIALISATION:
            raise StudyConfigError(f"{where}: schedule task_agnostic already starts with a general stage; use "
                                   "another initialisation (its start) with it.")
        # the general stage distils the cell's own intermediate entries (its objective axis)
        settings, entries, general_prediction = resolve_general(
            {**general, "initialisation": initialisation, "objective": None, "intermediate": intermediate or None},
            f"{where} (schedule task_agnostic distils the cell's intermediate losses on raw text)")
        stage = general_stage(student, seed, initialisation, teacher.model, settings, entries, general_prediction)
        stages.append(stage)
        intermediate = []
        prediction = prediction_mod.resolve({"alpha": 0.0})
    return stages, prediction, intermediate


def check_stage(stage: Stage, student_config, teacher_config) -> None:
    """Refuse, before any training, a stage its models cannot run: a mapping that does not fit the
    depths, a loss that does not fit the widths or heads, masked-LM KD from a teacher without an
    MLM head (``study.models.has_mlm_head``).

    Raises:
        StudyConfigError: naming the stage and what to change.
    """
    where = f"stage {stage.name}"
    if stage.kind == "general" and stage.prediction is not None and not has_mlm_head(teacher_config):
        raise StudyConfigError(
            f"{where}: general.prediction distils masked-LM outputs, but teacher {stage.teacher!r} has no "
            f"masked-LM head (its architectures: {getattr(teacher_config, 'architectures', None)}). Drop "
            "general.prediction (intermediate losses only), or name a teacher checkpoint with one "
            "(e.g. bert-base-uncased).")
    try:
        Distillation(stage.prediction or {"alpha": 0.0}, list(stage.intermediate), task_type="classification",
                     student=ModelDims.of(student_config), teacher=ModelDims.of(teacher_config),
                     train_size=1 if stage.kind == "task" else 0)  # raw text has no example indices
    except StudyConfigError as exc:
        raise StudyConfigError(f"{where}: {exc}") from None
