"""``training.precision`` and ``teacher.precision`` (``fp32 | bf16 | fp16``): how they enter ids
(fp32, the default, keeps every existing id; bf16 changes the cell's, and the teacher's when the
teacher's is set), their refusal on a device that cannot run them (at ``study run`` planning,
before any teacher), and bf16 training on CPU: autocast really on, deterministic run to run.

The trainer tests use tiny BERTs on 64 real SST-2 examples (as ``tests/test_group.py``): a few
seconds on a 2-core CPU.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from study.cli import app
from study.core import device as device_mod
from study.core.device import autocast, check_precision, supported_precisions
from study.core.errors import StudyConfigError
from study.grid import load_grid, parse_grid
from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.tasks.catalogue import TASKS
from study.training.trainer import Student, teacher_logits, train_group
from tests.conftest import tiny_bert

CPU = torch.device("cpu")
SPEC = {
    "name": "precision",
    "axes": {"dataset": ["sst2"], "student": ["L2_H384"], "objective": ["ce", "logit_kd"],
             "initialisation": ["teacher_lower"], "seed": [0]},
    "teacher": {"epochs": 1, "max_train_examples": 96, "max_eval_examples": 64, "max_length": 32, "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 64, "max_eval_examples": 64, "max_length": 32, "batch_size": 16},
}


def _with(training: dict | None = None, teacher: dict | None = None) -> dict:
    return dict(SPEC, training={**SPEC["training"], **(training or {})}, teacher={**SPEC["teacher"], **(teacher or {})})


def _ids(spec: dict) -> tuple[list[str], list[str]]:
    cells = parse_grid(spec).cells()
    return [c.cell_id for c in cells], [c.teacher.teacher_id for c in cells]


# ---------------------------------------------------------------- identities

def test_fp32_written_out_keeps_the_ids_and_the_shipped_smoke_grid_is_untouched():
    assert _ids(_with({"precision": "fp32"}, {"precision": "fp32"})) == _ids(SPEC)
    smoke = load_grid("smoke")
    assert all("precision" not in c.identity["training"] and "precision" not in c.teacher.identity["teacher"]
               for c in smoke.cells())
    assert {c.training["precision"] for c in smoke.cells()} == {"fp32"}  # resolved, logged, not hashed


def test_bf16_training_changes_the_cell_id_not_the_teacher_id():
    cells, teachers = _ids(SPEC)
    bf_cells, bf_teachers = _ids(_with({"precision": "bf16"}))
    assert not set(bf_cells) & set(cells)
    assert bf_teachers == teachers


def test_bf16_teacher_changes_the_teacher_id_and_so_every_cell_id():
    cells, teachers = _ids(SPEC)
    bf_cells, bf_teachers = _ids(_with(teacher={"precision": "bf16"}))
    assert not set(bf_teachers) & set(teachers)
    assert not set(bf_cells) & set(cells)
    assert _ids(_with({"precision": "bf16"}, {"precision": "bf16"}))[0] != bf_cells


def test_precision_is_an_axis_and_a_yaml_setting(tmp_path):
    spec = dict(SPEC, axes={**SPEC["axes"], "training.precision": ["fp32", "bf16"]})
    cells = parse_grid(spec).cells()
    assert len(cells) == 4 and {c.factors["training.precision"] for c in cells} == {"fp32", "bf16"}
    fp32 = [c.cell_id for c in cells if c.training["precision"] == "fp32"]
    assert fp32 == _ids(SPEC)[0]
    path = tmp_path / "smoke-bf16.yaml"  # what `study run --grid path` reads
    path.write_text(yaml.safe_dump(_with({"precision": "bf16"}, {"precision": "bf16"})))
    grid = load_grid(str(path))
    assert {(c.training["precision"], c.teacher.precision) for c in grid.cells()} == {("bf16", "bf16")}


def test_an_unknown_precision_is_refused_by_the_schema():
    with pytest.raises(StudyConfigError, match="precision"):
        parse_grid(_with({"precision": "fp8"})).cells()


# ---------------------------------------------------------------- refusals

def test_fp16_is_refused_on_cpu_naming_the_device_and_what_it_supports():
    assert "fp16" not in supported_precisions(CPU)
    with pytest.raises(StudyConfigError, match=r"fp16 is not supported on device cpu.*supports fp32"):
        check_precision(CPU, "fp16", "training.precision")


def test_bf16_is_refused_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_bf16_supported", lambda: False)
    assert supported_precisions(CPU) == ("fp32",)
    with pytest.raises(StudyConfigError, match=r"bf16 is not supported on device cpu.*it supports fp32\."):
        check_precision(CPU, "bf16")


def _refused(tmp_path, runs, shared_data, spec: dict, names: list[str]) -> None:
    """``study run --grid FILE`` exits 2 with one line naming ``names``; no teacher fine-tuned."""
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["run", "--grid", str(path), "--data-dir", str(shared_data), "--device", "cpu"])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert not (runs / "teachers").exists() and not (runs / "mlflow.db").exists()


def test_study_run_refuses_fp16_on_cpu_before_any_teacher(tmp_path, isolated_runs, shared_data):
    _refused(tmp_path, isolated_runs, shared_data, _with(teacher={"precision": "fp16"}),
             ["teacher.precision", "fp16", "device cpu", "supports"])


def test_study_run_refuses_bf16_where_the_cpu_lacks_it(tmp_path, isolated_runs, shared_data, monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_bf16_supported", lambda: False)
    _refused(tmp_path, isolated_runs, shared_data, _with({"precision": "bf16"}),
             ["training.precision", "bf16", "device cpu", "supports fp32"])


# ---------------------------------------------------------------- training on CPU

@pytest.fixture(scope="module")
def setup(sst2_tiny):
    return sst2_tiny


_bert = tiny_bert


def _train(setup, precision: str, teacher_precision: str) -> list[list[tuple[str, float, int]]]:
    """A logit-KD student (cached logits) and a hidden-MSE student with mix-up (teacher passes)
    trained together; every logged point of each."""
    tokenizer, train_ds, dev_ds, dev_labels = setup
    teacher = _bert(tokenizer.vocab_size, layers=2, hidden=32, seed=100)
    cached = teacher_logits(teacher, train_ds, tokenizer, CPU, precision=teacher_precision)
    logs: list[list] = [[], []]
    students = []
    for i, (name, mixup) in enumerate((("logit_kd", None), ("hidden_mse", {"alpha": 0.4, "weight": 1.0}))):
        model = _bert(tokenizer.vocab_size, layers=2, hidden=16, seed=i)
        torch.manual_seed(7)
        slots = preset(name)
        objective = Distillation(slots["prediction"], slots["intermediate"], task_type="classification",
                                 student=ModelDims.of(model.config), teacher=ModelDims.of(teacher.config))
        budget = {"epochs": 1, "learning_rate": 1e-3, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01,
                  "max_grad_norm": 1.0, "precision": precision}
        students.append(Student(model, objective, budget, 3, log_metrics=logs[i].extend, desc=name,
                                cached_teacher_logits=cached if name == "logit_kd" else None, mixup=mixup))
    results = train_group(students, train_ds, dev_ds, dev_labels, TASKS["sst2"], tokenizer, CPU, teacher=teacher,
                          teacher_precision=teacher_precision)
    assert not [r for r in results if isinstance(r, BaseException)], results
    return logs


@pytest.mark.skipif("bf16" not in supported_precisions(CPU), reason="this CPU has no native bf16")
def test_bf16_on_cpu_is_deterministic_and_really_bf16(setup):
    first = _train(setup, "bf16", "bf16")
    assert first == _train(setup, "bf16", "bf16")  # every loss and dev metric, bit for bit
    fp32 = _train(setup, "fp32", "fp32")
    assert first != fp32  # autocast was on
    assert all(v == v for log in first for _, v, _ in log)  # finite enough: no nan


def test_fp16_runs_through_the_grad_scaler_on_cpu(setup):
    """The CUDA fp16 path (autocast fp16 and a GradScaler) run here on CPU, where ``study run``
    refuses it: only the device differs."""
    logs = _train(setup, "fp16", "fp32")
    losses = [v for k, v, _ in logs[0] if k == "train_loss"]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_autocast_follows_the_precision():
    x = torch.randn(4, 4)
    with autocast(CPU, "bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (x @ x).dtype == torch.float32


def test_gpu_check_refuses_in_one_line_where_no_gpu_is_present(tmp_path):
    """``scripts/gpu_check.sh`` looks for a GPU before anything else: here a ``nvidia-smi`` that
    lists none; one line on stderr, exit 3, no Python started, no folder made."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", PYTHON="/nonexistent/python")
    t0 = time.perf_counter()
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 3 and out.stdout == "", (out.returncode, out.stdout, out.stderr)
    assert out.stderr.count("\n") == 1 and "no CUDA GPU" in out.stderr
    assert time.perf_counter() - t0 < 5
