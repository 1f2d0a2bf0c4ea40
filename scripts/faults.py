"""The fault suite: inject each fault of issue 9 on a tiny real grid, recover, and check the outcome.

Usage: ``python scripts/faults.py [--only NAME ...] [--data-dir DIR] [--keep DIR]``

Every scenario runs ``study`` as a separate process (``python -m study.cli``) in a fresh ``runs/``
folder, injects its fault (several workers on a new store, SIGKILL, SIGTERM, Ctrl-C, damaged or
deleted files, a copied store, a stopped UI, bad input; a group of 8 killed after a checkpoint, a
kill during a checkpoint's write, a full disk under the checkpoints, a Ray worker killed and its
task retried), lets the documented recovery run, and checks:

- every cell FINISHED exactly once (``lost``: cells with no FINISHED run; ``dup``: cells with more
  than one), where the scenario trains;
- the store is usable (``study status`` exits 0);
- no run is left RUNNING (cells and teachers); no ``runs/teachers/*.tmp*`` folder is left;
- plus the scenario's own check (its run ended KILLED, the refusal is one line with exit 2, ...).

It prints one row per scenario and a closing count, and exits 1 if any check failed.
``tests/test_faults.py`` runs the same scenarios under pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from study.core import contract
from study.execution.checkpoints import CHECKPOINT_META

ROOT = Path(__file__).resolve().parents[1]
GRID = {
    "name": "faults",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["ce", "logit_kd"],
             "initialisation": ["random"], "augmentation": ["none"], "seed": [0, 1]},
    "teacher": {"epochs": 1, "max_train_examples": 96, "max_eval_examples": 64, "max_length": 32,
                "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 64, "max_eval_examples": 64, "max_length": 32,
                 "batch_size": 16},
}
N_CELLS = 4


@dataclass
class Outcome:
    """One row of the table."""

    fault: str
    outcome: str = ""
    lost: int = 0
    duplicated: int = 0
    unusable: int = 0
    running: int = 0
    tmp_left: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.problems or self.lost or self.duplicated or self.unusable or self.running
                    or self.tmp_left)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Workspace:
    """A fresh ``runs/`` folder, the grid YAML, and helpers to run ``study`` against them."""

    def __init__(self, base: Path, name: str, data_dir: Path):
        self.dir = base / name
        self.runs = self.dir / "runs"
        self.dir.mkdir(parents=True)
        self.data_dir = Path(data_dir).resolve()  # `study` runs in self.dir, not in the caller's folder
        self.grid = self.dir / "faults.yaml"
        self.grid.write_text(yaml.safe_dump(GRID))

    @property
    def db(self) -> Path:
        return self.runs / "mlflow.db"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                   STUDY_RUNS_DIR=str(self.runs), TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg")
        env.update(extra)
        return env

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "study.cli", *args]

    def run_args(self, *extra: str) -> list[str]:
        return self.cmd("run", "--grid", str(self.grid), "--data-dir", str(self.data_dir),
                        "--device", "cpu", *extra)

    def study(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout,
                              env=self.env(**env), cwd=self.dir)

    def train(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.run_args(*extra), capture_output=True, text=True, timeout=900,
                              env=self.env(), cwd=self.dir)

    def start(self, *extra: str, **env: str) -> subprocess.Popen:
        """``study run`` in the background, with SIGINT at its default as in a terminal: a suite
        started as a background job of a script inherits SIGINT ignored, Python then installs no
        Ctrl-C handler, and the Ctrl-C scenario would test nothing."""
        return subprocess.Popen(self.run_args(*extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=self.env(**env), cwd=self.dir, start_new_session=True,
                                preexec_fn=_sigint_default)

    def runs_by_kind(self) -> list[tuple[str, str, str, dict[str, str]]]:
        """(kind, run_id, status, tags) of every run, read with sqlite3 (safe while a worker
        creates the schema, unlike an MlflowClient)."""
        if not self.db.exists():
            return []
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
            try:
                rows = con.execute("SELECT run_uuid, status FROM runs").fetchall()
                tags: dict[str, dict[str, str]] = {}
                for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
                    tags.setdefault(run_id, {})[key] = value
            finally:
                con.close()
        except sqlite3.OperationalError:  # no schema yet
            return []
        return [(tags.get(r, {}).get(contract.TAG_KIND, ""), r, s, tags.get(r, {})) for r, s in rows]

    def statuses(self, kind: str) -> list[str]:
        return [s for k, _, s, _ in self.runs_by_kind() if k == kind]

    def teacher_dirs(self) -> list[Path]:
        folder = self.runs / "teachers"
        return sorted(p for p in folder.iterdir() if p.is_dir() and ".tmp" not in p.name) if folder.is_dir() else []

    def wait_for(self, condition, what: str, proc: subprocess.Popen | None = None, limit: float = 300) -> None:
        deadline = time.time() + limit
        while time.time() < deadline:
            if condition():
                return
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: "
                                     f"{(proc.stderr.read() if proc.stderr else '')[-500:]}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def check(self, out: Outcome, trains: bool = True, cells: int = N_CELLS) -> Outcome:
        """The common checks, added to ``out`` (``cells``: how many the grid has)."""
        runs = self.runs_by_kind()
        if trains:
            finished: dict[str, int] = {}
            for kind, _, status, tags in runs:
                if kind == contract.KIND_CELL and status == "FINISHED":
                    cell_id = tags[contract.TAG_CELL_ID]
                    finished[cell_id] = finished.get(cell_id, 0) + 1
            out.lost = cells - len(finished)
            out.duplicated = sum(n - 1 for n in finished.values())
            teacher_runs = {r for k, r, s, _ in runs if k == contract.KIND_TEACHER and s == "FINISHED"}
            dangling = [t for k, _, s, t in runs if k == contract.KIND_CELL and s == "FINISHED"
                        and t.get(contract.TAG_TEACHER_RUN_ID) not in teacher_runs]
            if dangling:
                out.problems.append(f"{len(dangling)} finished cell(s) point at a missing teacher run")
        out.running = sum(s == "RUNNING" for _, _, s, _ in runs)
        out.tmp_left = len(list((self.runs / "teachers").glob("*.tmp*"))) if (self.runs / "teachers").is_dir() else 0
        if self.runs.is_dir() and os.access(self.runs, os.W_OK):
            status = self.study("status", "--grid", str(self.grid))
            if status.returncode != 0:
                out.unusable = 1
                out.problems.append(f"study status exit {status.returncode}: {status.stderr.strip()[-200:]}")
        return out


def expect(out: Outcome, condition: bool, problem: str) -> None:
    if not condition:
        out.problems.append(problem)


def one_line(stderr: str) -> bool:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return len(lines) == 1 and "Traceback" not in stderr


def seed_teacher(ws: Workspace, warm: Path | None) -> None:
    """Copy a fine-tuned teacher into the workspace's cache (fine-tuning it costs a run)."""
    if warm is not None:
        shutil.copytree(warm, ws.runs / "teachers" / warm.name)


