"""Checkpoints inside a group (``study.training.state``, ``study.execution.checkpoints``): a group
killed after a checkpoint resumes from it and every student ends bit-identical (CPU) to an
uninterrupted run, whatever the position (mid-epoch, an epoch's last batch); the checkpoint files
are written atomically and checked, a damaged or partial one is ignored with one warning; cells
resume together only where their checkpoints share a position.

The trainer tests use tiny BERTs on 64 real SST-2 examples with the real teacher's tokenizer (as
``tests/test_group.py``): the students cover the state a step carries (a learned projection,
mix-up's two random streams, a CRD memory bank in a non-persistent buffer, attention taps).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from study.execution import interrupt
from study.execution.checkpoints import (
    CHECKPOINT_META,
    CheckpointStore,
    GroupCheckpointer,
    orphans,
    resume_plan,
)
from study.execution.interrupt import Terminated, signals_as_interrupt
from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.tasks.catalogue import TASKS
from study.training.state import Position
from study.training.trainer import Student, TrainResult, teacher_logits, train_group
from tests.conftest import tiny_bert

CPU = torch.device("cpu")
BUDGET = {"epochs": 2, "learning_rate": 1e-3, "batch_size": 16, "warmup_ratio": 0.25,
          "weight_decay": 0.01, "max_grad_norm": 1.0}
SEED = 5
BATCHES = 4  # 64 examples in batches of 16: 4 a epoch, 8 steps in all

#: (name, slots, student width, mix-up)
STUDENTS = [
    ("hidden_mse+mixup", preset("hidden_mse"), 16, {"alpha": 0.4, "weight": 1.0}),
    ("attention_kl", preset("attention_kl"), 32, None),
    ("crd", {"prediction": {"alpha": 0.5}, "intermediate": [
        {"features": "cls", "loss": "infonce", "negatives": "memory", "bank_size": 8, "mapping": "last"}]}, 32, None),
]


@pytest.fixture(scope="module")
def setup(sst2_tiny):
    tokenizer, train_ds, dev_ds, dev_labels = sst2_tiny
    teacher = tiny_bert(tokenizer.vocab_size, layers=4, hidden=32, seed=100)
    return tokenizer, train_ds, dev_ds, dev_labels, teacher, teacher_logits(teacher, train_ds, tokenizer, CPU)


def group(setup, logs: list[list]) -> list[Student]:
    tokenizer, train_ds, _, _, teacher, cached = setup
    out = []
    for (name, slots, hidden, mixup), log in zip(STUDENTS, logs):
        model = tiny_bert(tokenizer.vocab_size, layers=2, hidden=hidden, seed=hidden)
        torch.manual_seed(7)
        objective = Distillation(slots["prediction"], slots["intermediate"], task_type="classification",
                                 student=ModelDims.of(model.config), teacher=ModelDims.of(teacher.config),
                                 train_size=len(train_ds))
        out.append(Student(model, objective, dict(BUDGET), SEED, log_metrics=log.extend, desc=name,
                           cached_teacher_logits=cached if not objective.needs_teacher_forward else None,
                           mixup=mixup))
    return out


def train(setup, students, **kw) -> list:
    tokenizer, train_ds, dev_ds, dev_labels, teacher, _ = setup
    return train_group(students, train_ds, dev_ds, dev_labels, TASKS["sst2"], tokenizer, CPU, teacher=teacher, **kw)


class Killed(BaseException):
    """Stands for SIGKILL: raised right after the checkpoint at ``at_step`` is written."""


class KillAfter:
    """A checkpointer due after every batch that writes through ``store`` and dies at ``at_step``."""

    def __init__(self, store: CheckpointStore, cell_ids: list[str], at_step: int):
        self.inner = GroupCheckpointer(store, cell_ids, every_s=0.0)
        self.at_step = at_step

    def due(self) -> bool:
        return True

    def save(self, position: Position, states: dict) -> None:
        if position.step == self.at_step:
            self.inner.save(position, states)
            raise Killed()


@pytest.fixture(scope="module")
def uninterrupted(setup):
    logs: list[list] = [[] for _ in STUDENTS]
    students = group(setup, logs)
    results = train(setup, students)
    assert all(isinstance(r, TrainResult) for r in results)
    return students, results, logs


@pytest.mark.parametrize("at_step", [2, BATCHES, BATCHES + 3])  # mid-epoch, an epoch's end, mid-epoch 2
def test_a_group_killed_after_a_checkpoint_resumes_bit_identical(setup, uninterrupted, tmp_path, at_step):
    ref_students, ref_results, ref_logs = uninterrupted
    ids = [f"cell{i}" for i in range(len(STUDENTS))]
    store = CheckpointStore(tmp_path, log=lambda line: None)
    with pytest.raises(Killed):
        train(setup, group(setup, [[] for _ in STUDENTS]), checkpointer=KillAfter(store, ids, at_step))

    plan = resume_plan(store, ids)
    assert len(plan) == 1 and plan[0][0] == [0, 1, 2]
    _, position, states = plan[0]
    assert (position.epoch, position.step) == ((at_step - 1) // BATCHES + 1, at_step)
    logs: list[list] = [[] for _ in STUDENTS]
    students = group(setup, logs)  # fresh models, as a new process builds them
    results = train(setup, students, resume=(position, states))

    for s, r, log, ref, ref_r, ref_log in zip(students, results, logs, ref_students, ref_results, ref_logs):
        assert isinstance(r, TrainResult), r
        assert all(torch.equal(v, ref.model.state_dict()[k]) for k, v in s.model.state_dict().items()), s.desc
        for k, v in ref.objective.named_buffers():  # the CRD memory bank included
            assert torch.equal(dict(s.objective.named_buffers())[k], v), (s.desc, k)
        assert r.dev_metrics == ref_r.dev_metrics and r.history == ref_r.history
        # the new run holds the whole history: earlier epochs logged again, then the rest
        assert sorted(log) == sorted(ref_log), s.desc
    # not a comparison of a run with itself: the students differ, and something was skipped
    assert len({str(r.dev_metrics) + s.desc for r, s in zip(results, students)}) == 3


class SigtermAt(GroupCheckpointer):
    """A group checkpointer (periodic checkpoints never due) that sends this process SIGTERM when
    asked at ``at_step``'s batch end, as a scheduler's preemption notice would arrive."""

    def __init__(self, store: CheckpointStore, cell_ids: list[str], at_step: int, steps: list[int]):
        super().__init__(store, cell_ids, every_s=1e9)
        self.at_step, self.steps = at_step, steps

    def due(self) -> bool:
        self.steps.append(1)
        if len(self.steps) == self.at_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().due()


def test_a_sigterm_mid_group_is_checkpointed_at_the_batch_end_and_resumes_bit_identical(setup, uninterrupted,
                                                                                        tmp_path):
    """With checkpoints on, SIGTERM is held to the batch's end: every member's state is written at
    that batch, then the group ends with ``Terminated``; the resumed group ends as if never stopped."""
    ref_students, ref_results, _ = uninterrupted
    ids = [f"cell{i}" for i in range(len(STUDENTS))]
    lines: list[str] = []
    store = CheckpointStore(tmp_path, log=lines.append)
    with pytest.raises(Terminated):
        with signals_as_interrupt(), interrupt.held():
            train(setup, group(setup, [[] for _ in STUDENTS]), checkpointer=SigtermAt(store, ids, BATCHES + 2, []))
    [(idx, position, states)] = resume_plan(store, ids)
    assert idx == [0, 1, 2] and (position.epoch, position.batches, position.step) == (2, 2, BATCHES + 2)
    assert len(lines) == 1 and "checkpoint on the interruption of 3 cell(s)" in lines[0]
    students = group(setup, [[] for _ in STUDENTS])
    results = train(setup, students, resume=(position, states))
    for s, r, ref, ref_r in zip(students, results, ref_students, ref_results):
        assert r.dev_metrics == ref_r.dev_metrics and r.history == ref_r.history
        assert all(torch.equal(v, ref.model.state_dict()[k]) for k, v in s.model.state_dict().items()), s.desc


def test_checkpoint_every_is_wall_time_and_off_at_zero(tmp_path):
    now = [0.0]
    store = CheckpointStore(tmp_path, log=lambda line: None)
    every = GroupCheckpointer(store, ["a"], every_s=300.0, clock=lambda: now[0])
    assert not every.due()
    now[0] = 299.9
    assert not every.due()
    now[0] = 300.0
    assert every.due()
    every.save(Position(1, 3, 3, torch.Generator().get_state()), {0: {"w": torch.ones(2)}})
    assert not every.due() and every.written == 1
    now[0] = 10_000.0
    assert not GroupCheckpointer(store, ["a"], every_s=0.0, clock=lambda: now[0]).due()


def _position(step: int, epoch: int = 1) -> Position:
    return Position(epoch, step, step, torch.Generator().manual_seed(step).get_state())


def test_a_checkpoint_round_trips_and_replaces_the_previous_one(tmp_path):
    store = CheckpointStore(tmp_path, log=pytest.fail)
    store.save("c", _position(3), {"w": torch.arange(4.0), "rng": (3, (1, 2), None), "log": [("k", 1.5, 2)]})
    store.save("c", _position(5), {"w": torch.arange(5.0)})
    assert sorted(p.name for p in store.folder("c").iterdir()) == [CHECKPOINT_META, "step-000000005.pt"]
    saved = store.load("c")
    assert saved.position.key == (1, 5) and torch.equal(saved.state["w"], torch.arange(5.0))
    assert torch.equal(saved.position.order_state, _position(5).order_state)
    assert store.cell_ids() == ["c"]
    store.remove("c")
    assert store.load("c") is None and store.cell_ids() == []


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "no commit record", "commit record garbled",
                                    "another cell's"])
def test_a_damaged_or_partial_checkpoint_is_ignored_with_one_warning(tmp_path, damage):
    warnings: list[str] = []
    store = CheckpointStore(tmp_path, log=warnings.append)
    pt = store.save("c", _position(4), {"w": torch.arange(64.0)})
    meta = store.folder("c") / CHECKPOINT_META
    if damage == "flip a byte":
        data = bytearray(pt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pt.write_bytes(bytes(data))
    elif damage == "truncate":
        pt.write_bytes(pt.read_bytes()[:100])
    elif damage == "no commit record":  # killed after the state file, before its record
        meta.unlink()
    elif damage == "commit record garbled":
        meta.write_text("{not json")
    else:
        other = store.save("d", _position(4), {"w": torch.arange(64.0)})
        pt.write_bytes(other.read_bytes())
        record = json.loads(meta.read_text())
        record["sha256"] = json.loads((store.folder("d") / CHECKPOINT_META).read_text())["sha256"]
        meta.write_text(json.dumps(record))
    assert store.load("c") is None
    assert len(warnings) == 1 and str(store.folder("c")) in warnings[0] and "starts over" in warnings[0]


def test_a_kill_during_a_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path, log=pytest.fail)
    store.save("c", _position(2), {"w": torch.zeros(3)})

    def dies(*args):
        raise Killed()

    monkeypatch.setattr("study.execution.checkpoints.os.replace", dies)  # killed before the rename
    with pytest.raises(Killed):
        store.save("c", _position(6), {"w": torch.ones(3)})
    monkeypatch.undo()
    saved = store.load("c")
    assert saved.position.step == 2 and torch.equal(saved.state["w"], torch.zeros(3))
    # a writer SIGKILLed mid-write leaves its temporary file: `study clean` removes it
    (store.folder("c") / ".step-000000006.pt.tmp999999999").write_bytes(b"partial")
    assert store.remove_stale_files() == 1
    assert sorted(p.name for p in store.folder("c").iterdir()) == [CHECKPOINT_META, "step-000000002.pt"]


def test_cells_resume_together_only_where_their_checkpoints_share_a_position(tmp_path):
    warnings: list[str] = []
    store = CheckpointStore(tmp_path, log=warnings.append)
    for cid, step in (("a", 4), ("b", 6), ("c", 4)):
        store.save(cid, _position(step), {"w": torch.full((2,), float(step))})
    (store.folder("d")).mkdir()  # a folder with nothing committed: partial
    plan = resume_plan(store, ["a", "b", "c", "d", "e"])
    parts = {tuple(idx): (position.step if position else None, len(states)) for idx, position, states in plan}
    assert parts == {(0, 2): (4, 2), (1,): (6, 1), (3, 4): (None, 0)}
    assert len(warnings) == 1 and "/d" in warnings[0]


@pytest.mark.slow
def test_study_run_sigkilled_mid_group_resumes_from_its_checkpoint(tmp_path, isolated_runs, shared_data,
                                                                   monkeypatch):
    """`study run` SIGKILLed after a checkpoint, then rerun: both cells of the group resume from it,
    end FINISHED once each with the dev scores and per-step losses of an uninterrupted run, their
    runs hold every step, and the checkpoints are gone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    from study.execution.tracking import Tracker
    from tests.test_e2e import TINY, cell_runs, write_grid

    spec = dict(TINY, axes=dict(TINY["axes"], student=["L2_H128"], objective=["logit_kd", "hidden_mse"],
                                initialisation=["random"]),
                training=dict(TINY["training"], epochs=2, max_train_examples=160), group_size=2)
    grid = write_grid(tmp_path, spec, "tiny_ckpt")
    Tracker()  # the store's schema first, so polling never races the worker's migration
    # Every `study run` in its own process on one thread: CPU floats are bit-identical only at the
    # same thread count (this module's fixture pins the test process to one).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "study.cli", "run", "--grid", str(grid), "--data-dir", str(shared_data),
           "--device", "cpu"]
    proc = subprocess.Popen(cmd + ["--checkpoint-every", "0.01"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    record = isolated_runs / "checkpoints"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:  # kill once both cells have a checkpoint past the first epoch
            steps = [json.loads(m.read_text())["step"] for m in record.glob(f"*/{CHECKPOINT_META}")
                     if m.stat().st_size]
            if len(steps) == 2 and min(steps) >= 12:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint past step 12 in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not [r for r in cell_runs("tiny_ckpt") if r.info.status == "FINISHED"]

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resume from their checkpoint at epoch 2" in result.stdout + result.stderr
    runs = [r for r in cell_runs("tiny_ckpt") if r.info.status == "FINISHED"]
    assert len(runs) == 2 and all(r.data.tags["study.resumed_from"].startswith("epoch 2") for r in runs)
    assert list(record.iterdir()) == []  # removed when the cells finished
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])

    def losses(run) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss"))

    resumed = {r.data.tags["study.cell_id"]: (r.data.metrics["dev_score"], losses(r)) for r in runs}
    assert all([s for s, _ in ls] == list(range(1, 21)) for _, ls in resumed.values())  # 160/16 x 2 epochs

    other = tmp_path / "uninterrupted"  # the same grid from nothing, never killed, no checkpoints
    monkeypatch.setenv("STUDY_RUNS_DIR", str(other))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other / 'mlflow.db'}")
    other.mkdir()
    env.update(STUDY_RUNS_DIR=str(other), MLFLOW_TRACKING_URI=f"sqlite:///{other / 'mlflow.db'}")
    result = subprocess.run(cmd + ["--checkpoint-every", "0"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    fresh = {r.data.tags["study.cell_id"]: (r.data.metrics["dev_score"], losses(r)) for r in cell_runs("tiny_ckpt")}
    assert fresh == resumed
    assert not (other / "checkpoints").exists() or not list((other / "checkpoints").iterdir())


def test_orphans_are_checkpoints_of_cells_that_ended_or_the_store_does_not_know(tmp_path):
    store = CheckpointStore(tmp_path, log=pytest.fail)
    for cid in ("done", "failed", "killed", "running", "unknown"):
        store.save(cid, _position(2), {"w": torch.zeros(1)})
    status = {"done": "done", "failed": "failed", "killed": "killed", "running": "running"}
    assert [c for c, _ in orphans(store, status)] == ["done", "failed", "unknown"]


def test_study_clean_removes_orphans_and_stale_files_and_keeps_what_resumes(isolated_runs):
    from tests.test_e2e import invoke

    store = CheckpointStore(isolated_runs / "checkpoints", log=pytest.fail)
    store.save("nobody", _position(2), {"w": torch.zeros(1)})
    stale = store.folder("nobody").parent / "other"
    stale.mkdir()
    (stale / ".step-000000004.pt.tmp999999999").write_bytes(b"partial")
    result = invoke("clean", "--dry-run")
    assert result.exit_code == 0 and "would remove" in result.output and store.cell_ids() == ["nobody", "other"]
    result = invoke("clean")
    assert result.exit_code == 0, result.output
    assert "2 orphan checkpoint(s) removed, 1 temporary file(s) of killed writers removed" in result.output
    assert store.load("nobody") is None and not stale.exists() and store.cell_ids() == []
