"""Work units: the cells one executor task trains together, on the same batches.

Cells that share one ``group_key`` (data, seed, budget shape, teacher) can train together
(``study.training.trainer.train_group``): one teacher pass per batch serves them all.
``work_units`` makes units of up to ``group_size`` such cells (1: one unit a cell).
"""

from __future__ import annotations

from dataclasses import dataclass

from study.core.hashing import stable_hash
from study.grid import Cell, TeacherSpec


@dataclass(frozen=True)
class WorkUnit:
    """Cells that one executor task trains, in order; they share ``teacher``."""

    cells: tuple[Cell, ...]

    @property
    def teacher(self) -> TeacherSpec:
        """The teacher every cell of the unit distils from."""
        return self.cells[0].teacher

    @property
    def name(self) -> str:
        """The first cell's name, with how many others train with it."""
        return self.cells[0].name if len(self.cells) == 1 else f"{self.cells[0].name} (+{len(self.cells) - 1})"


def group_key(cell: Cell) -> str:
    """What cells must share to train together on the same batches (``study.training.trainer.train_group``):
    dataset, training subsample, augmentation, seed (hence data order and dropout seed), sequence
    length, batch size, epochs, dev subsample, and the teacher with its checkpoint. A hash; the
    cell's id is untouched."""
    tr = cell.training
    return stable_hash({
        "dataset": cell.dataset, "seed": cell.seed, "augmentation": cell.identity["augmentation"],
        "training": {k: tr[k] for k in ("max_train_examples", "data_seed", "max_length", "batch_size", "epochs",
                                        "max_eval_examples")},
        "teacher": cell.teacher.teacher_id, "teacher_checkpoint": cell.teacher.checkpoint,
    })


def work_units(cells: list[Cell], group_size: int = 1) -> list[WorkUnit]:
    """Units of up to ``group_size`` cells that share a ``group_key`` (trained together on the
    same batches), in the grid's order of each unit's first cell; ``group_size`` 1: one unit per
    cell.

    Raises:
        ValueError: ``group_size`` below 1.
    """
    if group_size < 1:
        raise ValueError(f"group size must be at least 1, got {group_size}")
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(group_key(cell), []).append(cell)
    units = [WorkUnit(tuple(g[i:i + group_size])) for g in groups.values() for i in range(0, len(g), group_size)]
    position = {c.cell_id: i for i, c in enumerate(cells)}
    return sorted(units, key=lambda u: position[u.cells[0].cell_id])
