"""General distillation on raw text (``study.training.general``) and stages trained once
(``study.execution.stages``): students distilled together end bit-identical to each alone, BERT's
seeded masking and masked-LM KD, and ``run_grid`` end to end with a general stage, a two_stage
schedule, a chain of a masked-LM general stage and a task stage, a damaged stage folder, and a
SIGKILL mid-stage (``study run`` in a subprocess).

The trainer tests distil on a few packed blocks of the real wiki-offline corpus: from the real
all-MiniLM-L6-v2 (L1/L2_H384 students) for the feature losses, from a tiny BertForMaskedLM built
here for masked-LM KD; a few seconds each. The end-to-end tests marked slow fine-tune the real
teacher once for the module on 32 SST-2 examples, then train 5-step general stages and 32-example
cells: 5 to 20 s each on an idle 2-core CPU, several times that on a busy one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForMaskedLM, BertConfig, BertForMaskedLM

import study.execution.cell
from study.core.hashing import derive_seed
from study.corpora import packed_corpus
from study.execution.datacache import DataCache
from study.execution.runner import run_grid
from study.execution.stages import STAGE_META, StageCacheError, stage_dir, verify_stage
from study.execution.teacher import ensure_teacher, load_tokenizer
from study.execution.tracking import Tracker
from study.grid import parse_grid
from study.models import StudentSize, build_student, resolve_teacher_path
from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.training.general import MLM_PROBABILITY, Masker, split_blocks, total_steps, train_general_group
from study.training.trainer import Student, TrainResult
from tests.conftest import DATA

CPU = torch.device("cpu")
SEED = 3
#: 30 blocks, every 5th held out: 24 train blocks, 3 batches a pass; 7 steps end one step into pass 3
BUDGET = {"epochs": 3, "max_steps": 7, "learning_rate": 5e-4, "batch_size": 8, "warmup_ratio": 0.06,
          "weight_decay": 0.01, "max_grad_norm": 1.0}
N_BLOCKS, DEV_EVERY = 30, 5


# --------------------------------------------------------------------------- blocks and budget

def test_split_blocks_holds_out_every_nth_block():
    blocks = torch.arange(10).view(10, 1)  # (N, T) with T = 1: a block is its index
    train, dev = split_blocks(blocks, 4)
    assert dev.flatten().tolist() == [0, 4, 8]
    assert train.flatten().tolist() == [1, 2, 3, 5, 6, 7, 9]
    with pytest.raises(ValueError, match="nothing to train on"):
        split_blocks(blocks, 1)


def test_total_steps_counts_passes_and_caps_at_max_steps():
    assert total_steps(24, {"epochs": 3, "batch_size": 8, "max_steps": 7}) == 7
    assert total_steps(24, {"epochs": 3, "batch_size": 8, "max_steps": None}) == 9
    assert total_steps(25, {"epochs": 3, "batch_size": 8}) == 12  # the short last batch is a step
    assert total_steps(25, {"epochs": 1, "batch_size": 8, "max_steps": 100}) == 4


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("all-MiniLM-L6-v2")


@pytest.fixture
def corpus(tokenizer):
    """The MiniLM tokenizer and the first ``N_BLOCKS`` packed 32-token blocks of wiki-offline (packed
    once per process); deterministic kernels, one thread, for the test."""
    if not (DATA / "qa" / "squad_v1.1").exists():
        pytest.skip(f"real data not found at {DATA}")
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)  # small models: a second thread only contends on a busy 2-core machine
    yield tokenizer, packed_corpus("wiki-offline", DATA, tokenizer, 32).input_ids[:N_BLOCKS]
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


@pytest.fixture(scope="module")
def minilm():
    return AutoModel.from_pretrained(resolve_teacher_path("all-MiniLM-L6-v2"), attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def tiny_mlm(tokenizer):
    """A tiny BertForMaskedLM on the MiniLM vocabulary (random weights: a teacher with an MLM head)."""
    torch.manual_seed(100)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, attn_implementation="sdpa")
    return BertForMaskedLM(cfg).eval()


def general_student(teacher, size: str, initialisation: str, prediction, intermediate, auto_class,
                    log=None) -> Student:
    """A student as ``StageRunner`` builds one: weights from the ``init`` stream, the objective's
    from ``objective_init``."""
    torch.manual_seed(derive_seed(SEED, "init"))
    model = build_student(teacher, StudentSize.parse(size), initialisation, 2, "sdpa", auto_class=auto_class)
    torch.manual_seed(derive_seed(SEED, "objective_init"))
    objective = Distillation(prediction, intermediate,
                             task_type="token_classification" if prediction else "classification",
                             student=ModelDims.of(model.config), teacher=ModelDims.of(teacher.config))
    return Student(model, objective, dict(BUDGET), SEED, log_metrics=log, desc=f"{size}-{initialisation}")


def feature_students(teacher, logs):
    """Two students of the real teacher: other depths, starts and intermediate losses."""
    return [general_student(teacher, "L1_H384", "random", None, preset("minilm_v2")["intermediate"], AutoModel,
                            logs[0]),
            general_student(teacher, "L2_H384", "teacher_lower", None, preset("hidden_mse")["intermediate"],
                            AutoModel, logs[1])]


def mlm_students(teacher, logs):
    """Two masked-LM KD students of the tiny teacher, one with a hidden-state term too."""
    return [general_student(teacher, "L1_H32", "random", {"alpha": 0.5}, [], AutoModelForMaskedLM, logs[0]),
            general_student(teacher, "L2_H32", "teacher_lower", {"alpha": 0.8},
                            [{"features": "hidden", "loss": "mse", "mapping": "skip"}], AutoModelForMaskedLM,
                            logs[1])]


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- train_general_group

@pytest.mark.parametrize("mode", ["features", "mlm"])
def test_students_distilled_together_end_bit_identical_to_each_alone(corpus, minilm, tiny_mlm, mode):
    tokenizer, blocks = corpus
    teacher, make = (minilm, feature_students) if mode == "features" else (tiny_mlm, mlm_students)
    alone_logs: list[list] = [[], []]
    alone = []
    for i in range(2):
        s = make(teacher, [log.extend for log in alone_logs])[i]
        start = state(s.model)
        (result,) = train_general_group([s], blocks, teacher, CPU, dev_every=DEV_EVERY, tokenizer=tokenizer)
        assert isinstance(result, TrainResult), result
        assert any(not torch.equal(v, start[k]) for k, v in s.model.state_dict().items())  # it trained
        alone.append((state(s.model), state(s.objective), result))

    logs: list[list] = [[], []]
    group = make(teacher, [log.extend for log in logs])
    results = train_general_group(group, blocks, teacher, CPU, dev_every=DEV_EVERY, tokenizer=tokenizer)
    for s, result, log, (weights, obj_weights, ref), ref_log in zip(group, results, logs, alone, alone_logs):
        assert isinstance(result, TrainResult) and result.group_size == 2 and ref.group_size == 1
        assert all(torch.equal(v, weights[k]) for k, v in s.model.state_dict().items()), s.desc
        assert all(torch.equal(v, obj_weights[k]) for k, v in s.objective.state_dict().items()), s.desc
        assert log == ref_log
        assert result.dev_metrics == ref.dev_metrics and result.history == ref.history
        # 7 steps over 3 passes (the last cut by max_steps), dev losses after each pass
        assert [step for key, _, step in log if key == "train_loss"] == list(range(1, 8))
        assert [step for key, _, step in log if key == "dev_loss"] == [1, 2, 3]
        assert [h["epoch"] for h in result.history] == [1, 2, 3]
        assert result.dev_metrics["score"] == -result.dev_metrics["loss"]
    losses = [[v for k, v, _ in log if k == "train_loss"] for log in logs]
    assert losses[0] != losses[1]  # two students, not one compared with itself


def test_students_that_do_not_share_the_steps_are_refused(corpus, tiny_mlm):
    tokenizer, blocks = corpus
    a, b = mlm_students(tiny_mlm, [None, None])
    b.seed = SEED + 1
    with pytest.raises(ValueError, match="share seed"):
        train_general_group([a, b], blocks, tiny_mlm, CPU, dev_every=DEV_EVERY, tokenizer=tokenizer)
    b.seed, b.budget = SEED, dict(BUDGET, max_steps=6)
    with pytest.raises(ValueError, match="max_steps"):
        train_general_group([a, b], blocks, tiny_mlm, CPU, dev_every=DEV_EVERY, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="tokenizer"):
        train_general_group([a], blocks, tiny_mlm, CPU, dev_every=DEV_EVERY)


# --------------------------------------------------------------------------- masking and masked-LM KD

def test_masking_is_seeded_per_step_and_masks_about_15_percent(corpus):
    tokenizer, _ = corpus
    ids = packed_corpus("wiki-offline", DATA, tokenizer, 32).input_ids[:400]  # (400, 32): 12,800 tokens
    masker = Masker(tokenizer, seed=SEED)
    rng = torch.get_rng_state()
    masked, labels = masker(ids, 5)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random streams are left alone
    again_ids, again_labels = Masker(tokenizer, seed=SEED)(ids, 5)
    assert torch.equal(masked, again_ids) and torch.equal(labels, again_labels)
    other_step, _ = masker(ids, 6)
    other_seed, _ = Masker(tokenizer, seed=SEED + 1)(ids, 5)
    assert not torch.equal(other_step, masked) and not torch.equal(other_seed, masked)

    chosen = labels != -100  # (B, T) the positions the loss reads
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert not (chosen & special).any()  # [CLS]/[SEP] inside packed blocks are never masked
    rate = chosen.sum().item() / (~special).sum().item()
    assert abs(rate - MLM_PROBABILITY) < 0.02, rate
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    as_mask = (masked[chosen] == tokenizer.mask_token_id).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.05 and 0.05 < kept < 0.17  # 80% [MASK], 10% kept (+ random hits)


def test_masked_lm_kd_logs_both_terms_and_reruns_to_the_same_numbers(corpus, tiny_mlm):
    tokenizer, blocks = corpus
    runs = []
    for _ in range(2):
        log: list = []
        (s, _) = mlm_students(tiny_mlm, [log.extend, None])
        (result,) = train_general_group([s], blocks, tiny_mlm, CPU, dev_every=DEV_EVERY, tokenizer=tokenizer)
        runs.append((log, result, state(s.model)))
    (log, result, weights), (log2, result2, weights2) = runs
    keys = {k for k, _, _ in log}
    assert {"train_loss", "train_loss_ce", "train_loss_kd", "dev_loss", "dev_loss_ce", "dev_loss_kd"} <= keys
    point = {k: v for k, v, step in log if step == 1}
    assert point["train_loss"] == pytest.approx(0.5 * point["train_loss_ce"] + 0.5 * point["train_loss_kd"])
    assert point["train_loss_ce"] > 0 and point["train_loss_kd"] > 0
    assert log == log2 and result.dev_metrics == result2.dev_metrics  # the same masks, every run
    assert all(torch.equal(v, weights2[k]) for k, v in weights.items())


# --------------------------------------------------------------------------- end to end

TINY = {
    "name": "tiny_stages",
    "axes": {"dataset": ["sst2"], "student": ["L1_H384"], "objective": ["logit_kd"],
             "initialisation": ["random", "general"], "seed": [0]},
    "teacher": {"epochs": 1, "max_train_examples": 32, "max_eval_examples": 32, "max_length": 32,
                "batch_size": 16},
    "training": {"epochs": 1, "max_train_examples": 32, "max_eval_examples": 32, "max_length": 32,
                 "batch_size": 8},
    "general": {"max_steps": 5, "batch_size": 8, "max_length": 32, "dev_every": 500},
}


@pytest.fixture(scope="module")
def fine_tuned_teacher(tmp_path_factory):
    """The tiny grids' teacher, fine-tuned once for the module: its runs/teachers folder."""
    if not (DATA / "glue" / "SST-2" / "train.tsv").exists() or not (DATA / "qa" / "squad_v1.1").exists():
        pytest.skip(f"real data not found at {DATA}")
    runs = tmp_path_factory.mktemp("teacher_runs")
    (spec,) = parse_grid(TINY).teachers()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_RUNS_DIR", str(runs))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{runs / 'mlflow.db'}")
        ensure_teacher(spec, DataCache(DATA), Tracker(), CPU, log=lambda *a: None)
    return runs / "teachers"


