"""Faults and refusals that need no training: opening stores (concurrently, read-only, moved,
unreachable), runs ended by interruptions, teacher checksums and restored records, SIGTERM
handling, the UI's process group, and one-line refusals of bad data files and CSVs.

``tests/test_faults.py`` runs the same faults end to end on a real grid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from study.core.errors import StudyConfigError
from study.execution.interrupt import Terminated, exit_code, signals_as_interrupt
from study.execution.tracking import Tracker, relocate_artifacts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "runs"
    monkeypatch.setenv("STUDY_RUNS_DIR", str(folder))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


# --- opening the store ------------------------------------------------------------------------


@pytest.mark.slow  # four processes opening one store: several seconds on 2 cores
def test_workers_opening_a_new_store_together_all_succeed(runs):
    """Fault 1: the schema is created under the lock, so no worker sees a half-migrated store."""
    code = "from study.execution.tracking import Tracker; t = Tracker(); t.experiment_id('g'); print('ok')"
    env = dict(os.environ, PYTHONPATH=str(ROOT), STUDY_RUNS_DIR=str(runs))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [r[0] for r in results] == [0] * 4, [r[2][-500:] for r in results]
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()].count("g") == 1


def test_runs_folder_that_is_a_file_is_refused_in_one_line(runs):
    runs.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text("not a folder")
    with pytest.raises(StudyConfigError, match="is a file, not a directory") as info:
        Tracker()
    assert str(runs) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("uri, expected", [
    ("http://127.0.0.1:9", "connection refused"),
    ("foo://bar", "is not one this study can use"),
    ("http//nohost", "is not one this study can use"),
])
def test_unusable_tracking_uri_is_refused_quickly(uri, expected):
    t0 = time.monotonic()
    with pytest.raises(StudyConfigError, match=expected) as info:
        Tracker(uri)
    assert time.monotonic() - t0 < 30  # MLflow's default retries take minutes
    message = str(info.value)
    assert uri in message and "sqlite:///" in message and "\n" not in message


def test_a_moved_store_writes_artifacts_inside_itself(tmp_path, monkeypatch):
    """Fault 7: experiment and run artifact locations follow the database to its new folder."""
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("STUDY_RUNS_DIR", str(a))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker()
    old_run = tracker.start("g", "cell", {"study.kind": "cell"}, {})
    tracker.fail(old_run, RuntimeError("first"))
    assert (a / "mlartifacts" / "g" / old_run / "artifacts" / "error.txt").exists()
    a.rename(b)
    monkeypatch.setenv("STUDY_RUNS_DIR", str(b))
    tracker = Tracker()
    assert tracker.client.get_experiment_by_name("g").artifact_location == (b / "mlartifacts" / "g").as_uri()
    assert tracker.client.get_run(old_run).info.artifact_uri == (b / "mlartifacts" / "g" / old_run / "artifacts").as_uri()
    new_run = tracker.start("g", "cell", {"study.kind": "cell"}, {})
    tracker.fail(new_run, RuntimeError("second"))
    assert (b / "mlartifacts" / "g" / new_run / "artifacts" / "error.txt").exists()
    assert not a.exists()
    assert relocate_artifacts(b / "mlflow.db") == 0  # nothing left to move


# --- how runs end -----------------------------------------------------------------------------


@pytest.mark.parametrize("exc, status", [
    (KeyboardInterrupt(), "KILLED"),
    (Terminated(signal.SIGTERM), "KILLED"),
    (RuntimeError("boom"), "FAILED"),
])
def test_interruptions_end_runs_killed_and_errors_failed(runs, exc, status):
    tracker = Tracker()
    run_id = tracker.start("g", "cell", {"study.kind": "cell", "study.cell_id": "c1"}, {})
    tracker.fail(run_id, exc)
    run = tracker.client.get_run(run_id)
    assert run.info.status == status
    assert tracker.cell_status("g") == {"c1": "failed" if status == "FAILED" else "killed"}
    assert ("interrupted" in run.data.tags["study.error"]) == (status == "KILLED")


def test_sigterm_becomes_terminated_in_the_block_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        with signals_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    assert info.value.signum == signal.SIGTERM and exit_code(info.value) == 143
    assert isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before
    assert exit_code(KeyboardInterrupt()) == 130


def test_a_held_sigterm_waits_for_raise_pending_and_a_second_one_does_not():
    from study.execution import interrupt

    with pytest.raises(Terminated) as info:
        with signals_as_interrupt(), interrupt.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # held: nothing raised
            assert interrupt.pending()
            interrupt.raise_pending()  # what the checkpointer does once it has written
    assert info.value.signum == signal.SIGTERM and not interrupt.pending()
    with pytest.raises(Terminated):  # a second signal is not held
        with signals_as_interrupt(), interrupt.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(5)
    with pytest.raises(Terminated):  # still held when the block ends: raised there
        with signals_as_interrupt():
            with interrupt.held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
            pytest.fail("the held signal was not raised at the end of the block")
    with interrupt.held():  # outside signals_as_interrupt: nothing held, nothing pending
        assert not interrupt.pending()
        interrupt.raise_pending()


def test_a_held_sigterm_is_raised_anyway_after_the_grace(monkeypatch):
    from study.execution import interrupt

    monkeypatch.setattr(interrupt, "HOLD_GRACE_S", 0.3)
    t0 = time.monotonic()
    with pytest.raises(Terminated):
        with signals_as_interrupt(), interrupt.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # never reaches a batch's end
    assert 0.25 < time.monotonic() - t0 < 5


def _signal_on(tracker: Tracker, statement: str):
    """Send this process SIGTERM right after the store executes a statement starting ``statement``
    (once): a signal in the middle of a store request."""
    from sqlalchemy import event

    engine = tracker.client.wrapped._tracking_client.store.engine
    sent = []

    def after(conn, cursor, text, *args):
        if not sent and text.startswith(statement):
            sent.append(text)
            os.kill(os.getpid(), signal.SIGTERM)

    event.listen(engine, "after_cursor_execute", after)
    return sent


def test_a_sigterm_during_a_store_request_is_raised_when_it_returns(runs):
    tracker = Tracker()
    run_id = tracker.start("g", "cell", {"study.kind": "cell", "study.cell_id": "c1"}, {})
    sent = _signal_on(tracker, "INSERT INTO tags")
    with pytest.raises(Terminated):
        with signals_as_interrupt():
            tracker.client.set_tag(run_id, "x", "1")  # interrupted after its INSERT, before its COMMIT
            pytest.fail("the deferred signal was not raised when the request returned")
    assert sent and tracker.client.get_run(run_id).data.tags["x"] == "1"  # the write was not cut short


def test_a_sigterm_while_a_run_is_created_ends_that_run_killed(runs):
    tracker = Tracker()
    tracker.experiment_id("g")
    sent = _signal_on(tracker, "INSERT INTO runs")
    with pytest.raises(Terminated):
        with signals_as_interrupt():
            tracker.start("g", "cell", {"study.kind": "cell", "study.cell_id": "c1"}, {"lr": "1"})
    assert sent and tracker.cell_status("g") == {"c1": "killed"}  # created, then ended: none left RUNNING


def test_a_write_the_interruption_left_open_does_not_lock_the_run_out_of_ending(runs):
    """Ctrl-C is not deferred: raised in the middle of a write, the frames it unwinds keep the
    connection, and its sqlite lock, alive; ``fail`` drops them before it ends the run KILLED."""
    tracker = Tracker()
    run_id = tracker.start("g", "cell", {"study.kind": "cell", "study.cell_id": "c1"}, {})
    engine = tracker.client.wrapped._tracking_client.store.engine

    def interrupted_write():
        connection = engine.connect()  # what an interrupted request leaves: a write not committed
        connection.exec_driver_sql("INSERT INTO tags (key, value, run_uuid) VALUES ('y', '1', ?)", (run_id,))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        interrupted_write()
    t0 = time.monotonic()
    tracker.fail(run_id, info.value)
    assert tracker.client.get_run(run_id).info.status == "KILLED"
    assert time.monotonic() - t0 < 10  # not after sqlite's busy timeouts (20 s per attempt)


def test_ui_process_group_is_stopped_with_its_parent():
    """Fault 8: SIGTERM to ``study ui`` ends every process of the server's group."""
    from study.cli import run_process_group

    marker = "31" + str(os.getpid())  # a sleep length no other process uses
    cmd = ["sh", "-c", f"sleep {marker} & sleep {marker} & wait"]
    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    run_process_group(cmd, grace_s=5)
    assert time.monotonic() - t0 < 20
    time.sleep(0.2)
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == f"sleep {marker}"]
    assert not left


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


