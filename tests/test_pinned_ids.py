"""The shipped grids' cell ids, names, teacher ids and grid versions do not move.

A store keeps its runs only while these stay put: `study run` skips a cell whose id has a
FINISHED run. `tests/data/pinned_ids.json` was written from the code before the layered
restructure (issue 17), by `python tests/test_pinned_ids.py --write`; regenerate it only for a
change that is meant to change identities, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from study.grid import available_grids, load_grid

PINNED = Path(__file__).parent / "data" / "pinned_ids.json"
LISTED = 200  # grids up to this many cells are pinned cell by cell; larger ones by a digest


def identities(name: str) -> dict:
    """What the store depends on for grid ``name``: version, teacher ids, cell ids and names."""
    grid = load_grid(name)
    cells = sorted(f"{c.cell_id} {c.name}" for c in grid.cells())
    entry = {
        "version": grid.version,
        "teachers": sorted(t.teacher_id for t in grid.teachers()),
        "n_cells": len(cells),
        "cells_sha256": hashlib.sha256("\n".join(cells).encode()).hexdigest(),
    }
    if len(cells) <= LISTED:
        entry["cells"] = cells
    return entry


def test_every_shipped_grid_is_pinned():
    assert sorted(json.loads(PINNED.read_text())) == sorted(available_grids())


@pytest.mark.parametrize("name", sorted(json.loads(PINNED.read_text())))
def test_shipped_grid_identities_do_not_move(name):
    pinned = json.loads(PINNED.read_text())[name]
    now = identities(name)
    if "cells" in pinned:
        assert now["cells"] == pinned["cells"]
    assert now == pinned


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    PINNED.write_text(json.dumps({g: identities(g) for g in available_grids()}, indent=1,
                                 sort_keys=True) + "\n")