# ---------------------------------------------------------------------------------------------
# The scenarios: each takes (base folder, data dir, warm teacher or None) and returns an Outcome.


def concurrent_workers(base, data, warm, workers: int = 3) -> Outcome:
    out = Outcome(f"1. {workers} workers start together on a new project")
    ws = Workspace(base, "concurrent", data)
    procs = [subprocess.Popen(ws.run_args(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=ws.env(), cwd=ws.dir) for _ in range(workers)]
    codes = [p.wait(timeout=900) for p in procs]
    errors = [p.stderr.read() for p in procs]
    expect(out, codes == [0] * workers, f"exit codes {codes}: {[e[-300:] for e in errors if e]}")
    teachers = ws.statuses(contract.KIND_TEACHER)
    expect(out, teachers == ["FINISHED"], f"teacher runs {teachers} (want one FINISHED)")
    out.outcome = f"exit codes {codes}; teacher fine-tuned once"
    return ws.check(out)


def sigkill_teacher(base, data, warm) -> Outcome:
    out = Outcome("2. SIGKILL while the teacher is fine-tuned")
    ws = Workspace(base, "kill_teacher", data)
    proc = ws.start()
    try:
        ws.wait_for(lambda: "RUNNING" in ws.statuses(contract.KIND_TEACHER), "the teacher run started", proc)
        time.sleep(1.0)  # mid-epoch
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    teacher_id = next(t[contract.TAG_TEACHER_ID] for k, _, _, t in ws.runs_by_kind() if k == contract.KIND_TEACHER)
    # The window in which save_pretrained writes <id>.tmp<pid> is too short to hit reliably: plant
    # what a kill there leaves, a partial weights file in a folder named after a dead process.
    stale = ws.runs / "teachers" / f"{teacher_id}.tmp{proc.pid}"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "model.safetensors").write_bytes(b"\0" * 4096)
    before = ws.statuses(contract.KIND_TEACHER)
    result = ws.train()
    expect(out, result.returncode == 0, f"rerun exit {result.returncode}: {result.stderr[-300:]}")
    after = sorted(ws.statuses(contract.KIND_TEACHER))
    expect(out, after == ["FINISHED", "KILLED"], f"teacher runs after recovery {after}")
    out.outcome = f"teacher run {before} -> {after}; stale .tmp removed; rerun exit {result.returncode}"
    return ws.check(out)


def _interrupt_mid_cell(base, data, warm, sig: int, label: str, code: int) -> Outcome:
    out = Outcome(label)
    ws = Workspace(base, f"signal{sig}", data)
    seed_teacher(ws, warm)
    proc = ws.start()
    ws.wait_for(lambda: ws.statuses(contract.KIND_CELL).count("FINISHED") >= 1 and "RUNNING" in ws.statuses(contract.KIND_CELL),
                "one cell finished and one mid-training", proc)
    proc.send_signal(sig)  # to the main process only, as `timeout` and a scheduler do
    rc = proc.wait(timeout=120)
    stderr = proc.stderr.read()
    cells = ws.statuses(contract.KIND_CELL)
    expect(out, rc == code, f"exit {rc}, want {code}")
    expect(out, "RUNNING" not in cells and "KILLED" in cells and "FAILED" not in cells,
           f"cell runs right after the signal: {sorted(cells)}; stderr: {stderr[-600:]}")
    expect(out, "interrupted" in stderr, "no 'interrupted' line on stderr")
    # SIGTERM (not Ctrl-C) during training is held to the batch's end and checkpointed there
    held = any((ws.runs / "checkpoints").glob(f"*/{CHECKPOINT_META}"))
    result = ws.train("--skip-failed")  # an interrupted cell is not a failed one: it is retrained
    expect(out, result.returncode == 0, f"rerun exit {result.returncode}: {result.stderr[-300:]}")
    if held:
        expect(out, "resume from their checkpoint" in result.stdout + result.stderr,
               "a checkpoint was written on the signal, but the rerun did not resume from it")
    out.outcome = (f"exit {rc}; interrupted cell ended KILLED ({cells.count('KILLED')}), "
                   + ("checkpointed at the batch's end and resumed" if held else "retrained")
                   + " by `run --skip-failed`")
    return ws.check(out)


#: How many times "3a. SIGTERM mid-cell" repeats (``STUDY_FAULTS_REPEAT``): its failure was intermittent.
SIGTERM_REPEAT = int(os.environ.get("STUDY_FAULTS_REPEAT", "3"))


