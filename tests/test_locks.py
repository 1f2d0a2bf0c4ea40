"""Run locks: the claim protocol (``study.execution.locks``) on a real MLflow store, without
training: processes racing for one cell, holders that died on this machine or went silent on
another, heartbeats, duplicates at finish, and the executor registry's refusals.

Other machines are played by processes with another ``STUDY_NODE``; their liveness is then judged
by heartbeat only, as it would be across hosts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.core import contract
from study.core.errors import StudyConfigError
from study.execution import locks
from study.execution.executors import EXECUTORS, make_executor
from study.execution.tracking import Tracker
from study.execution.work import RunContext

ROOT = Path(__file__).resolve().parents[1]
CELL = "c0ffee"


@pytest.fixture
def tracker(isolated_runs) -> Tracker:
    return Tracker(claim_timeout_s=60)


def _lookup(tracker: Tracker, cell_id: str = CELL):
    return lambda: tracker.cell_runs(cell_id).get(cell_id, [])


def _tags(cell_id: str = CELL) -> dict[str, str]:
    return {contract.TAG_KIND: contract.KIND_CELL, contract.TAG_CELL_ID: cell_id}


def _claimer(uri: str, start_at: float, hold_s: float, env: dict[str, str]) -> subprocess.Popen:
    code = f"""
import time
from study.execution import locks
from study.execution.tracking import Tracker
t = Tracker({uri!r}, claim_timeout_s=60)
lookup = lambda: t.cell_runs({CELL!r}).get({CELL!r}, [])
time.sleep(max(0.0, {start_at} - time.time()))
got = locks.claim(t, "g", "cell", {_tags()!r}, lookup, timeout_s=60)
print(got.state, flush=True)
if got.state == "claimed":
    time.sleep({hold_s})
    locks.finish(t, got.run_id, lookup)