# --- teacher cache ----------------------------------------------------------------------------


def _teacher_folder(tmp_path: Path, sha: bool = True) -> Path:
    from study.execution.teacher import file_checksums

    folder = tmp_path / "teachers" / "abc"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    meta = {"dev_metrics": {"score": 0.75, "accuracy": 0.75}, "run_id": "r0", "wall_time_s": 3.0}
    if sha:
        meta["sha256"] = file_checksums(folder)
    (folder / "teacher.json").write_text(json.dumps(meta))
    return folder


def test_intact_teacher_verifies(tmp_path):
    from study.execution.teacher import verify_teacher

    meta = verify_teacher(_teacher_folder(tmp_path))
    assert meta["run_id"] == "r0" and set(meta["sha256"]) == {"model.safetensors", "config.json"}


@pytest.mark.parametrize("damage, named", [
    (lambda f: (f / "model.safetensors").write_bytes(b"\0" * 16384), "model.safetensors has SHA-256"),
    (lambda f: os.truncate(f / "model.safetensors", 100), "model.safetensors has SHA-256"),
    (lambda f: (f / "config.json").unlink(), "config.json is missing"),
    (lambda f: (f / "teacher.json").write_text("{not json"), "teacher.json cannot be read"),
])
def test_damaged_teacher_names_the_folder_to_delete(tmp_path, damage, named):
    from study.execution.teacher import TeacherCacheError, verify_teacher

    folder = _teacher_folder(tmp_path)
    damage(folder)
    with pytest.raises(TeacherCacheError) as info:
        verify_teacher(folder)
    message = str(info.value)
    assert named in message and f"rm -r {folder}" in message and "\n" not in message


