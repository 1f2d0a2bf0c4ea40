"""Students trained together on the same batches (``study.training.trainer.train_group``): each ends
bit-identical (CPU) to training it alone; a student whose loss goes non-finite leaves the group
and the others go on; which cells group (``study.execution.units.group_key``, ``work_units``); and
``study run --group-size`` end to end.

The trainer tests use tiny BERTs (built here) on 64 real SST-2 examples with the real teacher's
tokenizer: a few seconds on a 2-core CPU. The end-to-end test (slow) fine-tunes the real teacher
on 96 examples, as ``tests/test_e2e.py`` does: about 40 s.
"""

from __future__ import annotations

import pytest
import torch

from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.tasks.catalogue import TASKS
from study.training.trainer import (
    Student,
    TrainResult,
    teacher_logits,
    train,
    train_group,
)
from tests.conftest import tiny_bert

CPU = torch.device("cpu")
BUDGET = {"epochs": 2, "learning_rate": 1e-3, "batch_size": 16, "warmup_ratio": 0.1,
          "weight_decay": 0.01, "max_grad_norm": 1.0}
SEED = 3


@pytest.fixture(scope="module")
def setup(sst2_tiny):
    tokenizer, train_ds, dev_ds, dev_labels = sst2_tiny
    teacher = bert(tokenizer.vocab_size, layers=4, hidden=32, seed=100)
    cached = teacher_logits(teacher, train_ds, tokenizer, CPU)
    return tokenizer, train_ds, dev_ds, dev_labels, teacher, cached


bert = tiny_bert


#: (objective preset, student width, mix-up): widths differ so hidden_mse learns a projection
STUDENTS = [("hidden_mse", 16, {"alpha": 0.4, "weight": 1.0}), ("attention_kl", 32, None), ("logit_kd", 32, None),
            ("crd", 16, None)]  # crd: a memory bank read by example index, CRD's critic, layers joined


def make_student(setup, name: str, hidden: int, mixup, lr: float | None = None, log=None) -> Student:
    tokenizer, train_ds, _, _, teacher, cached = setup
    model = bert(tokenizer.vocab_size, layers=2, hidden=hidden, seed=hidden)
    torch.manual_seed(7)  # learned projections
    slots = preset(name)
    objective = Distillation(slots["prediction"], slots["intermediate"], task_type="classification",
                             student=ModelDims.of(model.config), teacher=ModelDims.of(teacher.config),
                             train_size=len(train_ds))
    budget = dict(BUDGET, learning_rate=lr or BUDGET["learning_rate"])
    return Student(model, objective, budget, SEED, log_metrics=log, desc=name,
                   cached_teacher_logits=cached if not objective.needs_teacher_forward else None, mixup=mixup)


def run_group(setup, students: list[Student]) -> list[TrainResult | Exception]:
    _, train_ds, dev_ds, dev_labels, teacher, _ = setup
    return train_group(students, train_ds, dev_ds, dev_labels, TASKS["sst2"], setup[0], CPU, teacher=teacher)


def test_a_student_in_a_group_is_bit_identical_to_it_alone(setup):
    tokenizer, train_ds, dev_ds, dev_labels, teacher, _ = setup
    alone, alone_logs = [], []
    for name, hidden, mixup in STUDENTS:
        points: list = []
        s = make_student(setup, name, hidden, mixup, log=points.extend)
        result = train(s.model, s.objective, train_ds, dev_ds, dev_labels, TASKS["sst2"], tokenizer, s.budget,
                       s.seed, CPU, teacher=teacher, log_metrics=s.log_metrics,
                       cached_teacher_logits=s.cached_teacher_logits, mixup=s.mixup)
        alone.append((s.model.state_dict(), s.objective.state_dict(), result))
        alone_logs.append(points)

    logs: list[list] = [[] for _ in STUDENTS]
    group = [make_student(setup, name, hidden, mixup, log=logs[i].extend)
             for i, (name, hidden, mixup) in enumerate(STUDENTS)]
    results = run_group(setup, group)
    for s, result, log, (weights, obj_weights, ref), ref_log in zip(group, results, logs, alone, alone_logs):
        assert isinstance(result, TrainResult) and result.group_size == len(STUDENTS)
        assert all(torch.equal(v, weights[k]) for k, v in s.model.state_dict().items()), s.desc
        assert all(torch.equal(v, obj_weights[k]) for k, v in s.objective.state_dict().items()), s.desc
        assert log == ref_log and len(log) > 16  # every loss component per step, dev metrics per epoch
        assert result.dev_metrics == ref.dev_metrics and result.history == ref.history
    # the students really differ (dropout, objectives): the test is not comparing one run with itself
    losses = [[v for k, v, _ in log if k == "train_loss"] for log in logs]
    assert len({tuple(x) for x in losses}) == len(STUDENTS)
    crd = [v for k, v, _ in logs[3] if k == "train_loss_cls_infonce"]  # 0 until the bank holds negatives
    assert crd and crd[0] == 0.0 and max(crd) > 0