"""
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


@pytest.mark.slow  # spawns racing processes: about 20 s on 2 cores
def test_racing_processes_on_two_machines_claim_a_cell_once(tracker):
    """Six processes, half of them 'on another machine', claim one cell at the same instant:
    exactly one trains it, one FINISHED run, nothing left RUNNING, withdrawn claims deleted."""
    tracker.experiment_id("g")
    start_at = time.time() + 12  # every process has imported mlflow by then
    procs = [_claimer(tracker.uri, start_at, 2.0, _env(STUDY_NODE=f"node{i % 2}")) for i in range(6)]
    results = [(p.wait(timeout=120), p.stdout.read().strip(), p.stderr.read()) for p in procs]
    assert [r[0] for r in results] == [0] * 6, [r[2][-400:] for r in results]
    states = sorted(r[1] for r in results)
    assert states.count("claimed") == 1, states
    assert set(states) <= {"claimed", "busy", "done"}
    runs = _lookup(tracker)()
    assert [r.info.status for r in runs] == ["FINISHED"]  # withdrawn claims are deleted, not counted


def test_holder_that_died_on_this_machine_is_reaped_at_once(tracker):
    """A process that created its run and died (SIGKILL, OOM) leaves a RUNNING run whose pid is
    gone: the next claim marks it KILLED with the reason and takes the cell, without waiting."""
    code = (f"from study.execution.tracking import Tracker; import os; t = Tracker({tracker.uri!r}); "
            f"t.start('g', 'cell', {_tags()!r}, {{}}); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], env=_env(), timeout=120).returncode == 9
    [dead] = _lookup(tracker)()
    assert dead.info.status == "RUNNING"
    got = locks.claim(tracker, "g", "cell", _tags(), _lookup(tracker), timeout_s=3600)
    assert got.state == "claimed" and len(got.reaped) == 1 and "died before finishing" in got.reaped[0]
    dead = tracker.client.get_run(dead.info.run_id)
    assert dead.info.status == "KILLED" and "pid" in dead.data.tags[contract.TAG_ERROR]
    locks.finish(tracker, got.run_id, _lookup(tracker))


def test_study_run_reaps_dead_cell_and_stage_runs_of_cells_no_grid_names(tracker):
    """Runs a killed process left for a cell an edit of the grid dropped, and for a stage, are
    marked KILLED when the grid next runs (no claim would ever reap them); a live holder's run
    stays RUNNING."""
    from study.execution.runner import reap_dead_runs

    stage_tags = {contract.TAG_KIND: contract.KIND_STAGE, contract.TAG_STAGE_ID: "5ta9e"}
    code = (f"from study.execution.tracking import Tracker; import os; t = Tracker({tracker.uri!r}); "
            f"t.start('g', 'cell', {_tags('dropped')!r}, {{}}); t.start('stages', 'stage', {stage_tags!r}, {{}}); "
            "os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], env=_env(), timeout=120).returncode == 9
    live = tracker.start("g", "cell", _tags("alive"), {})
    assert reap_dead_runs(tracker, "g") == 2
    [dead] = _lookup(tracker, "dropped")()
    stage = tracker.runs("stages", contract.KIND_STAGE, contract.TAG_STAGE_ID, "5ta9e")["5ta9e"][0]
    assert dead.info.status == "KILLED" and stage.info.status == "KILLED"
    assert "died before finishing" in stage.data.tags[contract.TAG_ERROR]
    assert tracker.client.get_run(live).info.status == "RUNNING"
    tracker.finish(live)
    assert reap_dead_runs(tracker, "g") == 0


def _foreign_run(tracker: Tracker, heartbeat_age_s: float) -> str:
    """A RUNNING run held by a process 'on another machine' whose last heartbeat is that old."""
    tags = {**_tags(), contract.TAG_CLAIM_NODE: "elsewhere:1", contract.TAG_CLAIM_PID: "1",
            contract.TAG_CLAIM_PROCESS_START: "0", contract.TAG_CLAIM_STATE: "confirmed",
            contract.TAG_HEARTBEAT: f"{time.time() - heartbeat_age_s:.3f}"}
    run = tracker.client.create_run(tracker.experiment_id("g"), run_name="cell", tags=tags)
    return run.info.run_id


def test_live_claim_elsewhere_makes_the_cell_busy(tracker):
    _foreign_run(tracker, heartbeat_age_s=5)
    got = locks.claim(tracker, "g", "cell", _tags(), _lookup(tracker), timeout_s=60)
    assert got.state == "busy" and "elsewhere:1" in got.holder
    assert [r.info.status for r in _lookup(tracker)()] == ["RUNNING"]  # nothing created


def test_claim_with_a_stale_heartbeat_is_taken_over(tracker):
    stale = _foreign_run(tracker, heartbeat_age_s=120)
    got = locks.claim(tracker, "g", "cell", _tags(), _lookup(tracker), timeout_s=60)
    assert got.state == "claimed" and "no heartbeat from elsewhere:1" in got.reaped[0]
    assert tracker.client.get_run(stale).info.status == "KILLED"


def test_a_heartbeat_going_stale_during_a_claim_is_either_reaped_or_busy(tracker, monkeypatch):
    """The clock read once per look: a claim that read it twice (reaping, then filtering the live
    holders) saw a heartbeat just under the timeout, then just over it, neither reaped the run nor
    waited for it, and left it RUNNING beside the cell it then trained (the stale-worker test's
    intermittent failure)."""
    import types

    stale = _foreign_run(tracker, heartbeat_age_s=58.6)
    readings = iter(range(1, 1000))
    clock = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    clock.time = lambda: time.time() + next(readings)  # each reading a second later: 59.6 s, 60.6 s, ...
    monkeypatch.setattr(locks, "time", clock)
    got = locks.claim(tracker, "g", "cell", _tags(), _lookup(tracker), timeout_s=60)
    status = tracker.client.get_run(stale).info.status
    assert (got.state, status) in (("busy", "RUNNING"), ("claimed", "KILLED")), (got.state, status)


def test_finished_cell_is_done_and_a_late_finisher_is_a_duplicate(tracker):
    got = locks.claim(tracker, "g", "cell", _tags(), _lookup(tracker))
    first = _foreign_run(tracker, heartbeat_age_s=0)
    tracker.client.set_terminated(first, "FINISHED")  # the stale-taken-over worker came back first
    assert locks.finish(tracker, got.run_id, _lookup(tracker)) == first
    mine = tracker.client.get_run(got.run_id)
    assert mine.info.status == "KILLED" and mine.data.tags[contract.TAG_DUPLICATE_OF] == first
    assert tracker.cell_status() == {CELL: "done"}
    again = locks.claim(tracker, "g", "cell", _tags(), _lookup(tracker))
    assert again.state == "done" and again.run.info.run_id == first


def test_heartbeat_renews_until_the_run_ends(tracker, monkeypatch):
    monkeypatch.setenv("STUDY_HEARTBEAT_S", "0.2")
    run_id = tracker.start("g", "cell", _tags("hb"), {})
    first = float(tracker.client.get_run(run_id).data.tags[contract.TAG_HEARTBEAT])
    time.sleep(1.5)
    second = float(tracker.client.get_run(run_id).data.tags[contract.TAG_HEARTBEAT])
    assert second > first + 0.5
    tracker.finish(run_id)
    time.sleep(0.6)
    third = float(tracker.client.get_run(run_id).data.tags[contract.TAG_HEARTBEAT])
    time.sleep(0.6)
    assert float(tracker.client.get_run(run_id).data.tags[contract.TAG_HEARTBEAT]) == third


def test_run_from_before_claims_counts_as_dead(tracker):
    run = tracker.client.create_run(tracker.experiment_id("g"), run_name="old", tags=_tags())
    assert locks.dead_reason(tracker.client.get_run(run.info.run_id), 600) is not None


def test_claim_timeout_shorter_than_three_heartbeats_is_refused(monkeypatch):
    monkeypatch.setenv("STUDY_HEARTBEAT_S", "30")
    with pytest.raises(StudyConfigError, match="at least 3 heartbeat intervals \\(90 s"):
        locks.check_claim_timeout(60)
    assert locks.check_claim_timeout(90) == 90


# --- the executor registry --------------------------------------------------------------------


def test_executor_registry_names_what_is_allowed():
    assert {"serial", "ray"} <= set(EXECUTORS)
    with pytest.raises(StudyConfigError, match="Unknown executor 'rya'. Allowed: ray, serial. Did you mean 'ray'"):
        make_executor("rya")
    with pytest.raises(StudyConfigError, match="--address does not apply to --executor serial"):
        make_executor("serial", address="10.0.0.1:6379")
    assert make_executor("serial", address=None).name == "serial"


def _ray_check(ctx_uri: str = "http://127.0.0.1:5000", device: str = "auto", **options):
    ctx = RunContext(grid="g", grid_version="v", tracking_uri=ctx_uri, data_dir=None, device=device)
    make_executor("ray", **options).check(ctx, not ctx_uri.startswith("sqlite:"))


@pytest.mark.parametrize("options, expected", [
    ({"ray_resources": "{not json"}, "--ray-resources '{not json' is not JSON"),
    ({"ray_resources": '{"A100": -1}'}, "is not allowed: an object of resource names to non-negative"),
    ({"num_gpus": -0.5}, "--num-gpus -0.5 is not allowed"),
    ({"num_cpus": 0, "num_gpus": 0}, "would start every cell at once"),
    ({"max_retries": -1}, "--max-retries -1 is not allowed"),
    ({"local_cpus": 2, "address": "127.0.0.1:6379"}, "--local-cpus sizes a local cluster"),
    ({"address": "nohostport"}, "--address 'nohostport' is not HOST:PORT"),
])
def test_bad_ray_options_are_refused(options, expected):
    pytest.importorskip("ray")
    with pytest.raises(StudyConfigError, match=expected.replace("(", "\\(").replace("{", "\\{")):
        _ray_check(**options)


def test_unreachable_ray_address_is_refused_in_seconds():
    pytest.importorskip("ray")
    t0 = time.monotonic()
    with pytest.raises(StudyConfigError, match="Cannot reach the Ray cluster at --address '127.0.0.1:9' \\(connection refused\\)"):
        _ray_check(address="127.0.0.1:9")
    assert time.monotonic() - t0 < 15


def test_ray_with_a_sqlite_store_needs_a_local_cluster():
    pytest.importorskip("ray")
    with pytest.raises(StudyConfigError, match="is a sqlite file on this machine; workers of the Ray cluster"):
        _ray_check("sqlite:////tmp/x/mlflow.db", address="127.0.0.1:9")
    _ray_check("sqlite:////tmp/x/mlflow.db")  # a local cluster started by this run: allowed


def test_ray_cuda_needs_gpus_per_task():
    pytest.importorskip("ray")
    with pytest.raises(StudyConfigError, match="--device cuda with --executor ray needs --num-gpus > 0"):
        _ray_check(device="cuda")
    _ray_check(device="cuda", num_gpus=0.5)


def test_ray_not_installed_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(StudyConfigError, match="--executor ray needs Ray, which is not installed: pip install 'kd-study\\[ray\\]'"):
        _ray_check()
