"""What a kill costs with checkpoints: a grid's group SIGKILLed at a fraction of its training, then
rerun, against the same grid trained without a break.

Usage: ``python benchmarks/kill_resume.py [--grid smoke] [--data-dir DIR] [--kill-at 0.8]
[--checkpoint-every 1] [--teacher-from runs/teachers/ID] [--keep DIR]``

Three ``study run --grid G --device cpu`` processes, each in a fresh ``runs/`` folder (sqlite):

1. *uninterrupted*: the grid as users run it (default checkpoints: 5 min on CPU);
2. *killed*: the grid with ``--checkpoint-every MIN``, SIGKILLed (the whole process group) once
   ``--kill-at`` of the uninterrupted run's training has passed (measured from the moment its cells'
   runs start to when they finish);
3. *rerun*: ``study run`` again on the killed run's folder, which resumes from the checkpoints.

It prints each run's wall time and the cells' training time (``train_time_s``, the group's), the
rerun's share of the uninterrupted training time, and, per cell, whether the resumed cell is
bit-identical to the uninterrupted one (dev score and every step's ``train_loss`` and components).
``--teacher-from`` copies a fine-tuned teacher folder into each fresh ``runs/`` (a teacher run is
restored from it), so the teacher's fine-tuning is left out of every timing. Run it alone: another
job on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from study.core import contract

ROOT = Path(__file__).resolve().parents[1]


def env_for(runs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(STUDY_RUNS_DIR=str(runs), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def fresh(base: Path, name: str, teacher: Path | None) -> Path:
    """A new ``runs/`` folder with its store's schema created (so polling it never races the
    worker's migration), and ``teacher`` copied into its teacher cache."""
    runs = base / name / "runs"
    runs.mkdir(parents=True)
    MlflowClient(f"sqlite:///{runs / 'mlflow.db'}").search_experiments()
    if teacher is not None:
        shutil.copytree(teacher, runs / "teachers" / teacher.name)
    return runs


def cell_runs(runs: Path, status: str | None = None) -> list:
    db = runs / "mlflow.db"
    if not db.exists():
        return []
    client = MlflowClient(f"sqlite:///{db}")
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        found = client.search_runs(experiments, f"tags.`{contract.TAG_KIND}` = '{contract.KIND_CELL}'",
                                   max_results=10_000) if experiments else []
    except Exception:  # the schema is being created
        return []
    return [r for r in found if status is None or r.info.status == status]


def results(runs: Path) -> dict[str, tuple]:
    """cell id -> (dev score, every train_loss* metric's (step, value) history) of FINISHED cells."""
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    out = {}
    for run in cell_runs(runs, "FINISHED"):
        keys = sorted(k for k in run.data.metrics if k.startswith(contract.TRAIN_PREFIX + "loss"))
        history = tuple((k, tuple((m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, k),
                                                                     key=lambda m: m.step))) for k in keys)
        out[run.data.tags[contract.TAG_CELL_ID]] = (run.data.metrics["dev_score"], run.data.metrics["dev_loss"]
                                                    if "dev_loss" in run.data.metrics else None, history)
    return out


def train_time(runs: Path) -> float:
    return max(r.data.metrics.get(contract.METRIC_TRAIN_TIME, 0.0) for r in cell_runs(runs, "FINISHED"))


def watch_cells(runs: Path, proc: subprocess.Popen, until: str, limit: float = 3600) -> float:
    """Poll until some cell run is RUNNING (``until='start'``) or every cell run FINISHED
    (``until='end'``); return the time it happened."""
    deadline = time.time() + limit
    while time.time() < deadline:
        runs_now = cell_runs(runs)
        if until == "start" and any(r.info.status == "RUNNING" for r in runs_now):
            return time.time()
        if until == "end" and proc.poll() is not None:
            return time.time()
        time.sleep(0.5)
    raise TimeoutError(f"no cell {until} within {limit} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="smoke")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("STUDY_DATA_DIR") or ROOT.parent / "shared" / "data"))
    parser.add_argument("--kill-at", type=float, default=0.8, help="Fraction of the uninterrupted training.")
    parser.add_argument("--checkpoint-every", default="1", help="Minutes, for the killed run.")
    parser.add_argument("--teacher-from", type=Path, help="A fine-tuned teacher folder to copy into each store.")
    parser.add_argument("--keep", type=Path, help="Work here and keep it (default: a temp folder).")
    args = parser.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="kd-kill-resume-"))
    base.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "study.cli", "run", "--grid", args.grid, "--data-dir", str(args.data_dir.resolve()),
           "--device", "cpu"]

    ref = fresh(base, "uninterrupted", args.teacher_from)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env_for(ref), cwd=ref.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    started = watch_cells(ref, proc, "start")
    ended = watch_cells(ref, proc, "end")
    assert proc.wait() == 0, proc.stderr.read()[-2000:]
    ref_wall, ref_cells = time.time() - t0, ended - started
    ref_train = train_time(ref)

    killed = fresh(base, "killed", args.teacher_from)
    proc = subprocess.Popen(cmd + ["--checkpoint-every", args.checkpoint_every], env=env_for(killed),
                            cwd=killed.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    started = watch_cells(killed, proc, "start")
    time.sleep(max(0.0, started + args.kill_at * ref_cells - time.time()))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = time.time() - started
    steps = sorted({int(p.name[5:14]) for p in (killed / "checkpoints").glob("*/step-*.pt")})

    t0 = time.time()
    rerun = subprocess.run(cmd, env=env_for(killed), cwd=killed.parent, capture_output=True, text=True)
    rerun_wall = time.time() - t0
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rerun_train = train_time(killed)
    resumed = {r.data.tags.get(contract.TAG_RESUMED_FROM, "-") for r in cell_runs(killed, "FINISHED")}

    a, b = results(ref), results(killed)
    same = sum(b.get(cid) == v for cid, v in a.items())
    print(f"grid {args.grid}: {len(a)} cells; killed at {args.kill_at:.0%} of the uninterrupted training "
          f"({killed_after:.0f} s after its cells started), checkpoints every {args.checkpoint_every} min, "
          f"last checkpoint at step {steps[-1] if steps else '-'}; resumed from {sorted(resumed)}")
    print(f"{'run':<16} {'wall s':>8} {'cells s':>8} {'train_time_s':>13}")
    print(f"{'uninterrupted':<16} {ref_wall:>8.0f} {ref_cells:>8.0f} {ref_train:>13.1f}")
    print(f"{'rerun (resumed)':<16} {rerun_wall:>8.0f} {'':>8} {rerun_train:>13.1f}")
    print(f"rerun wall / uninterrupted cells time: {rerun_wall / ref_cells:.0%}; rerun train_time_s / uninterrupted: "
          f"{rerun_train / ref_train:.0%}")
    print(f"bit-identical to the uninterrupted run (dev score, dev loss, every train_loss* step): {same} of {len(a)}")
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if same == len(a) else 1


if __name__ == "__main__":
    sys.exit(main())