def test_a_diverging_student_leaves_the_group_and_the_others_go_on(setup):
    tokenizer, train_ds, dev_ds, dev_labels, teacher, _ = setup
    ref = make_student(setup, "logit_kd", 32, None)
    ref_result = train(ref.model, ref.objective, train_ds, dev_ds, dev_labels, TASKS["sst2"], tokenizer,
                       ref.budget, ref.seed, CPU, cached_teacher_logits=ref.cached_teacher_logits)

    logged: list = []
    bad = make_student(setup, "attention_kl", 32, None, lr=1e6, log=logged.extend)
    good = make_student(setup, "logit_kd", 32, None)
    results = run_group(setup, [bad, good])
    assert isinstance(results[0], FloatingPointError)
    assert "non-finite training loss" in str(results[0]) and "at step" in str(results[0])
    assert logged == []  # dropped before its first epoch's metrics were logged
    assert isinstance(results[1], TrainResult) and results[1].dev_metrics == ref_result.dev_metrics
    assert all(torch.equal(v, ref.model.state_dict()[k]) for k, v in good.model.state_dict().items())

    # alone, the same student raises the same error
    again = make_student(setup, "attention_kl", 32, None, lr=1e6)
    with pytest.raises(FloatingPointError, match=str(results[0]).split(" at ")[-1]):
        train(again.model, again.objective, train_ds, dev_ds, dev_labels, TASKS["sst2"], tokenizer,
              again.budget, again.seed, CPU, teacher=teacher)


def test_students_that_do_not_share_batches_are_refused(setup):
    a = make_student(setup, "logit_kd", 32, None)
    b = make_student(setup, "logit_kd", 32, None)
    b.seed = SEED + 1
    with pytest.raises(ValueError, match="share their seed"):
        run_group(setup, [a, b])
    b.seed, b.budget = SEED, dict(BUDGET, batch_size=8)
    with pytest.raises(ValueError, match="share their batch_size"):
        run_group(setup, [a, b])


# --------------------------------------------------------------------------- which cells group

def grid_cells(**axes) -> list:
    from study.grid import parse_grid

    spec = {"name": "g", "axes": {"dataset": ["sst2"], "student": ["L2_H384", "L1_H384"],
                                  "objective": ["ce", "logit_kd", "attention_kl"], "seed": [0, 1], **axes}}
    return parse_grid(spec).cells()


