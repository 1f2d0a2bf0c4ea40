"""Dev metrics of the tasks, each registered with its direction (all higher-is-better).

``compute_metrics`` returns the metrics a task's YAML lists plus ``score``: the unweighted mean of
the task's ``score`` metrics (all of its metrics unless the YAML names some). For GLUE that is the
leaderboard convention: the single metric, or the mean of the two for MRPC (F1, accuracy) and
STS-B (Pearson, Spearman); SST-5 and TREC report accuracy and macro-F1 and score accuracy, the
number papers report. Every value is a fraction (accuracy in [0, 1], correlations in [-1, 1]),
never a percentage.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from study.tasks.spec import TaskSpec

VERSION = "1"


def _correlation(fn: Callable, predictions: np.ndarray, labels: np.ndarray) -> float:
    # A constant input has no defined correlation (scipy returns nan and warns). A regressor
    # that collapsed to one value has no correlation with the labels, so report 0.0: a nan
    # would poison means over seeds and could never be compared.
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(predictions, labels)[0])
    return 0.0 if math.isnan(value) else value


@dataclass(frozen=True)
class Metric:
    """A metric of 1-D predictions: ``fn(predictions, labels)``; ``inputs`` says what both are,
    "classes" (int class ids) or "scores" (floats)."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]  # (predictions, labels) -> value
    inputs: str = "classes"
    higher_is_better: bool = True


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", lambda p, y: float(accuracy_score(y, p))),
    "f1": Metric("f1", lambda p, y: float(f1_score(y, p, pos_label=1, zero_division=0.0))),
    # Unweighted mean of the per-class F1 over the classes present in labels or predictions.
    "macro_f1": Metric("macro_f1", lambda p, y: float(f1_score(y, p, average="macro", zero_division=0.0))),
    "matthews_corr": Metric("matthews_corr", lambda p, y: float(matthews_corrcoef(y, p))),
    "pearson": Metric("pearson", lambda p, y: _correlation(pearsonr, p, y), "scores"),
    "spearman": Metric("spearman", lambda p, y: _correlation(spearmanr, p, y), "scores"),
}


def metrics_of(inputs: str) -> tuple[str, ...]:
    """Names of the 1-D metrics taking ``inputs`` ("classes" or "scores"), in ``METRICS`` order."""
    return tuple(name for name, m in METRICS.items() if m.inputs == inputs)

def compute_metrics(spec: TaskSpec, predictions: Sequence, labels: Sequence) -> dict[str, float]:
    """The metrics task ``spec`` declares plus ``score`` (the mean of its score metrics), as fractions.

    Args:
        predictions: shape (N,); class ids for class metrics (take the argmax of the logits
            first), floats for score metrics (STS-B's Pearson and Spearman).
        labels: shape (N,); class ids or gold scores.

    Correlations (STS-B) are 0.0, not nan, when predictions or labels are constant.

    Raises:
        ValueError: a metric that is not a 1-D one (token and span task types score whole
            sequences in their ``evaluate``), empty inputs, lengths differ, predictions are not
            one-dimensional, or non-integer predictions for a class metric.
    """
    other = [name for name in spec.metrics if name not in METRICS]
    if other:
        raise ValueError(f"task {spec.name!r} ({spec.task_type}) lists {other[0]!r}: its metrics come from its "
                         "task type's evaluate (study.tasktypes), not from 1-D predictions")
    classes = any(METRICS[name].inputs == "classes" for name in spec.metrics)
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"predictions and labels must be 1-D, got shapes {p.shape} and {y.shape}"
            + ("; pass class ids (argmax of the logits)" if classes else "")
        )
    if len(p) != len(y) or len(p) == 0:
        raise ValueError(f"need equal, non-zero lengths; got {len(p)} predictions, {len(y)} labels")
    if classes and np.issubdtype(p.dtype, np.floating) and not np.all(p == np.round(p)):
        raise ValueError(f"task {spec.name!r} needs class ids as predictions, got non-integer floats")
    dtype = {"classes": int, "scores": float}
    out = {name: METRICS[name].fn(p.astype(dtype[METRICS[name].inputs]), y.astype(dtype[METRICS[name].inputs]))
           for name in spec.metrics}
    out["score"] = float(np.mean([out[name] for name in spec.score]))
    return out