@pytest.fixture
def staged_runs(isolated_runs, fine_tuned_teacher, shared_data) -> Path:
    """A fresh runs/ folder and store holding the fine-tuned teacher (found in this machine's cache)."""
    shutil.copytree(fine_tuned_teacher, isolated_runs / "teachers")
    return isolated_runs


def run(spec: dict):
    summary = run_grid(parse_grid(spec), data_dir=DATA, device="cpu")
    assert not summary.failed, summary.failed
    return summary


def runs_of(experiment: str, kind: str) -> list:
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`study.kind` = '{kind}'")


@pytest.mark.slow
def test_a_general_stage_is_trained_once_and_its_student_starts_the_cell(staged_runs, monkeypatch):
    loaded: dict[str, dict] = {}
    real = study.execution.cell.load_pretrained_classifier

    def recording(path, *args, **kwargs):  # the cell's student as it starts, before any training
        model = real(path, *args, **kwargs)
        loaded[str(path)] = state(model)
        return model

    monkeypatch.setattr(study.execution.cell, "load_pretrained_classifier", recording)
    assert len(run(TINY).finished) == 2

    (cell,) = [c for c in parse_grid(TINY).cells() if c.stages]
    (stage,) = cell.stages
    (stage_run,) = runs_of("stages", "stage")
    assert stage_run.info.status == "FINISHED" and stage_run.data.tags["study.stage_id"] == stage.stage_id
    assert stage_run.data.params["kind"] == "general" and stage_run.data.params["max_steps"] == "5"
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert [m.step for m in client.get_metric_history(stage_run.info.run_id, "train_loss")] == [1, 2, 3, 4, 5]
    assert {"train_loss_query_relation_kl", "train_loss_value_relation_kl", "dev_loss"} <= set(stage_run.data.metrics)

    folder = stage_dir(stage)
    assert folder == staged_runs / "stages" / stage.stage_id and (folder / STAGE_META).exists()
    meta = verify_stage(folder)
    assert meta["stage_id"] == stage.stage_id and meta["run_id"] == stage_run.info.run_id
    assert not list((staged_runs / "stages").glob("*.tmp*"))

    cells = {r.data.tags["study.cell_id"]: r for r in runs_of("tiny_stages", "cell")}
    assert len(cells) == 2 and {r.info.status for r in cells.values()} == {"FINISHED"}
    assert cells[cell.cell_id].data.params["stages.0.id"] == stage.stage_id
    # the general cell's student started from the stage's weights; the random one was built
    assert list(loaded) == [str(folder)]
    saved = load_file(folder / "model.safetensors")
    start = loaded[str(folder)]
    assert saved and all(torch.equal(start["bert." + k], v) for k, v in saved.items())

    # a grid with the same cells and one more on the same stage: two skipped, one trained, no new stage
    more = dict(TINY, name="tiny_stages_more", axes=dict(TINY["axes"], objective=["logit_kd", "ce"]),
                exclude=[{"objective": "ce", "initialisation": "random"}])
    summary = run(more)
    assert summary.total == 3 and summary.skipped == 2 and [c.objective for c, _ in summary.finished] == ["ce"]
    assert len(runs_of("stages", "stage")) == 1 and len(runs_of("tiny_stages", "cell")) == 2
    assert list(loaded) == [str(folder)]

    # a damaged stage folder is refused, naming the folder to delete
    with open(folder / "model.safetensors", "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 1]))
    with pytest.raises(StageCacheError, match=str(folder)) as err:
        verify_stage(folder)
    assert "model.safetensors" in str(err.value)
    # and a cell that needs it fails saying so, instead of training from it or retraining it
    needs_it = dict(TINY, name="tiny_stages_damaged", axes=dict(TINY["axes"], initialisation=["general"],
                                                                objective=["logit_mse"]))
    summary = run_grid(parse_grid(needs_it), data_dir=DATA, device="cpu")
    assert not summary.finished and len(summary.failed) == 1
    assert "StageCacheError" in summary.failed[0][1] and str(folder) in summary.failed[0][1]
    assert len(runs_of("stages", "stage")) == 1 and list(loaded) == [str(folder)]
    (folder / STAGE_META).unlink()
    with pytest.raises(StageCacheError, match="cannot be read"):
        verify_stage(folder)


@pytest.mark.slow
def test_two_stage_trains_the_intermediate_stage_once_then_the_cells(staged_runs):
    spec = dict(TINY, name="tiny_two_stage",
                axes=dict(TINY["axes"], objective=["hidden_mse"], initialisation=["random"], schedule=["two_stage"],
                          **{"prediction.alpha": [0.5, 0.9]}))
    assert len(run(spec).finished) == 2
    (stage_id,) = {c.stages[0].stage_id for c in parse_grid(spec).cells()}
    (stage_run,) = runs_of("stages", "stage")
    assert stage_run.info.status == "FINISHED" and stage_run.data.tags["study.stage_id"] == stage_id
    assert stage_run.data.params["kind"] == "task" and stage_run.data.params["prediction.distance"] == "none"
    assert verify_stage(staged_runs / "stages" / stage_id)["stage_id"] == stage_id
    # stage 1: the intermediate loss only; stage 2 (the cells): the prediction-layer loss only
    assert "train_loss_hidden_mse" in stage_run.data.metrics and "train_loss_kd" not in stage_run.data.metrics
    runs = runs_of("tiny_two_stage", "cell")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        assert r.data.params["schedule"] == "two_stage" and r.data.params["stages.0.id"] == stage_id
        assert "train_loss_kd" in r.data.metrics and "train_loss_hidden_mse" not in r.data.metrics


def test_a_masked_lm_general_stage_then_a_task_stage_end_to_end(tmp_path, isolated_runs, shared_data, tokenizer):
    """DistilBERT-style masked-LM KD (plus minilm_v2's relations) from a tiny local BertForMaskedLM
    teacher, then two_stage's task stage continuing that student: a chain of two stages, each
    trained once, and both schedules' cells finished. Tiny models: a few seconds."""
    if not (DATA / "qa" / "squad_v1.1").exists():
        pytest.skip(f"wiki-offline's files not found at {DATA}")
    teacher = tmp_path / "tiny-mlm-teacher"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64)).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    spec = dict(TINY, name="tiny_mlm_chain",
                axes=dict(TINY["axes"], student=["L1_H32"], initialisation=["general"],
                          schedule=["one_stage", "two_stage"]),
                intermediate=[{"features": "hidden", "loss": "mse"}],
                teacher=dict(TINY["teacher"], model=str(teacher)),
                general=dict(TINY["general"], prediction={"alpha": 0.5}, initialisation="teacher_lower"))
    assert len(run(spec).finished) == 2
    two = next(c for c in parse_grid(spec).cells() if c.schedule == "two_stage")
    general, task = two.stages
    by_kind = {r.data.params["kind"]: r for r in runs_of("stages", "stage")}
    assert set(by_kind) == {"general", "task"} and {r.info.status for r in by_kind.values()} == {"FINISHED"}
    assert by_kind["general"].data.tags["study.stage_id"] == general.stage_id
    assert by_kind["task"].data.tags["study.stage_id"] == task.stage_id
    assert by_kind["task"].data.params["start"] == general.stage_id
    assert {"train_loss_ce", "train_loss_kd", "train_loss_query_relation_kl", "dev_loss_kd"} \
        <= set(by_kind["general"].data.metrics)
    assert "train_loss_hidden_mse" in by_kind["task"].data.metrics
    saved = json.loads((stage_dir(general) / "config.json").read_text())
    assert saved["architectures"] == ["BertForMaskedLM"] and saved["hidden_size"] == 32
    assert verify_stage(stage_dir(task))["identity"]["start"] == general.stage_id
    cells = runs_of("tiny_mlm_chain", "cell")
    assert len(cells) == 2 and {r.info.status for r in cells} == {"FINISHED"}


