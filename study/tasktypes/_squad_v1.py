"""SQuAD v1.1's official scoring, as ``evaluate-v1.1.py`` (Rajpurkar et al. 2016) computes it.

Copied logic: ``normalize_answer`` (lower-case, drop punctuation, the articles a/an/the and extra
whitespace), exact match, bag-of-tokens F1, and the maximum over the reference answers. The
official script reports percentages; ``squad_scores`` returns fractions in [0, 1].
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction: str, ground_truths: list[str]) -> float:
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def squad_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """``exact_match`` and ``f1`` averaged over questions, as fractions.

    Raises:
        ValueError: lengths differ, no questions, or a question without reference answers.
    """
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need equal, non-zero lengths; got {len(predictions)} predictions, "
                         f"{len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every question needs at least one reference answer")
    em = sum(metric_max_over_ground_truths(exact_match_score, p, r) for p, r in zip(predictions, references))
    f1 = sum(metric_max_over_ground_truths(f1_score, p, r) for p, r in zip(predictions, references))
    return {"exact_match": em / len(predictions), "f1": f1 / len(predictions)}
