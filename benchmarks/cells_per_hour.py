"""Cells per hour and peak memory of `study run`, serial against ray, each on a fresh store.

Usage: ``python benchmarks/cells_per_hour.py [--grid smoke] [--data-dir DIR] [--workers 2]
[--executors serial,serial:20,ray,ray:20]``

Each entry of ``--executors`` is an executor, optionally with a group size after a colon
(``serial:20`` is ``study run --executor serial --group-size 20``; no size means one cell at a
time). For each it runs ``study run --grid G --device cpu`` as a separate process in a fresh
``runs/`` folder (a sqlite store: the ray executor runs a local cluster of ``--workers`` CPUs,
one CPU a task, one task per group), samples the resident memory of the whole process tree
(driver, Ray's daemons and workers) every 0.5 s, and prints: wall time, the teachers' fine-tuning
time (from their runs), cells per hour over the wall time less the teachers', the peak memory in
MiB and the largest group trained. Each entry fine-tunes its own teachers, so the entries are
comparable; none reuses anything cached by another.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from mlflow.tracking import MlflowClient

from study.core import contract

ROOT = Path(__file__).resolve().parents[1]


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB (0 once it has ended)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def measure(entry: str, grid: str, data_dir: str | None, workers: int, base: Path) -> dict:
    """Run ``entry`` (``executor`` or ``executor:group_size``) on a fresh store under ``base``."""
    executor, _, size = entry.partition(":")
    group_size = int(size or 1)
    runs = base / entry.replace(":", "-g")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(STUDY_RUNS_DIR=str(runs), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "study.cli", "run", "--grid", grid, "--device", "cpu", "--executor", executor,
           "--group-size", str(group_size)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    if executor == "ray":
        cmd += ["--local-cpus", str(workers), "--num-cpus", "1"]
    peak = 0.0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = max(peak, tree_rss_mib(proc.pid))
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    reader.join(timeout=5)
    if proc.returncode != 0:
        raise SystemExit(f"{entry}: study run exited {proc.returncode}:\n{''.join(output)[-3000:]}")
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    exps = [e.experiment_id for e in client.search_experiments()]
    kind = f"tags.`{contract.TAG_KIND}`"
    cells = client.search_runs(exps, f"{kind} = '{contract.KIND_CELL}' and attributes.status = 'FINISHED'")
    teachers = client.search_runs(exps, f"{kind} = '{contract.KIND_TEACHER}'")
    teacher_s = sum(t.data.metrics.get(contract.METRIC_WALL_TIME, 0.0) for t in teachers)
    sizes = [int(c.data.metrics.get(contract.METRIC_GROUP_SIZE, 1)) for c in cells]
    return {"executor": entry, "cells": len(cells), "wall_s": wall, "teacher_s": teacher_s,
            "cells_per_hour": len(cells) / max(wall - teacher_s, 1e-9) * 3600, "peak_mib": peak,
            "largest_group": max(sizes, default=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="smoke")
    parser.add_argument("--data-dir", default=os.environ.get("STUDY_DATA_DIR"))
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray cluster (one task each)")
    parser.add_argument("--executors", default="serial,serial:20,ray,ray:20",
                        help="comma-separated executor[:group size] entries")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cells-per-hour-") as tmp:
        for entry in args.executors.split(","):
            rows.append(measure(entry, args.grid, args.data_dir, args.workers, Path(tmp)))
            r = rows[-1]
            print(f"{r['executor']:>7}: {r['cells']} cells in {r['wall_s']:.0f} s (teacher {r['teacher_s']:.0f} s): "
                  f"{r['cells_per_hour']:.0f} cells/hour, peak memory {r['peak_mib']:.0f} MiB, "
                  f"largest group {r['largest_group']}", flush=True)
    print(f"grid {args.grid}, {os.cpu_count()} CPUs on this machine, ray with {args.workers} workers")


if __name__ == "__main__":
    main()
