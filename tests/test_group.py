"""Students trained together on the same batches (``study.trainer.train_group``): each ends
bit-identical (CPU) to training it alone; a student whose loss goes non-finite leaves the group
and the others go on.

Tiny BERTs (built here) on 64 real SST-2 examples with the real teacher's tokenizer: a few
seconds on a 2-core CPU.
"""

from __future__ import annotations


import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from study.data import TASKS, Split
from study.datacache import DataCache
from study.models import resolve_teacher_path
from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.trainer import Student, TokenizedSplit, TrainResult, teacher_logits, train, train_group

CPU = torch.device("cpu")
BUDGET = {"epochs": 2, "learning_rate": 1e-3, "batch_size": 16, "warmup_ratio": 0.1,
          "weight_decay": 0.01, "max_grad_norm": 1.0}
SEED = 3


@pytest.fixture(scope="module")
def setup():
    from tests.conftest import DATA

    if not (DATA / "glue" / "SST-2" / "train.tsv").exists():
        pytest.skip(f"real data not found at {DATA}")
    torch.use_deterministic_algorithms(True, warn_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only contends on a busy 2-core machine
    tokenizer = AutoTokenizer.from_pretrained(resolve_teacher_path("all-MiniLM-L6-v2"))
    raw = DataCache(DATA).raw("sst2")
    train_split = Split(raw["train"].texts[:64], raw["train"].labels[:64])
    dev_split = Split(raw["dev"].texts[:32], raw["dev"].labels[:32])
    train_ds = TokenizedSplit(train_split, tokenizer, 32, regression=False)
    dev_ds = TokenizedSplit(dev_split, tokenizer, 32, regression=False)
    teacher = bert(tokenizer.vocab_size, layers=4, hidden=32, seed=100)
    cached = teacher_logits(teacher, train_ds, tokenizer, CPU)
    yield tokenizer, train_ds, dev_ds, list(dev_split.labels), teacher, cached
    torch.set_num_threads(threads)


def bert(vocab: int, layers: int, hidden: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, num_labels=2, attn_implementation="sdpa")
    return BertForSequenceClassification(cfg).eval()


#: (objective preset, student width, mix-up): widths differ so hidden_mse learns a projection
STUDENTS = [("hidden_mse", 16, {"alpha": 0.4, "weight": 1.0}), ("attention_kl", 32, None), ("logit_kd", 32, None)]


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
        assert isinstance(result, TrainResult) and result.group_size == 3
        assert all(torch.equal(v, weights[k]) for k, v in s.model.state_dict().items()), s.desc
        assert all(torch.equal(v, obj_weights[k]) for k, v in s.objective.state_dict().items()), s.desc
        assert log == ref_log and len(log) > 16  # every loss component per step, dev metrics per epoch
        assert result.dev_metrics == ref.dev_metrics and result.history == ref.history
    # the students really differ (dropout, objectives): the test is not comparing one run with itself
    losses = [[v for k, v, _ in log if k == "train_loss"] for log in logs]
    assert losses[0] != losses[1] != losses[2]


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
