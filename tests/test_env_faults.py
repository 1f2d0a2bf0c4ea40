"""Environment faults (issue 22 §2–3): a full disk, a read-only store, a lost data folder or a dead
tracking server stops the grid with exit 75 and the cells pending; a cell's own error (a NaN, an
out-of-memory error) stays that cell's failure; interruptions never leave a run RUNNING; a
SIGKILLed ``study server`` takes its MLflow server with it. In-process and fast.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from study.core.errors import EXIT_ENVIRONMENT, EnvironmentFault
from study.core.faults import environment_fault
from study.execution.interrupt import Terminated
from study.execution.tracking import Tracker
from tests.test_e2e import TINY, write_grid


class SafetensorError(Exception):
    """Stands for safetensors' Rust error, which is not an OSError."""


@pytest.mark.parametrize("exc, what", [
    (OSError(errno.ENOSPC, "No space left on device", "/runs/teachers/x/model.safetensors"), "no space"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota"),
    (OSError(errno.EROFS, "Read-only file system", "/runs/mlflow.db"), "read-only"),
    (OSError(errno.EIO, "Input/output error"), "input/output"),
    (SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull }) (os error 28)"), "no space"),
    (RuntimeError("(sqlite3.OperationalError) database or disk is full"), "no space"),
    (FileNotFoundError(errno.ENOENT, "No such file", "/nowhere/gone/glue/SST-2/train.tsv"), "folder gone"),
])
def test_environment_errors_are_faults(exc, what):
    wrapped = RuntimeError("while saving")
    wrapped.__cause__ = exc
    for e in (exc, wrapped):
        fault = environment_fault(e)
        assert fault is not None and what in fault.what


@pytest.mark.parametrize("exc", [RuntimeError("loss is NaN"), MemoryError(),
                                 RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                 ValueError("bad label"), FileNotFoundError(errno.ENOENT, "x", __file__)])
def test_cell_errors_are_not_faults(exc):
    assert environment_fault(exc) is None


def test_permission_denied_is_a_fault_under_runs_only(isolated_runs):
    inside = PermissionError(errno.EACCES, "Permission denied", str(isolated_runs / "teachers" / "t"))
    assert environment_fault(inside).what == "permission denied"
    assert environment_fault(PermissionError(errno.EACCES, "Permission denied", "/etc/shadow")) is None


def test_an_unanswering_server_is_a_fault_only_for_a_server():
    exc = RuntimeError("API request to /api/2.0/mlflow/runs/log-batch failed: Max retries exceeded with url")
    fault = environment_fault(exc, "http://127.0.0.1:5999")
    assert "stopped answering" in fault.what and "http://127.0.0.1:5999" in fault.where
    assert environment_fault(exc, "sqlite:///x.db") is None


def test_a_fault_ends_the_run_killed_so_the_cell_stays_pending(isolated_runs):
    tracker = Tracker()
    run_id = tracker.start("g", "cell", {"study.kind": "cell", "study.cell_id": "c1"}, {})
    tracker.fail(run_id, EnvironmentFault("no space left on device", "/runs", "free space"))
    assert tracker.client.get_run(run_id).info.status == "KILLED"
    assert tracker.cell_status() == {"c1": "killed"}  # not failed: `--skip-failed` retrains it


def test_an_interruption_survives_a_store_error_while_the_run_is_ended(isolated_runs, monkeypatch):
    """The SIGTERM window: the store refusing once while the run is marked KILLED must neither
    replace the interruption (exit 1 instead of 143) nor leave the run RUNNING."""
    tracker = Tracker()
    run_id = tracker.start("g", "cell", {"study.kind": "cell", "study.cell_id": "c1"}, {})
    real, calls = tracker.client.set_terminated, []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker.client, "set_terminated", flaky)
    tracker.fail(run_id, Terminated(signal.SIGTERM))
    assert tracker.client.get_run(run_id).info.status == "KILLED"
    monkeypatch.setattr(tracker.client, "set_terminated", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("gone")))
    run2 = tracker.start("g", "cell", {"study.kind": "cell", "study.cell_id": "c2"}, {})
    tracker.fail(run2, Terminated(signal.SIGTERM))  # gives up quietly: the next run reaps it


def test_full_disk_while_the_teacher_is_saved_stops_the_grid(tmp_path, isolated_runs, shared_data, monkeypatch):
    """`study run` exits 75 with one line; no cell is FAILED; the rerun trains them all."""
    from study.cli import app
    from study.execution import work

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    monkeypatch.setattr(work, "obtain_teacher", full)
    grid = write_grid(tmp_path, TINY, "envfault")
    result = CliRunner().invoke(app, ["run", "--grid", str(grid), "--data-dir", str(shared_data),
                                      "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    line = [x for x in result.output.splitlines() if x.startswith("stopped")]
    assert len(line) == 1 and "no space left on device" in line[0] and "study run" in line[0]
    status = Tracker().cell_status()
    assert status and set(status.values()) == {"killed"}  # pending, none FAILED, none RUNNING


def test_a_full_disk_in_a_cell_stops_the_group_with_its_runs_killed(isolated_runs, monkeypatch):
    from study.execution import cell as cell_mod
    from study.grid import parse_grid

    g = parse_grid(dict(TINY, name="grp"))
    cells = g.validate()[:2]
    tracker = Tracker()
    monkeypatch.setattr(cell_mod, "group_key", lambda c: 0)
    monkeypatch.setattr(cell_mod, "open_cell_run", lambda c, *a: tracker.start(
        "grp", c.name, {"study.kind": "cell", "study.cell_id": c.cell_id}, {}))

    def prepare(*args):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/augment-cache/x")

    monkeypatch.setattr(cell_mod, "prepare_cell", prepare)
    with pytest.raises(EnvironmentFault):
        cell_mod.run_group(cells, None, None, tracker, "cpu")
    assert set(tracker.cell_status().values()) == {"killed"}


def test_sigkill_of_the_server_wrapper_stops_its_process_group():
    """`study server` SIGKILLed: the guard stops the MLflow server's whole group."""
    marker = "32" + str(os.getpid())
    code = ("import sys; from study.cli import run_process_group; "
            f"run_process_group(['sh', '-c', 'sleep {marker} & sleep {marker} & wait'], grace_s=3)")
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_sleeps(marker)) < 2:
        time.sleep(0.2)
    assert len(_sleeps(marker)) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _sleeps(marker):
        time.sleep(0.2)
    assert not _sleeps(marker)


def _sleeps(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"^sleep {marker}$"], capture_output=True, text=True).stdout
    return out.split()


def test_status_finds_a_user_grid_by_the_name_the_store_recorded(tmp_path, isolated_runs):
    """`study run --grid path/to/NAME.yaml` then `study status --grid NAME`."""
    from study.cli import app
    from study.execution.runner import plan
    from study.grid import load_grid

    path = write_grid(tmp_path, TINY, "p-enospc")
    plan(load_grid(path), Tracker())  # what `study run` records before training
    result = CliRunner().invoke(app, ["status", "--grid", "p-enospc"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "grid p-enospc: 4 cells" in result.output and "pending 4" in result.output
    path.unlink()
    result = CliRunner().invoke(app, ["status", "--grid", "p-enospc"], catch_exceptions=False)
    assert result.exit_code == 2 and "pass the file" in result.output
    result = CliRunner().invoke(app, ["status", "--grid", "never-run"], catch_exceptions=False)
    assert result.exit_code == 2 and "never-run" in result.output