def _kill_when(proc: subprocess.Popen, pattern: re.Pattern, timeout_s: float) -> str:
    """Read ``proc``'s stderr until ``pattern`` matches, then SIGKILL its process group; return what
    was read. Fails the test when the process ends or the time runs out first."""
    seen = b""
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                seen += chunk
                if pattern.search(seen.decode(errors="replace")):
                    return seen.decode(errors="replace")
            elif chunk == b"" or proc.poll() is not None:
                pytest.fail("the run ended before it could be killed:\n" + seen.decode(errors="replace")[-3000:])
            else:
                time.sleep(0.05)
        pytest.fail("no stage progress in time:\n" + seen.decode(errors="replace")[-3000:])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


@pytest.mark.slow
def test_sigkill_during_a_general_stage_then_rerun_trains_it_once(tmp_path, staged_runs):
    spec = dict(TINY, name="tiny_stage_kill", axes=dict(TINY["axes"], initialisation=["general"]),
                general=dict(TINY["general"], max_steps=20))
    grid = tmp_path / "tiny_stage_kill.yaml"
    grid.write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, "-m", "study.cli", "run", "--grid", str(grid), "--data-dir", str(DATA), "--device", "cpu"]
    Tracker()  # the store's schema first, so polling it never races the worker's migration
    (stage,) = parse_grid(spec).cells()[0].stages
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    # kill once the stage's progress bar shows it between its 2nd and its 19th of 20 steps
    _kill_when(proc, re.compile(r"general-wiki-offline-L1_H384-random-s0:.*\|\s*([2-9]|1[0-9])/20"), 240)
    assert not (stage_dir(stage) / STAGE_META).exists()
    assert [r.info.status for r in runs_of("stages", "stage")] == ["RUNNING"]

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    stage_runs = runs_of("stages", "stage")
    assert sorted(r.info.status for r in stage_runs) == ["FINISHED", "KILLED"]
    assert {r.data.tags["study.stage_id"] for r in stage_runs} == {stage.stage_id}
    killed = next(r for r in stage_runs if r.info.status == "KILLED")
    assert "died" in killed.data.tags["study.error"]
    meta = verify_stage(stage_dir(stage))
    assert meta["run_id"] == next(r.info.run_id for r in stage_runs if r.info.status == "FINISHED")
    assert meta["identity"]["training"]["max_steps"] == 20
    assert not list((staged_runs / "stages").glob("*.tmp*"))
    cells = runs_of("tiny_stage_kill", "cell")
    assert sorted(r.info.status for r in cells) == ["FINISHED", "KILLED"]  # the cell was held when killed
    assert len({r.data.tags["study.cell_id"] for r in cells}) == 1