def sigterm_cell(base, data, warm) -> Outcome:
    for n in range(SIGTERM_REPEAT):
        out = _interrupt_mid_cell(base / f"sigterm{n}", data, warm, signal.SIGTERM, "3a. SIGTERM mid-cell", 143)
        if not out.ok:
            out.outcome += f" (attempt {n + 1} of {SIGTERM_REPEAT})"
            return out
    out.outcome += f" ({SIGTERM_REPEAT} times)"
    return out


def ctrl_c_cell(base, data, warm) -> Outcome:
    return _interrupt_mid_cell(base, data, warm, signal.SIGINT, "3b. Ctrl-C (SIGINT) mid-cell", 130)


def _damaged_teacher(base, data, warm, label: str, damage) -> Outcome:
    out = Outcome(label)
    ws = Workspace(base, label.split(".")[0] + "_damaged", data)
    seed_teacher(ws, warm)
    folder = ws.teacher_dirs()[0]
    damage(folder / "model.safetensors")
    first = ws.train()
    cells = ws.statuses(contract.KIND_CELL)
    expect(out, first.returncode == 1, f"run on the damaged teacher exit {first.returncode}")
    expect(out, cells.count("FAILED") == N_CELLS and "FINISHED" not in cells,
           f"cell runs on the damaged teacher: {sorted(cells)}")
    expect(out, str(folder) in first.stdout + first.stderr, "the error does not name the folder")
    status = ws.study("status", "--grid", str(ws.grid))
    expect(out, f"failed {N_CELLS}" in status.stdout, f"status does not count them failed: {status.stdout!r}")
    shutil.rmtree(folder)  # what the message says to do
    second = ws.train()
    expect(out, second.returncode == 0, f"rerun exit {second.returncode}: {second.stderr[-300:]}")
    out.outcome = (f"refused: {N_CELLS} cells FAILED naming the folder, status 'failed {N_CELLS}'; "
                   "folder deleted, rerun retrains teacher and cells")
    return ws.check(out)


