"""Check that every student a grid kept loads back and gives its logged dev score.

Usage: ``python scripts/check_kept_students.py GRID [--data-dir DIR] [--tracking-uri URI]``

GRID is a shipped grid's name or a grid YAML. For each cell of the grid with a FINISHED run in the
store (``$STUDY_RUNS_DIR``/``runs/mlflow.db``, or ``--tracking-uri``), the student its run kept
(artifacts ``student/``) is downloaded and its checksums checked (``study.execution.students.
fetch_student``, as ``study export`` does), loaded with the task type's ``AutoModelFor<task>``
from that folder, and scored on the cell's dev split as the trainer scores it (the task type's
``evaluate``, batches of 128, the cell's ``max_length``, ``max_eval_examples`` and
``training.precision``). It prints one row per cell: the logged dev score, the reloaded one and
whether they are equal (bit for bit, as CPU training and evaluation are deterministic); a cell
with no finished run or no kept student is listed as such. Exit code 1 if any kept student
differs, 0 otherwise. Runs on CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", help="a shipped grid's name or a grid YAML")
    ap.add_argument("--data-dir", default=None, help="data folder (default $STUDY_DATA_DIR, else the hub)")
    ap.add_argument("--tracking-uri", default=None, help="MLflow store (default $MLFLOW_TRACKING_URI or runs/mlflow.db)")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    from study.cli import _quiet_libraries
    from study.core import contract
    from study.core.errors import StudyConfigError
    from study.execution.datacache import DataCache
    from study.execution.export import finished_run
    from study.execution.students import fetch_student
    from study.execution.tracking import Tracker
    from study.grid import load_grid
    from study.tasks.catalogue import TASKS, resolve_data_dir
    from study.tasks.types import get_type

    _quiet_libraries()
    torch.use_deterministic_algorithms(True, warn_only=True)  # as a CPU worker trains and evaluates
    grid = load_grid(args.grid)
    tracker = Tracker(args.tracking_uri)
    data = DataCache(resolve_data_dir(args.data_dir))
    device = torch.device("cpu")
    rows, bad = [], 0
    for cell in grid.cells():
        try:
            run = finished_run(tracker, cell.cell_id)
        except StudyConfigError:
            rows.append((cell.name, cell.cell_id, None, None, "no finished run"))
            continue
        logged = run.data.metrics[contract.METRIC_SCORE]
        if contract.TAG_STUDENT_ARTIFACTS not in run.data.tags:
            rows.append((cell.name, cell.cell_id, logged, None, "kept no student"))
            continue
        task = TASKS[cell.dataset]
        ttype = get_type(task.task_type)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            fetch_student(tracker, run, folder)  # downloads and checks every file's SHA-256
            model = ttype.auto_class.from_pretrained(folder).to(device)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            tr = cell.training
            dev, labels = data.tokenized_dev(cell.dataset, tokenizer, tr["max_length"], tr["max_eval_examples"])
            loader = DataLoader(dev, batch_size=128, shuffle=False, collate_fn=ttype.collator(tokenizer))
            score = ttype.evaluate(model, loader, dev, labels, task, device, tr["precision"])["score"]
        equal = score == logged
        bad += not equal
        rows.append((cell.name, cell.cell_id, logged, score, "equal" if equal else f"DIFFERENT ({score - logged:+.6g})"))

    width = max(len(r[0]) for r in rows)
    print(f"{'cell':<{width}}  {'id':<16}  {'logged dev':>10}  {'reloaded':>10}  equal?")
    def fmt(v):
        return f"{v:10.6f}" if v is not None else f"{'-':>10}"

    for name, cid, logged, score, verdict in rows:
        print(f"{name:<{width}}  {cid[:16]:<16}  {fmt(logged)}  {fmt(score)}  {verdict}")
    checked = sum(r[3] is not None for r in rows)
    print(f"{checked} kept students checked against grid {grid.name}: {checked - bad} equal, {bad} different; "
          f"{len(rows) - checked} cells without a kept student")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
