"""GLUE metrics on inputs small enough to work out by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from study.core.errors import StudyConfigError
from study.tasks.catalogue import TASKS, get_task
from study.tasks.metrics import compute_metrics


def test_accuracy_three_of_four():
    out = compute_metrics(TASKS["sst2"], [1, 0, 1, 1], [1, 0, 0, 1])
    assert out == {"accuracy": 0.75, "score": 0.75}


def test_rte_and_wnli_use_accuracy():
    assert compute_metrics(TASKS["rte"], [0, 1, 1], [0, 1, 0])["score"] == pytest.approx(2 / 3)
    assert compute_metrics(TASKS["wnli"], [0, 0], [1, 1]) == {"accuracy": 0.0, "score": 0.0}


def test_matthews_of_known_confusion_matrix():
    # TP=3, TN=2, FP=1, FN=1: (3*2 - 1*1) / sqrt((3+1)(3+1)(2+1)(2+1)) = 5/12
    labels = [1, 1, 1, 1, 0, 0, 0]
    preds = [1, 1, 1, 0, 0, 0, 1]
    out = compute_metrics(TASKS["cola"], preds, labels)
    assert out["matthews_corr"] == pytest.approx(5 / 12)
    assert out["score"] == out["matthews_corr"]


def test_matthews_constant_prediction_is_zero():
    assert compute_metrics(TASKS["cola"], [1, 1, 1, 1], [1, 0, 1, 0])["matthews_corr"] == 0.0


def test_mrpc_score_is_mean_of_f1_and_accuracy():
    # TP=2, FP=1, FN=1, TN=1: F1 = 2*2 / (2*2 + 1 + 1) = 2/3; accuracy = 3/5
    out = compute_metrics(TASKS["mrpc"], [1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert list(out) == ["f1", "accuracy", "score"]
    assert out["f1"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["score"] == pytest.approx((2 / 3 + 3 / 5) / 2)


def test_f1_without_positive_predictions_is_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_metrics(TASKS["mrpc"], [0, 0, 0], [1, 0, 1])["f1"] == 0.0


def test_stsb_perfectly_linear():
    labels = np.array([0.0, 1.2, 2.5, 3.0, 4.8])
    out = compute_metrics(TASKS["stsb"], 2 * labels + 1, labels)
    assert out["pearson"] == pytest.approx(1.0)
    assert out["spearman"] == pytest.approx(1.0)
    assert out["score"] == pytest.approx(1.0)
    assert compute_metrics(TASKS["stsb"], -labels, labels)["pearson"] == pytest.approx(-1.0)


def test_stsb_pearson_and_spearman_differ_on_monotone_outlier():
    # x = 1..4, y = (1, 2, 3, 100): centred sums give r = 149 / sqrt(5 * 7205); ranks agree.
    out = compute_metrics(TASKS["stsb"], [1.0, 2.0, 3.0, 100.0], [1.0, 2.0, 3.0, 4.0])
    assert out["pearson"] == pytest.approx(149 / math.sqrt(5 * 7205))
    assert out["spearman"] == pytest.approx(1.0)
    assert out["score"] == pytest.approx((out["pearson"] + 1.0) / 2)


def test_stsb_constant_predictions_give_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_metrics(TASKS["stsb"], [2.5, 2.5, 2.5], [1.0, 2.0, 4.0])
    assert out == {"pearson": 0.0, "spearman": 0.0, "score": 0.0}


def test_each_task_gets_its_declared_metrics_then_score():
    assert TASKS["mrpc"].metrics == ("f1", "accuracy")
    rng = np.random.default_rng(0)
    for task, spec in TASKS.items():
        if spec.task_type not in ("classification", "regression"):
            with pytest.raises(ValueError, match="task type"):  # scored by study.tasktypes
                compute_metrics(spec, [0, 1], [0, 1])
            continue
        if spec.task_type == "regression":
            preds, labels = rng.uniform(0, 5, 20), rng.uniform(0, 5, 20)
        else:
            preds, labels = rng.integers(0, 2, 20), rng.integers(0, 2, 20)
        out = compute_metrics(spec, preds, labels)
        assert tuple(out) == (*spec.metrics, "score")


def test_bad_inputs():
    with pytest.raises(StudyConfigError, match="'sts'"):
        get_task("sts")
    with pytest.raises(ValueError, match="argmax"):
        compute_metrics(TASKS["sst2"], np.zeros((3, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="lengths"):
        compute_metrics(TASKS["sst2"], [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="lengths"):
        compute_metrics(TASKS["sst2"], [], [])
    with pytest.raises(ValueError, match="class ids"):
        compute_metrics(TASKS["sst2"], [0.3, 0.9], [0, 1])