def test_cells_group_by_what_their_batches_share():
    from study.execution.units import group_key, work_units

    cells = grid_cells(**{"training.learning_rate": [1e-4, 3e-4], "mixup.alpha": [0, 0.4]})
    # student, objective, learning rate and mix-up vary within a group; the seed does not
    assert len({group_key(c) for c in cells}) == 2
    units = work_units(cells, group_size=8)
    assert [len(u.cells) for u in units] == [8, 8, 8, 8, 8, 8]  # 24 cells a seed: 8 + 8 + 8
    for u in units:
        assert len({group_key(c) for c in u.cells}) == 1 and len({c.seed for c in u.cells}) == 1
    assert sorted(c.cell_id for u in units for c in u.cells) == sorted(c.cell_id for c in cells)
    assert [u.cells[0] for u in work_units(cells, 1)] == cells  # one cell a unit, the grid's order
    big = work_units(cells, 20)
    assert sorted(len(u.cells) for u in big) == [4, 4, 20, 20]
    firsts = [cells.index(u.cells[0]) for u in big]
    assert firsts == sorted(firsts)  # units in the grid's order of their first cell

    # what the batches or the teacher depend on splits groups
    for axis, values in (("training.batch_size", [16, 32]), ("training.max_train_examples", [64, 128]),
                         ("training.data_seed", [0, 1]), ("training.max_length", [64, 128]),
                         ("training.epochs", [1, 2]), ("augmentation", ["none", "eda"]),
                         ("teacher.checkpoint", ["last", "best_metric"]), ("teacher.learning_rate", [5e-5, 1e-4])):
        split = grid_cells(**{axis: values})
        assert len({group_key(c) for c in split}) == 4, axis
        assert all(len({getattr(c, "factors")[axis] for c in u.cells}) == 1 for u in work_units(split, 8)), axis
    with pytest.raises(ValueError, match="at least 1"):
        work_units(cells, 0)


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_study_run_trains_groups_as_cells_alone_and_isolates_a_failure(tmp_path, isolated_runs, shared_data,
                                                                     monkeypatch):
    """`study run --group-size 4` on a 4-cell grid (one group): a cell whose loss is nan ends FAILED
    naming the step, the others finish with exactly the losses and scores that `--group-size 1`
    gives them in another store."""
    import os

    from mlflow.tracking import MlflowClient

    import study.execution.cell
    from tests.test_e2e import TINY, cell_runs, invoke, write_grid

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    grid = write_grid(tmp_path, TINY, "tiny_group")
    args = ("run", "--grid", str(grid), "--data-dir", str(shared_data), "--device", "cpu")
    plan = invoke(*args, "--dry-run", "--group-size", "3")
    assert "4 pending cells train in 2 groups of at most 3" in plan.output and "1/2 (3 cells)" in plan.output
    # Without --group-size the grid's own group_size applies; the flag overrides it.
    grouped = write_grid(tmp_path, dict(TINY, group_size=3), "tiny_grouped")
    by_grid = invoke("run", "--grid", str(grouped), "--data-dir", str(shared_data), "--device", "cpu", "--dry-run")
    assert "4 pending cells train in 2 groups of at most 3" in by_grid.output
    by_flag = invoke("run", "--grid", str(grouped), "--data-dir", str(shared_data), "--device", "cpu", "--dry-run",
                     "--group-size", "1")
    assert "4 pending cells train in 4 groups of at most 1" in by_flag.output

    real = study.execution.cell.prepare_cell
    planted = "sst2-L2_H384-ce-random-none-s0"

    def nan_logits(cell, *a, **k):
        prep = real(cell, *a, **k)
        if cell.name == planted:
            prep.student.model.classifier.register_forward_hook(lambda m, i, out: out * float("nan"))
        return prep

    monkeypatch.setattr(study.execution.cell, "prepare_cell", nan_logits)
    try:
        result = invoke(*args, "--group-size", "4")
        monkeypatch.setattr(study.execution.cell, "prepare_cell", real)
        grouped = {r.info.run_name: r for r in cell_runs("tiny_group")}
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'alone.db'}")
        alone_result = invoke(*args, "--group-size", "1")
        alone = {r.info.run_name: r for r in cell_runs("tiny_group")}
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 1 and alone_result.exit_code == 0, alone_result.output
    assert {n: r.info.status for n, r in grouped.items()} == {n: "FAILED" if n == planted else "FINISHED"
                                                               for n in alone}
    assert grouped[planted].data.tags["study.error"].startswith("FloatingPointError: non-finite training loss nan at step 1")
    uris = (f"sqlite:///{isolated_runs / 'mlflow.db'}", os.environ["MLFLOW_TRACKING_URI"])
    history = {uri: MlflowClient(uri).get_metric_history for uri in uris}
    for name, run in grouped.items():
        if name == planted:
            continue
        m, ref = run.data.metrics, alone[name].data.metrics
        assert m["group_size"] == 4 and ref["group_size"] == 1
        assert m["dev_score"] == ref["dev_score"] and m["dev_loss"] == ref["dev_loss"]
        losses = [(h.step, h.value) for h in history[uris[0]](run.info.run_id, "train_loss")]
        assert len(losses) == 4 and losses == [(h.step, h.value) for h in history[uris[1]](alone[name].info.run_id,
                                                                                          "train_loss")]