def _zero_middle(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 4)
        f.write(b"\0" * (size // 2))


def zeroed_teacher(base, data, warm) -> Outcome:
    return _damaged_teacher(base, data, warm, "4a. teacher weights zeroed (half the file)", _zero_middle)


def truncated_teacher(base, data, warm) -> Outcome:
    return _damaged_teacher(base, data, warm, "4b. teacher weights truncated",
                            lambda p: os.truncate(p, p.stat().st_size // 3))


def store_deleted(base, data, warm) -> Outcome:
    out = Outcome("5. store deleted, teachers kept")
    ws = Workspace(base, "store_deleted", data)
    seed_teacher(ws, warm)
    first = ws.train()
    expect(out, first.returncode == 0, f"first run exit {first.returncode}")
    for p in [ws.db, ws.runs / "mlartifacts"]:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    second = ws.train()
    expect(out, second.returncode == 0, f"rerun exit {second.returncode}: {second.stderr[-300:]}")
    teachers = [t for k, _, s, t in ws.runs_by_kind() if k == contract.KIND_TEACHER and s == "FINISHED"]
    expect(out, len(teachers) == 1 and contract.TAG_RESTORED_FROM in teachers[0],
           f"teacher record not restored: {teachers}")
    out.outcome = "teacher record restored (tag study.restored_from); cells retrained against it"
    return ws.check(out)


def teacher_prep_failure(base, data, warm) -> Outcome:
    out = Outcome("6. teacher cannot be prepared (teacher.json garbled)")
    ws = Workspace(base, "prep_failure", data)
    seed_teacher(ws, warm)
    folder = ws.teacher_dirs()[0]
    (folder / "teacher.json").write_text("{not json")
    first = ws.train()
    status = ws.study("status", "--grid", str(ws.grid))
    expect(out, first.returncode == 1, f"run exit {first.returncode}")
    expect(out, f"failed {N_CELLS}" in status.stdout and "pending 0" in status.stdout,
           f"status: {status.stdout.strip()!r}")
    shutil.rmtree(folder)
    second = ws.train()
    expect(out, second.returncode == 0, f"rerun exit {second.returncode}: {second.stderr[-300:]}")
    out.outcome = f"status shows 'failed {N_CELLS}, pending 0' (was pending); recovered after deleting the folder"
    return ws.check(out)


def copied_store(base, data, warm) -> Outcome:
    out = Outcome("7. runs/ copied elsewhere, then written")
    ws = Workspace(base, "copy_a", data)
    seed_teacher(ws, warm)
    folder = ws.teacher_dirs()[0]
    _zero_middle(folder / "model.safetensors")  # so that every cell writes an error artifact
    ws.train()
    copy = Workspace(base, "copy_b", data)
    shutil.rmtree(copy.runs, ignore_errors=True)
    shutil.copytree(ws.runs, copy.runs)
    original = sorted(str(p.relative_to(ws.runs)) for p in ws.runs.rglob("*"))
    again = copy.train()  # the copy's cells fail again (same damaged teacher) and log error.txt
    expect(out, again.returncode == 1, f"run in the copy exit {again.returncode}")
    shutil.rmtree(copy.teacher_dirs()[0])
    final = copy.train()
    expect(out, final.returncode == 0, f"recovery in the copy exit {final.returncode}: {final.stderr[-300:]}")
    now = sorted(str(p.relative_to(ws.runs)) for p in ws.runs.rglob("*"))
    expect(out, now == original, f"{len(set(now) - set(original))} new file(s) in the original runs/")
    in_copy = list((copy.runs / "mlartifacts").rglob("error.txt"))
    expect(out, len(in_copy) == 2 * N_CELLS, f"{len(in_copy)} error.txt in the copy, want {2 * N_CELLS}")
    con = sqlite3.connect(copy.db)
    uris = [u for (u,) in con.execute("SELECT artifact_uri FROM runs")]
    con.close()
    elsewhere = [u for u in uris if not u.startswith(copy.runs.as_uri())]
    expect(out, not elsewhere, f"{len(elsewhere)} run(s) of the copy keep artifacts elsewhere")
    out.outcome = "all artifacts of the copy written inside it; the original folder unchanged"
    return copy.check(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
        return True
    except Exception:
        return False


def _processes_with(text: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def ui_stopped(base, data, warm) -> Outcome:
    out = Outcome("8. `study ui` stopped by its PID (SIGTERM)")
    ws = Workspace(base, "ui", data)
    port = _free_port()
    proc = subprocess.Popen(ws.cmd("ui", "--port", str(port)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ws.env(), cwd=ws.dir)
    try:
        ws.wait_for(lambda: _serving(port), "the UI to serve", None, limit=120)
        before = len(_processes_with(f"--port {port}"))
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        deadline = time.time() + 15
        while time.time() < deadline and (_serving(port) or _processes_with(f"--port {port}")):
            time.sleep(0.2)
        left = _processes_with(f"--port {port}")
        expect(out, not _serving(port), "the port still answers")
        expect(out, not left, f"{len(left)} server process(es) left: {left}")
        out.outcome = f"{before} server processes; after SIGTERM: exit {rc}, {len(left)} left, port closed"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _processes_with(f"--port {port}"):  # what this scenario started and left serving
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return ws.check(out, trains=False)


def full_disk_teacher(base, data, warm) -> Outcome:
    """``runs/`` on a 40 MiB tmpfs: saving the teacher (~90 MB) fails with ENOSPC. Needs root."""
    out = Outcome("10. full disk while the teacher is saved")
    ws = Workspace(base, "enospc", data)
    ws.runs.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(ws.runs)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        out.outcome = f"skipped: cannot mount a tmpfs ({mounted.stderr.strip()[:80]})"
        return out
    try:
        result = ws.train()
        cells = ws.statuses(contract.KIND_CELL)
        stopped = [ln for ln in result.stderr.splitlines() if ln.startswith("stopped")]
        expect(out, result.returncode == 75, f"exit {result.returncode}, want 75: {result.stderr[-300:]}")
        expect(out, len(stopped) == 1 and "no space left on device" in stopped[0],
               f"no one-line 'stopped ... no space left on device': {result.stderr[-300:]}")
        expect(out, "FAILED" not in cells and "RUNNING" not in cells, f"cell runs after the fault: {sorted(cells)}")
        subprocess.run(["mount", "-o", "remount,size=600m", str(ws.runs)], check=True)  # space freed
        rerun = ws.train()
        expect(out, rerun.returncode == 0, f"rerun exit {rerun.returncode}: {rerun.stderr[-300:]}")
        out.outcome = f"exit {result.returncode}, cells left pending ({sorted(set(cells))}); after freeing space the rerun trains all"
        return ws.check(out)
    finally:
        subprocess.run(["umount", "-l", str(ws.runs)], capture_output=True)


def _start_server(ws: Workspace, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(ws.cmd("server", "--port", str(port), "--workers", "1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ws.env(), cwd=ws.dir)
    ws.wait_for(lambda: _serving(port), "the tracking server to serve", proc, limit=120)
    return proc


def _kill_port(port: int) -> None:
    for pid in _processes_with(f"--port {port}"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _server_fault(base, data, warm, label: str, name: str, freeze: bool) -> Outcome:
    """The MLflow server SIGKILLed (``freeze`` False: its port closes) or frozen with SIGSTOP
    (``freeze``: its port open, no answer, as a hung or swapped-out server) while a cell trains:
    the driver reports it in one line within a minute and stops with exit 75, the cell pending;
    with the server restarted on the same store (or thawed with SIGCONT), the rerun finishes every
    cell once."""
    out = Outcome(label)
    ws = Workspace(base, name, data)
    seed_teacher(ws, warm)
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_server(ws, port)
    frozen: list[int] = []
    try:
        proc = ws.start(MLFLOW_TRACKING_URI=uri)
        ws.wait_for(lambda: "RUNNING" in ws.statuses(contract.KIND_CELL), "a cell mid-training", proc)
        mlflow = [p for p in _processes_with(f"--port {port}") if p != server.pid]
        t0 = time.time()
        for pid in mlflow:
            os.kill(pid, signal.SIGSTOP if freeze else signal.SIGKILL)
        frozen = mlflow if freeze else []
        rc = proc.wait(timeout=240)
        waited = time.time() - t0
        stderr = proc.stderr.read()
        stopped = [ln for ln in stderr.splitlines() if ln.startswith("stopped")]
        expect(out, rc == 75, f"exit {rc}, want 75: {stderr[-300:]}")
        expect(out, uri in stderr and "stopped answering" in stderr, f"no line naming {uri}: {stderr[-300:]}")
        expect(out, len(stopped) == 1 and uri in stopped[0], f"no one line naming {uri}: {stderr[-300:]}")
        expect(out, waited <= 60, f"the server was reported after {waited:.0f} s, not within a minute")
        if freeze:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
            frozen = []
        else:
            server.wait(timeout=60)
            server = _start_server(ws, port)
        rerun = subprocess.run(ws.run_args(), capture_output=True, text=True, timeout=900,
                               env=ws.env(MLFLOW_TRACKING_URI=uri), cwd=ws.dir)
        expect(out, rerun.returncode == 0, f"rerun exit {rerun.returncode}: {rerun.stderr[-300:]}")
        out.outcome = (f"driver exit {rc} after {waited:.0f} s; "
                       f"{'thawed, the rerun' if freeze else 'rerun on the restarted server'} exit {rerun.returncode}")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        _kill_port(port)
    return ws.check(out)


def server_killed(base, data, warm) -> Outcome:
    return _server_fault(base, data, warm, "11. tracking server SIGKILLed mid-cell, restarted", "server_killed",
                         freeze=False)


def server_frozen(base, data, warm) -> Outcome:
    return _server_fault(base, data, warm, "11b. tracking server frozen mid-cell, thawed", "server_frozen",
                         freeze=True)


def server_wrapper_killed(base, data, warm) -> Outcome:
    """``study server`` SIGKILLed: its guard stops the MLflow server; the port is free again."""
    out = Outcome("12. `study server` SIGKILLed: no MLflow left")
    ws = Workspace(base, "server_sigkill", data)
    port = _free_port()
    server = _start_server(ws, port)
    try:
        before = len(_processes_with(f"--port {port}"))
        server.send_signal(signal.SIGKILL)
        server.wait()
        deadline = time.time() + 30
        while time.time() < deadline and (_serving(port) or _processes_with(f"--port {port}")):
            time.sleep(0.2)
        left = _processes_with(f"--port {port}")
        expect(out, not _serving(port), "the port still answers")
        expect(out, not left, f"{len(left)} MLflow process(es) left: {left}")
        again = _start_server(ws, port)  # the port is free for the next `study server`
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=60)
        out.outcome = f"{before} server processes; after SIGKILL of `study server`: {len(left)} left; restart works"
    finally:
        _kill_port(port)
    return ws.check(out, trains=False)


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line on stderr naming the value or file and line, nothing trained or logged.


def _bad_data(data: Path, target: Path, task: str, edit) -> Path:
    glue = target / "glue"
    for name in ("SST-2", "STS-B"):
        (glue / name).mkdir(parents=True)
        src = data / "glue" / name
        shutil.copy(src / "dev.tsv", glue / name / "dev.tsv")
        lines = (src / "train.tsv").read_bytes().split(b"\n")[:200]
        (glue / name / "train.tsv").write_bytes(b"\n".join(lines) + b"\n")
    edit(glue / task / "train.tsv")
    return target


def _header_only(p: Path) -> None:
    p.write_bytes(p.read_bytes().split(b"\n")[0] + b"\n")


def _latin1_byte(p: Path) -> None:
    lines = p.read_bytes().split(b"\n")
    lines[41] = lines[41].replace(b"e", b"\xe9", 1)
    p.write_bytes(b"\n".join(lines))


def _sts_not_a_number(p: Path) -> None:
    lines = p.read_text().split("\n")
    fields = lines[9].split("\t")
    fields[-1] = "n/a"
    lines[9] = "\t".join(fields)
    p.write_text("\n".join(lines))


def bad_inputs(base: Path, data: Path, workers: int = 2) -> list[Outcome]:
    """Each refusal: exit 2, one line, naming what it should, before anything is trained.

    The refusals are independent processes, each mostly import time (about 8 s of a 2-core CPU for
    ``study run``), so they run ``workers`` at a time; rows come back in the order listed."""
    jobs = []  # (label, command, env, workspace, names, time limit in s or None)

    for i, (label, task, edit, names) in enumerate([
        ("bad input: train file with only a header", "SST-2", _header_only, ["SST-2/train.tsv", "only a header"]),
        ("bad input: non-UTF-8 byte in a train file", "SST-2", _latin1_byte, ["SST-2/train.tsv", "line 42"]),
        ("bad input: STS-B score that is not a number", "STS-B", _sts_not_a_number, ["STS-B/train.tsv", "line 10", "'n/a'"]),
    ]):
        ws = Workspace(base, f"bad_data{i}", data)
        bad = _bad_data(data, ws.dir / "data", task, edit)
        if task == "STS-B":
            ws.grid.write_text(yaml.safe_dump(dict(GRID, axes=dict(GRID["axes"], dataset=["stsb"]))))
        cmd = ws.cmd("run", "--grid", str(ws.grid), "--data-dir", str(bad), "--device", "cpu")
        jobs.append((label, cmd, ws.env(), ws, names, None))

    ws = Workspace(base, "bad_csv", data)
    csvs = {"inf metric": ("a,b,score\nx,1,0.5\ny,2,inf\n", ["inf.csv", "line 3", "'inf'"]),
            "empty CSV": ("", ["empty.csv", "empty"]),
            "garbage CSV": (os.urandom(2048), ["garbage.csv"])}
    for label, (content, names) in csvs.items():
        path = ws.dir / f"{label.split()[0]}.csv"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cmd = ws.cmd("analyze", "--csv", str(path), "--metric", "score", "--factors", "a")
        jobs.append((f"bad input: analyze, {label}", cmd, ws.env(), ws, names, None))

    ws = Workspace(base, "runs_is_file", data)
    ws.runs.write_text("not a folder")
    jobs.append(("bad input: runs/ is a file", ws.run_args(), ws.env(), ws, [str(ws.runs), "not a directory"], None))

    for label, uri, names in [("unreachable MLFLOW_TRACKING_URI", "http://127.0.0.1:9", ["http://127.0.0.1:9", "connection refused"]),
                              ("malformed MLFLOW_TRACKING_URI", "http//nohost", ["http//nohost", "allowed"])]:
        ws = Workspace(base, "uri" + str(len(jobs)), data)
        jobs.append((f"bad input: {label}", ws.run_args(), ws.env(MLFLOW_TRACKING_URI=uri), ws, names, 30))

    def refusal(job) -> Outcome:
        label, cmd, env, ws, names, limit_s = job
        t0 = time.time()
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ws.dir, timeout=300)
        took = time.time() - t0
        out = Outcome(label)
        line = result.stderr.strip()
        expect(out, result.returncode == 2, f"exit {result.returncode}")
        expect(out, one_line(result.stderr), f"stderr is not one line: {result.stderr[-400:]!r}")
        for name in names:
            expect(out, name in line, f"the message does not name {name!r}: {line!r}")
        trained = [k for k, _, _, _ in ws.runs_by_kind()]
        expect(out, not trained and not (ws.runs / "teachers").exists(), f"something was logged: {trained}")
        if limit_s is not None:
            expect(out, took < limit_s, f"took {took:.1f} s (limit {limit_s} s)")
        out.outcome = line[:200]
        return out

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(refusal, jobs))
    rows.extend(read_only_store(base, data))
    return rows


def _without_write_permission() -> list[str] | None:
    """A command prefix under which this user cannot write a read-only folder (root ignores
    permissions unless CAP_DAC_OVERRIDE is dropped), or None when that cannot be arranged."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def read_only_store(base: Path, data: Path) -> list[Outcome]:
    prefix = _without_write_permission()
    if prefix is None:
        return [Outcome("bad input: read-only runs/", outcome="skipped: running as root without setpriv")]
    ws = Workspace(base, "read_only", data)
    seed = ws.study("run", "--grid", str(ws.grid), "--dry-run")  # creates the store, trains nothing
    rows = []
    try:
        for p in [ws.runs, *ws.runs.iterdir()]:
            p.chmod(p.stat().st_mode & 0o555)
        out = Outcome("bad input: read-only runs/ (study run)")
        result = subprocess.run(prefix + ws.run_args(), capture_output=True, text=True, env=ws.env(),
                                cwd=ws.dir, timeout=300)
        expect(out, seed.returncode == 0, f"could not create the store: {seed.stderr[-200:]}")
        expect(out, result.returncode == 2 and one_line(result.stderr) and "read-only" in result.stderr,
               f"exit {result.returncode}: {result.stderr.strip()[-300:]!r}")
        out.outcome = result.stderr.strip()[:200]
        rows.append(out)
        out = Outcome("read-only store: study status works")
        result = subprocess.run(prefix + ws.cmd("status", "--grid", str(ws.grid)), capture_output=True,
                                text=True, env=ws.env(), cwd=ws.dir, timeout=300)
        expect(out, result.returncode == 0 and f"pending {N_CELLS}" in result.stdout,
               f"exit {result.returncode}: {(result.stdout + result.stderr).strip()[-300:]!r}")
        out.outcome = f"exit {result.returncode}: " + " ".join(result.stdout.split())[:120]
        rows.append(out)
    finally:
        for p in [ws.runs, *ws.runs.iterdir()]:
            p.chmod(p.stat().st_mode | 0o200)
    return rows


#: A group of 8 cells (4 objectives x 2 students, one seed) with 20 steps each: the checkpoint scenarios.
GROUP8 = dict(GRID, name="faults8", group_size=8,
              axes=dict(GRID["axes"], student=["L2_H128", "L1_H128"],
                        objective=["ce", "logit_kd", "hidden_mse", "attention_kl"], seed=[0]),
              training=dict(GRID["training"], epochs=2, max_train_examples=160))
GROUP8_STEPS = 20  # 160 examples / batch 16 x 2 epochs


def _group8(base: Path, name: str, data: Path, warm: Path | None) -> Workspace:
    ws = Workspace(base, name, data)
    ws.grid.write_text(yaml.safe_dump(GROUP8))
    seed_teacher(ws, warm)
    return ws


def _checkpoint_steps(ws: Workspace) -> list[int]:
    steps = []
    for record in (ws.runs / "checkpoints").glob("*/checkpoint.json"):
        try:
            steps.append(json.loads(record.read_text())["step"])
        except (OSError, ValueError, KeyError):
            pass  # being replaced
    return steps


def _results(ws: Workspace) -> dict[str, tuple[float, tuple]]:
    """cell id -> (dev score, its train_loss values by step) of the FINISHED cell runs, read with sqlite3."""
    finished = {r: t[contract.TAG_CELL_ID] for k, r, s, t in ws.runs_by_kind()
                if k == contract.KIND_CELL and s == "FINISHED"}
    con = sqlite3.connect(f"file:{ws.db}?mode=ro", uri=True, timeout=30)
    try:
        out = {}
        for run_id, cell_id in finished.items():
            score = con.execute("SELECT value FROM latest_metrics WHERE run_uuid=? AND key='dev_score'",
                                (run_id,)).fetchone()[0]
            losses = tuple(con.execute("SELECT step, value FROM metrics WHERE run_uuid=? AND key='train_loss' "
                                       "ORDER BY step", (run_id,)).fetchall())
            out[cell_id] = (score, losses)
        return out
    finally:
        con.close()


_REFERENCE8: dict[tuple[Path, str], dict] = {}


def _uninterrupted8(base: Path, data: Path, warm: Path | None, threads: str = "") -> dict[str, tuple[float, tuple]]:
    """The 8-cell group trained once without a break or a checkpoint (once per suite folder), on
    ``threads`` intra-op threads (``OMP_NUM_THREADS``; empty: torch's default). CPU results are
    bit-identical run to run only at the same thread count: a Ray task with ``--num-cpus 1`` runs
    on one thread."""
    if (base, threads) not in _REFERENCE8:
        ws = _group8(base, f"group8_reference{threads}", data, warm)
        result = subprocess.run(ws.run_args("--checkpoint-every", "0"), capture_output=True, text=True, timeout=900,
                                env=ws.env(**({"OMP_NUM_THREADS": threads} if threads else {})), cwd=ws.dir)
        if result.returncode != 0:
            raise RuntimeError(f"the uninterrupted group failed: {result.stderr[-500:]}")
        _REFERENCE8[(base, threads)] = _results(ws)
    return _REFERENCE8[(base, threads)]


def kill_at_80_percent(base, data, warm) -> Outcome:
    """SIGKILL a group of 8 once its checkpoint is at 80% of its steps; the rerun resumes from it and
    every cell ends bit-identical (dev score and every step's loss) to an uninterrupted run."""
    out = Outcome("13. SIGKILL at 80% of a group of 8 (checkpointed)")
    reference = _uninterrupted8(base, data, warm)
    ws = _group8(base, "kill80", data, warm)
    proc = ws.start("--checkpoint-every", "0.01")
    try:
        ws.wait_for(lambda: len(_checkpoint_steps(ws)) == 8 and min(_checkpoint_steps(ws)) >= 0.8 * GROUP8_STEPS,
                    "the group's checkpoint at 80% of its steps", proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    at = min(_checkpoint_steps(ws))
    t0 = time.time()
    result = ws.train()
    took = time.time() - t0
    expect(out, result.returncode == 0, f"rerun exit {result.returncode}: {result.stderr[-300:]}")
    expect(out, "8 cell(s) resume from their checkpoint" in result.stdout + result.stderr,
           "the rerun did not resume the 8 cells from their checkpoint")
    got = _results(ws)
    same = sum(got.get(c) == r for c, r in reference.items())
    expect(out, len(reference) == 8 and same == 8,
           f"{same} of {len(reference)} cells bit-identical to the uninterrupted run")
    expect(out, not list((ws.runs / "checkpoints").iterdir()), "checkpoints left after the cells finished")
    out.outcome = (f"killed with the checkpoint at step {at} of {GROUP8_STEPS}; rerun {took:.0f} s resumed the group, "
                   f"{same}/8 cells bit-identical to an uninterrupted run")
    return ws.check(out, cells=8)


def kill_during_checkpoint_write(base, data, warm) -> Outcome:
    """SIGKILL while a checkpoint is being written (a ``.tmp`` file exists) after a whole one: the
    rerun resumes from the previous checkpoint (or the new one, where its commit record was written);
    every cell finishes once."""
    out = Outcome("14. SIGKILL during a checkpoint's write")
    ws = _group8(base, "kill_write", data, warm)
    proc = ws.start("--checkpoint-every", "0.001")
    folder = ws.runs / "checkpoints"
    try:
        ws.wait_for(lambda: len(_checkpoint_steps(ws)) == 8 and any(folder.glob("*/.*.tmp*")),
                    "a checkpoint being written after a whole one", proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = len(list(folder.glob("*/.*.tmp*")))
    clean = ws.study("clean")
    expect(out, clean.returncode == 0 and not list(folder.glob("*/.*.tmp*")),
           f"study clean exit {clean.returncode}, temporary files left: {clean.stdout[-300:]}{clean.stderr[-300:]}")
    result = ws.train()
    said = result.stdout + result.stderr
    expect(out, result.returncode == 0, f"rerun exit {result.returncode}: {result.stderr[-300:]}")
    expect(out, "resume from their checkpoint" in said, f"the rerun did not resume: {said[-300:]}")
    out.outcome = (f"killed with {left} partial file(s); `study clean` removed them; rerun "
                   + ("resumed" if "resume from their checkpoint" in said else "started over") + ", all cells once")
    return ws.check(out, cells=8)


def full_disk_checkpoint(base, data, warm) -> Outcome:
    """``--checkpoint-dir`` on a 24 MiB tmpfs: the first checkpoint (~400 MB) fails with ENOSPC. Needs root."""
    out = Outcome("15. full disk while a checkpoint is saved")
    ws = _group8(base, "enospc_checkpoint", data, warm)
    ckpt = ws.dir / "ckpt"
    ckpt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(ckpt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        out.outcome = f"skipped: cannot mount a tmpfs ({mounted.stderr.strip()[:80]})"
        return out
    try:
        result = ws.train("--checkpoint-every", "0.005", "--checkpoint-dir", str(ckpt))
        cells = ws.statuses(contract.KIND_CELL)
        stopped = [ln for ln in result.stderr.splitlines() if ln.startswith("stopped")]
        expect(out, result.returncode == 75, f"exit {result.returncode}, want 75: {result.stderr[-300:]}")
        expect(out, len(stopped) == 1 and "no space left on device" in stopped[0],
               f"no one-line 'stopped ... no space left on device': {result.stderr[-300:]}")
        expect(out, "FAILED" not in cells and "RUNNING" not in cells, f"cell runs after the fault: {sorted(cells)}")
        subprocess.run(["mount", "-o", "remount,size=1200m", str(ckpt)], check=True)  # space freed
        rerun = ws.train("--checkpoint-every", "1", "--checkpoint-dir", str(ckpt))
        expect(out, rerun.returncode == 0, f"rerun exit {rerun.returncode}: {rerun.stderr[-300:]}")
        out.outcome = (f"exit {result.returncode}, cells left pending ({sorted(set(cells))}); after freeing space "
                       "the rerun trains all")
        return ws.check(out, cells=8)
    finally:
        subprocess.run(["umount", "-l", str(ckpt)], capture_output=True)


def ray_worker_killed(base, data, warm) -> Outcome:
    """``--executor ray`` on a local cluster: the Ray worker process training the group is SIGKILLed
    after a checkpoint; Ray retries the task, whose worker resumes the cells from it, and every cell
    ends bit-identical to an uninterrupted run."""
    out = Outcome("16. Ray worker SIGKILLed mid-group, retried")
    reference = _uninterrupted8(base, data, warm, threads="1")  # a Ray task of one CPU runs one thread
    ws = _group8(base, "ray_retry", data, warm)
    proc = ws.start("--executor", "ray", "--local-cpus", "2", "--checkpoint-every", "0.01")
    try:
        ws.wait_for(lambda: len(_checkpoint_steps(ws)) == 8 and min(_checkpoint_steps(ws)) >= 0.4 * GROUP8_STEPS,
                    "the group's checkpoint at 40% of its steps", proc, limit=400)
        at = min(_checkpoint_steps(ws))
        victims = _processes_with("ray::unit")
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    expect(out, bool(victims), "no Ray worker process ('ray::unit ...') was found to kill")
    expect(out, rc == 0, f"driver exit {rc}: {stderr[-300:]}")
    resumed = [t.get(contract.TAG_RESUMED_FROM, "") for k, _, s, t in ws.runs_by_kind()
               if k == contract.KIND_CELL and s == "FINISHED"]
    expect(out, len(resumed) == 8 and all(resumed), f"finished runs resumed from a checkpoint: {resumed}")
    got = _results(ws)
    same = sum(got.get(c) == r for c, r in reference.items())
    expect(out, same == 8, f"{same} of {len(reference)} cells bit-identical to the uninterrupted run")
    out.outcome = (f"worker killed with the checkpoint at step {at} of {GROUP8_STEPS}; the retried task resumed "
                   f"({resumed[0] if resumed else '-'}), {same}/8 cells bit-identical")
    return ws.check(out, cells=8)


SCENARIOS = {
    "concurrent": concurrent_workers,
    "kill_teacher": sigkill_teacher,
    "sigterm": sigterm_cell,
    "ctrl_c": ctrl_c_cell,
    "zeroed_teacher": zeroed_teacher,
    "truncated_teacher": truncated_teacher,
    "store_deleted": store_deleted,
    "prep_failure": teacher_prep_failure,
    "copied_store": copied_store,
    "ui": ui_stopped,
    "full_disk": full_disk_teacher,
    "server_killed": server_killed,
    "server_frozen": server_frozen,
    "server_sigkill": server_wrapper_killed,
    "kill_80": kill_at_80_percent,
    "kill_write": kill_during_checkpoint_write,
    "full_disk_checkpoint": full_disk_checkpoint,
    "ray_retry": ray_worker_killed,
}


def warm_teacher(base: Path, data: Path) -> Path:
    """Fine-tune the grid's teacher once (by running one cell) and return its cache folder."""
    ws = Workspace(base, "warm", data)
    ws.grid.write_text(yaml.safe_dump(dict(GRID, axes=dict(GRID["axes"], objective=["ce"], seed=[0]))))
    result = ws.train()
    if result.returncode != 0:
        raise RuntimeError(f"could not fine-tune the teacher: {result.stderr[-1000:]}")
    return ws.teacher_dirs()[0]


def run_suite(base: Path, data: Path, only: list[str] | None = None, bad_input: bool = True,
              report=print) -> list[Outcome]:
    """Run the scenarios (all, or those named in ``only``) and the bad-input checks; return the rows."""
    names = only or list(SCENARIOS)
    warm = None
    if any(n not in ("concurrent", "kill_teacher", "ui", "full_disk", "server_sigkill") for n in names):
        warm = warm_teacher(base, data)
    rows = []
    for name in names:
        t0 = time.time()
        try:
            row = SCENARIOS[name](base, data, warm)
        except Exception as exc:  # a scenario that breaks is a failed row, not a crashed suite
            row = Outcome(name, outcome="scenario error", problems=[f"{type(exc).__name__}: {exc}"])
        row.outcome += f" [{time.time() - t0:.0f} s]"
        report(format_row(row))
        rows.append(row)
    if bad_input and not only:
        for row in bad_inputs(base, data):
            report(format_row(row))
            rows.append(row)
    return rows


HEADER = f"{'fault':<48} {'lost':>4} {'dup':>4} {'unus':>4} {'RUN':>4} {'tmp':>4}  ok   outcome"


def format_row(row: Outcome) -> str:
    outcome = row.outcome if row.ok else "checks failed, see below" + row.outcome[row.outcome.rfind(" ["):]
    text = f"{row.fault[:48]:<48} {row.lost:>4} {row.duplicated:>4} {row.unusable:>4} {row.running:>4} " \
           f"{row.tmp_left:>4}  {'yes' if row.ok else 'NO ':<4} {outcome}"
    for p in row.problems:
        text += f"\n{'':<48}   problem: {p}"
    return text


def summary(rows: list[Outcome]) -> str:
    return (f"{len(rows)} checks, {sum(r.ok for r in rows)} passed, {sum(not r.ok for r in rows)} failed; "
            f"cells lost {sum(r.lost for r in rows)}, duplicated {sum(r.duplicated for r in rows)}, "
            f"stores left unusable {sum(r.unusable for r in rows)}, runs left RUNNING "
            f"{sum(r.running for r in rows)}, temp folders left {sum(r.tmp_left for r in rows)}")


def default_data_dir() -> Path:
    env = os.environ.get("STUDY_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="Run only these scenarios.")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="GLUE data root.")
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (default: a temp folder).")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()  # the `study` processes run in other folders
    base = args.keep or Path(tempfile.mkdtemp(prefix="kd-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    try:
        rows = run_suite(base, args.data_dir, args.only, report=lambda s: print(s, flush=True))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(summary(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