def test_teacher_saved_before_checksums_is_adopted_then_checked(tmp_path):
    from study.execution.teacher import TeacherCacheError, verify_teacher

    folder = _teacher_folder(tmp_path, sha=False)
    assert verify_teacher(folder)["checksums_adopted"] is True
    assert "sha256" in json.loads((folder / "teacher.json").read_text())
    (folder / "config.json").write_text('{"hidden_size": 9}')
    with pytest.raises(TeacherCacheError, match="config.json"):
        verify_teacher(folder)


def test_missing_teacher_record_is_restored_once(runs):
    """Fault 5: a store without the cached teacher's run gets it back, tagged, exactly once."""
    import torch

    from study.execution.teacher import teacher_run_id

    spec = SimpleNamespace(teacher_id="t1", dataset="sst2", model="all-MiniLM-L6-v2",
                           settings={"epochs": 2, "seed": 0, "max_length": 32})
    meta = {"dev_metrics": {"score": 0.75, "accuracy": 0.75}, "run_id": "gone", "wall_time_s": 3.0}
    tracker = Tracker()
    lines: list[str] = []
    first = teacher_run_id(spec, meta, tracker, torch.device("cpu"), log=lines.append)
    run = tracker.client.get_run(first)
    assert run.info.status == "FINISHED" and run.data.tags["study.restored_from"] == "gone"
    assert run.data.tags["study.teacher_id"] == "t1" and run.data.metrics["dev_score"] == 0.75
    assert run.data.params["dataset"] == "sst2" and "restored" in lines[0]
    assert teacher_run_id(spec, meta, tracker, torch.device("cpu"), log=lines.append) == first
    assert len(lines) == 1


