"""Sentence-pair regression end to end, the example of a task type as one module
(``study/tasktypes/sequence_regression.py``) with its YAML (``study/tasks/stsb.yaml``): the real
STS-B files from ``../shared/data`` read, tokenised, scored by a tiny randomly initialised BERT,
its Pearson/Spearman metrics, and the prediction-layer KD terms it picks (``output = "score"``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import BertConfig

from study.core.errors import StudyConfigError
from study.objectives.prediction import prediction_loss
from study.tasks.catalogue import TASKS, load_task, resolve_dataset
from study.tasks.metrics import compute_metrics
from study.tasks.splits import subsample
from study.tasks.types import get_type
from study.tasktypes.sequence_regression import SequenceRegression
from tests.conftest import DATA

needs_stsb = pytest.mark.skipif(not (DATA / "glue" / "STS-B" / "train.tsv").is_file(), reason=f"no STS-B under {DATA}")


@pytest.fixture(scope="module")
def tokenizer():
    from study.execution.teacher import load_tokenizer  # the study's offline tokenizer

    return load_tokenizer("all-MiniLM-L6-v2")


def test_regression_is_its_own_registered_type():
    ttype = get_type("regression")
    assert isinstance(ttype, SequenceRegression) and ttype.output == "score"
    assert ttype.metrics == ("pearson", "spearman")
    spec = TASKS["stsb"]
    assert spec.task_type == "regression" and spec.num_labels == 1 and spec.label_range == (0.0, 5.0)
    assert spec.is_pair and spec.label_names == ()


@needs_stsb
def test_stsb_reads_tokenises_and_scores_with_a_tiny_bert(tokenizer):
    splits = load_task("stsb", DATA)
    assert len(splits["train"]) == 5749 and len(splits["dev"]) == 1500
    first = splits["train"]
    assert first.texts[0] == ("A plane is taking off.", "An air plane is taking off.") and first.labels[0] == 5.0
    assert all(isinstance(y, float) and 0.0 <= y <= 5.0 for y in first.labels)

    spec, ttype = TASKS["stsb"], get_type("regression")
    dev = subsample(splits["dev"], 32, seed=0)
    data = ttype.tokenize(spec, dev, tokenizer, max_length=64)
    assert len(data) == 32 and data.features[0]["labels"].dtype == torch.float32
    labels = ttype.dev_labels(data)
    assert labels == pytest.approx(dev.labels)

    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=spec.num_labels)
    model = ttype.auto_class.from_config(config)
    loader = DataLoader(data, batch_size=8, collate_fn=ttype.collator(tokenizer))
    out = ttype.evaluate(model, loader, data, labels, spec, torch.device("cpu"))
    assert set(out) == {"pearson", "spearman", "score", "loss"}
    assert all(np.isfinite(v) for v in out.values()) and -1.0 <= out["pearson"] <= 1.0
    assert out["score"] == pytest.approx((out["pearson"] + out["spearman"]) / 2)
    assert out["loss"] > 0  # squared error per example

    gold = np.asarray(labels)
    perfect = compute_metrics(spec, 2 * gold + 1, gold)  # any increasing linear map correlates fully
    assert perfect["pearson"] == pytest.approx(1.0) and perfect["spearman"] == pytest.approx(1.0)


def test_regression_kd_compares_scores_with_squared_error():
    s = torch.tensor([[1.0], [2.0], [4.0]], requires_grad=True)  # (B, 1) student outputs
    t = torch.tensor([[1.5], [2.0], [3.0]])
    y = torch.tensor([1.0, 3.0, 4.0])
    params = {"distance": "kl", "alpha": 0.25, "teacher_temperature": 4.0, "student_temperature": 4.0}
    out = prediction_loss(s, y, t, params, "regression")
    gold = ((0.0 ** 2 + 1.0 ** 2 + 0.0 ** 2) / 3)
    kd = ((0.5 ** 2 + 0.0 + 1.0 ** 2) / 3)  # temperatures unused: a softmax over one output is constant
    assert out["loss_mse"].item() == pytest.approx(gold) and out["loss_kd"].item() == pytest.approx(kd)
    assert out["loss"].item() == pytest.approx(0.75 * gold + 0.25 * kd)


REGRESSION = """\
name: sim
version: 1
task_type: regression
format: tsv
files: {train: train.tsv, dev: dev.tsv}
text_fields: [a, b]
label_field: y
label_range: [0, 5]
metrics: [pearson, spearman]
"""


@pytest.mark.parametrize("edit, pattern", [
    (("label_range: [0, 5]", "labels: [low, high]"), r"a regression task has no label set; use label_range"),
    (("label_range: [0, 5]", "label_range: [5, 0]"), r"label_range must be \[low, high\] with low < high"),
    (("metrics: [pearson, spearman]", "metrics: [accuracy]"),
     r"unknown metric 'accuracy' for task_type regression. Allowed: pearson, spearman"),
])
def test_a_regression_yaml_is_refused_clearly(tmp_path, edit, pattern):
    (tmp_path / "task.yaml").write_text(REGRESSION.replace(*edit))
    (tmp_path / "train.tsv").write_text("a\tb\ty\nx\ty\t1.5\n")
    (tmp_path / "dev.tsv").write_text("a\tb\ty\nx\tz\t2\n")
    with pytest.raises(StudyConfigError, match=pattern):
        resolve_dataset(tmp_path / "task.yaml")
