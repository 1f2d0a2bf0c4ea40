"""Grids: a YAML declaration of axes, fixed settings and excludes, expanded into cells.

A cell is a set of named slots, each filled from a registry:

| slot             | what                                                             | registry / check                 |
|------------------|------------------------------------------------------------------|----------------------------------|
| ``dataset``      | the task: a shipped name or a task YAML (``study/tasks/``)       | ``study.tasks.catalogue.TASKS``             |
| ``student``      | ``L{layers}_H{hidden}`` in the teacher's family                  | ``study.models.StudentSize``     |
| ``initialisation`` | how the student starts                                         | ``study.models.INITIALISATIONS`` |
| ``teacher``      | model and fine-tuning budget                                     | ``TeacherSettings``              |
| ``prediction``   | distance, teacher_temperature, student_temperature, alpha        | ``study.objectives.prediction``  |
| ``intermediate`` | a list of {features, loss, mapping, weight, parameters}          | ``study.objectives.intermediate``|
| ``augmentation`` | an augmentation policy and its parameters                        | ``study.augment.AUGMENTATIONS``  |
| ``mixup``        | mix-up distillation (alpha of Beta(a, a), weight; alpha 0 = off) | ``study.objectives.mixup``       |
| ``seed``         | the cell's random streams                                        | int >= 0                         |
| ``training``     | the student's budget                                             | ``TrainingSettings``             |

A grid file (``study/grids/NAME.yaml``)::

    name: smoke
    axes:                              # the cross product of these is the set of cells
      dataset: [sst2]
      student: [L2_H384]
      objective: [ce, logit_kd]        # a named preset of prediction + intermediate
      initialisation: [teacher_lower, teacher_upper]
      prediction.student_temperature: [1, 2]   # any slot parameter, by dotted name
      intermediate.mapping: [skip, last]       # applies to every intermediate entry
      seed: [0]
    teacher: {model: all-MiniLM-L6-v2, epochs: 2}
    training: {epochs: 1, learning_rate: 1.0e-4}
    prediction: {alpha: 0.5}           # fixed slot settings, on top of the preset
    intermediate: [{features: hidden, loss: mse}]
    augmentation_params: {eda: {n_aug: 1}}
    exclude:                           # drop cells matching all keys (a list matches any value)
      - {student: L4_H256, initialisation: [teacher_lower, teacher_upper]}
    overrides:                         # a budget per dataset: these settings replace the grid's
      - {when: {dataset: squad-devsplit}, training: {max_length: 256}, teacher: {max_length: 256}}
    group_size: 8                      # cells trained together by default (not part of any cell)
    keep_student: all                  # none | all: save each trained student (not part of any cell)

``overrides`` give some datasets their own budget (settings, not factors): each entry's
``training``/``teacher`` values replace the grid's fixed ones for the datasets its ``when``
names, before the cell's axis values; they are the cell's resolved settings, so they enter its
identity like any other. A key set by an override may not also be a grid axis, and two entries
may not set the same key for one dataset.

``group_size`` is how many cells ``study run`` trains together on shared batches when
``--group-size`` is not given (default 1: one at a time). It is how the grid is run, not what it
holds: no cell's identity or result depends on it (grouped training is bit-identical on CPU).
``keep_student`` likewise (``none`` by default; ``study run --keep-student`` overrides it):
``all`` saves every student it trains as an artifact of its run (``study.execution.students``),
which ``study export`` turns into a folder ``from_pretrained`` loads.

``training.precision`` and ``teacher.precision`` (``fp32``, ``bf16``, ``fp16``) are the autocast
of the student's and the teacher's passes (``study.core.device``): fp32, the default, stays out
of the identity (every id from before the setting holds); another precision enters it.

Axis names: ``dataset``, ``student``, ``initialisation``, ``objective``, ``augmentation``,
``seed``, ``intermediate`` (whole entry lists), and ``prediction.K``, ``intermediate.K``,
``intermediate.N.K``, ``teacher.K``, ``training.K``. A cell is resolved in this order: defaults,
the preset (``objective``) and its legacy ``objective_params``, the grid's fixed slot settings,
then the cell's axis values. Cells that resolve to the same choices are one cell.

A cell's identity is every resolved choice and each component's version, nothing else (no paths,
device, tracking URI, grid name): its id is the sha256 of the canonical JSON of that identity
(sorted keys, floats written with ``repr``), cut to 16 hex digits.

| module         | what                                                                     |
|----------------|--------------------------------------------------------------------------|
| ``schema.py``  | the budgets (``TrainingSettings``, ``TeacherSettings``), the file's keys |
| ``cell.py``    | ``Cell``, ``TeacherSpec``: a resolved run and its identity               |
| ``expansion.py`` | ``Grid``: axes x excludes -> cells, each slot resolved; ``validate``   |
| ``parse.py``   | ``parse_grid``: a mapping -> ``Grid``, cross-key checks                  |
| ``load.py``    | ``load_grid``, ``available_grids``: YAML files                           |
"""

from study.grid.cell import NAME_PARTS, TRAINER_VERSION, Cell, TeacherSpec
from study.grid.expansion import Grid
from study.grid.load import available_grids, load_grid
from study.grid.parse import parse_grid
from study.grid.schema import TEACHER_DEFAULTS, TRAINING_DEFAULTS, TeacherSettings, TrainingSettings

__all__ = ["NAME_PARTS", "TEACHER_DEFAULTS", "TRAINER_VERSION", "TRAINING_DEFAULTS", "Cell", "Grid", "TeacherSettings",
           "TeacherSpec", "TrainingSettings", "available_grids", "load_grid", "parse_grid"]