# --- bad data files and CSVs ------------------------------------------------------------------


def _glue(tmp_path: Path, task: str, train: bytes) -> Path:
    folder = tmp_path / task
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_bytes(train)
    (folder / "dev.tsv").write_bytes(train)
    return tmp_path


def test_train_file_with_only_a_header_is_refused(tmp_path):
    from study.tasks.catalogue import load_task

    data = _glue(tmp_path, "SST-2", b"sentence\tlabel\n")
    with pytest.raises(StudyConfigError, match="holds no examples \\(only a header line\\)") as info:
        load_task("sst2", data)
    assert "SST-2/train.tsv" in str(info.value)


def test_non_utf8_byte_names_file_and_line(tmp_path):
    from study.tasks.catalogue import load_task

    data = _glue(tmp_path, "SST-2", b"sentence\tlabel\ngood film\t1\ncaf\xe9 scene\t0\n")
    with pytest.raises(StudyConfigError, match="line 3: byte b'\\\\xe9' is not valid UTF-8") as info:
        load_task("sst2", data)
    assert "SST-2/train.tsv" in str(info.value)


@pytest.mark.parametrize("score", ["n/a", "nan", "", "5.5"])
def test_stsb_score_that_is_not_a_number_in_range_names_file_and_line(tmp_path, score):
    from study.tasks.catalogue import load_task

    rows = f"sentence1\tsentence2\tscore\na\tb\t3.2\nc\td\t{score}\n".encode()
    data = _glue(tmp_path, "STS-B", rows)
    with pytest.raises(StudyConfigError, match=f"line 3: score {score!r} is not a number in \\[0.0, 5.0\\]"):
        load_task("stsb", data)


@pytest.mark.parametrize("content, expected", [
    (b"a,b,score\nx,1,0.5\ny,2,inf\n", "is not finite: .* line 3 holds 'inf'"),
    (b"a,b,score\nx,1,0.5\ny,2,-inf\n", "is not finite: .* line 3 holds '-inf'"),
    (b"", "is empty"),
    (b"a,score\n\xff\xfe\x00garbage,1\n", "is not a UTF-8 text CSV: line 2"),
    (b'a,score\nx,0.5\n"open,0.2\n', "is not a valid CSV"),
])
def test_bad_results_csv_is_refused_naming_the_file(tmp_path, content, expected):
    from analysis.csvtable import load_csv

    path = tmp_path / "results.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as info:
        load_csv(path, "score", "a")
    assert str(path) in str(info.value)


def test_cli_refusal_is_one_line(tmp_path, runs):
    from typer.testing import CliRunner

    from study.cli import app

    path = tmp_path / "results.csv"
    path.write_bytes(b"a,b,score\nx,1,0.5\ny,2,inf\n")
    result = CliRunner().invoke(app, ["analyze", "--csv", str(path), "--metric", "score", "--factors", "a"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "line 3" in result.output


def test_study_ui_prints_each_experiments_runs_list_link(tmp_path, capsys):
    """MLflow 3.17's UI opens an experiment on its GenAI overview whatever its kind: `study ui`
    prints the link that opens each experiment's runs list instead."""
    from mlflow.tracking import MlflowClient

    from study.cli import _print_runs_links

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = MlflowClient(uri).create_experiment("smoke")
    _print_runs_links(uri, "http://127.0.0.1:5077")
    printed = capsys.readouterr().out
    assert f"smoke: http://127.0.0.1:5077/#/experiments/{exp}/runs" in printed and "Default" not in printed
