"""Token classification (named-entity recognition): one tag per word, CoNLL files, seqeval F1.

Files (``format: conll``): one word per line, columns separated by tabs (WNUT-17) or spaces
(CoNLL-2003); a blank line ends a sentence and ``-DOCSTART-`` lines are skipped. The YAML names
the word's and the tag's column by 0-based position (``text_fields: [0]``, ``label_field: 3``
for CoNLL-2003; ``label_field: 1`` for WNUT-17) and declares the tag set (``labels``).

Label alignment: a word's tag sits on its first sub-token; its other sub-tokens and the special
tokens get -100 (ignored by the loss, the metric and the prediction-layer KD). Words cut off by
``max_length`` are predicted ``O`` when scoring, so the metric always covers every gold entity.

Metrics: entity-level (span) micro ``f1``, ``precision`` and ``recall`` from ``seqeval`` in its
default (conlleval) mode, as fractions. Prediction-layer KD compares the (P, C) logits at the P
labelled positions of the batch (``KDInputs.positions``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import model_validator
from transformers import AutoModelForTokenClassification

from study.core.device import autocast
from study.core.errors import StudyConfigError
from study.tasks.formats import read_text
from study.tasks.schema import TaskDoc, names_list, validate_task
from study.tasks.spec import Split, TaskSpec
from study.tasks.types import FeatureDataset, TaskType, register

IGNORE = -100


class TokenDoc(TaskDoc):
    """A token-classification task's YAML: ``format: conll``, the word's and the tag's 0-based
    columns (``text_fields: [0]``, ``label_field: 3``) and the tag set (``labels``)."""

    text_fields: Any = [0]
    label_field: Any = None
    labels: list[Any] | None = None

    @model_validator(mode="after")
    def _conll(self):
        if self.format != "conll":
            raise ValueError(f"format {self.format!r}: token_classification reads format: conll.")
        if self.labels is None:
            raise ValueError("a token_classification task declares its tag set: labels: [O, B-PER, ...].")
        names_list(self.labels, "labels")
        for key, what in (("text_fields", "word"), ("label_field", "tag")):
            value = self.position(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} is the 0-based column of the {what} (e.g. text_fields: [0], "
                                 f"label_field: 3), got {getattr(self, key)!r}.")
        if not self.files:
            raise ValueError("declare files (per split).")
        if self.hub is not None:
            raise ValueError("token_classification reads CoNLL files only; remove hub.")
        if self.split is not None and self.split.group_by is not None:
            raise ValueError("split.group_by is not available for conll files.")
        return self

    def position(self, key: str) -> Any:
        value = getattr(self, key)
        return value[0] if key == "text_fields" and isinstance(value, list) and len(value) == 1 else value


def read_conll(text: str, where: str, word_col: int, tag_col: int, labels: tuple[str, ...]):
    """Sentences of a CoNLL file: ``(words, tag ids, first line number)`` each.

    Raises:
        StudyConfigError: a line with too few columns, or a tag outside ``labels`` (names
            ``where``, the line and what is expected); a file with no sentence.
    """
    index = {t: i for i, t in enumerate(labels)}
    sentences, words, tags, start = [], [], [], 0
    need = max(word_col, tag_col) + 1
    lines = text.split("\n")
    for lineno, line in enumerate(lines + [""], start=1):
        line = line.rstrip("\r")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append((tuple(words), tags, start))
            words, tags = [], []
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) < need:
            raise StudyConfigError(f"{where} line {lineno}: {len(cols)} column(s) in {line[:60]!r}; expected "
                                   f"at least {need} (the word in column {word_col}, the tag in column {tag_col}, "
                                   "0-based), one word per line and a blank line between sentences.")
        tag = cols[tag_col].strip()
        if tag not in index:
            raise StudyConfigError(f"{where} line {lineno}: tag {tag!r} is not one of the declared labels "
                                   f"{list(labels)}.")
        if not words:
            start = lineno
        words.append(cols[word_col])
        tags.append(index[tag])
    if not sentences:
        raise StudyConfigError(f"{where} holds no sentences; expected one word per line and a blank line "
                               "between sentences.")
    return sentences


def align_labels(word_ids: list[int | None], word_tags: list[int]) -> list[int]:
    """Per sub-token label: the word's tag on its first sub-token, -100 on its other sub-tokens
    and on special tokens (``word_ids`` as a fast tokenizer's ``word_ids()`` gives them)."""
    out, previous = [], None
    for w in word_ids:
        out.append(IGNORE if w is None or w == previous else word_tags[w])
        if w is not None:
            previous = w
    return out


class TokenizedWords(FeatureDataset):
    """Sentences tokenised once (no padding), labels aligned to first sub-tokens; ``word_ids`` per
    feature maps each token position to its word (None for specials)."""

    def __init__(self, split, tokenizer, max_length: int):
        self.split = split
        self.task_type = "token_classification"
        enc = tokenizer([list(w) for w in split.texts], is_split_into_words=True, truncation=True,
                        max_length=max_length)
        self.word_ids = [enc.word_ids(i) for i in range(len(split))]
        self.features = []
        for i, tags in enumerate(split.labels):
            feat = {k: enc[k][i] for k in enc.keys()}
            feat["labels"] = align_labels(self.word_ids[i], tags)
            feat["idx"] = i
            self.features.append(feat)


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 (fractions) of tag sequences, seqeval's default
    (conlleval) mode: an entity counts when its type and both boundaries are right."""
    from seqeval.metrics import (  # lazy: only scoring NER needs seqeval
        f1_score,
        precision_score,
        recall_score,
    )

    return {"f1": float(f1_score(gold, predicted, zero_division=0)),
            "precision": float(precision_score(gold, predicted, zero_division=0)),
            "recall": float(recall_score(gold, predicted, zero_division=0))}


@register("token_classification")
class TokenClassification(TaskType):
    """Words -> (B, T, C) logits; targets (B, T) with -100 off the first sub-tokens."""

    auto_class = AutoModelForTokenClassification
    metrics = ("f1", "precision", "recall")
    pad_values = {"labels": IGNORE}
    labels_bound_to_text = "the word tags"
    needs_positions = True

    def kd_view(self, student_logits, labels, teacher_logits, positions):
        """Both models' (P, C) logits and the (P,) tags at the P labelled positions (first
        sub-tokens): per labelled token, the loss is then a classification's."""
        super().kd_view(student_logits, labels, teacher_logits, positions)
        keep = positions.bool()  # (B, T)
        return student_logits[keep], labels[keep], (teacher_logits[keep] if teacher_logits is not None else None)

    def parse(self, doc, where, root):
        d = validate_task(TokenDoc, doc, where)
        labels = names_list(d.labels, "labels")
        return TaskSpec(**d.common(where, root), text_fields=(d.position("text_fields"),),
                        label_field=d.position("label_field"), num_labels=len(labels), has_header=False,
                        label_names=labels, options=(("type_version", self.version),))

    def read_file(self, spec, path, entry, group_by):
        text = read_text(spec, Path(path), entry)
        sentences = read_conll(text, f"Data file {str(path)!r}", spec.text_fields[0], spec.label_field,
                               spec.label_names)
        return Split(texts=[s[0] for s in sentences], labels=[s[1] for s in sentences]), []

    def read_hub(self, spec):
        raise StudyConfigError(f"Task {spec.name!r}: token_classification reads CoNLL files only.")

    def tokenize(self, spec, split, tokenizer, max_length):
        return TokenizedWords(split, tokenizer, max_length)

    def split_batch(self, batch):
        labels = batch.pop("labels")  # (B, T)
        return labels, labels != IGNORE

    def dev_labels(self, data) -> list:
        return list(data.split.labels)

    @torch.no_grad()
    def evaluate(self, model, loader, data, labels, spec, device, precision="fp32"):
        """Entity-level F1/precision/recall over every word of ``data`` and ``loss``: the mean
        cross-entropy per labelled token, nats."""
        model.eval()
        pred_ids: dict[int, np.ndarray] = {}
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            idx = batch.pop("idx")
            targets, keep = self.split_batch(batch)
            with autocast(device, precision):
                logits = model(**batch).logits.float()  # (B, T, C)
            total += float(torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum"))
            count += int(keep.sum())
            for row, i in enumerate(idx.tolist()):
                pred_ids[i] = logits[row].argmax(-1).cpu().numpy()
        names = spec.label_names
        gold, predicted = [], []
        for i, tags in enumerate(labels):
            words = ["O"] * len(tags)
            seen = set()
            for pos, w in enumerate(data.word_ids[i]):
                if w is not None and w not in seen:
                    seen.add(w)
                    words[w] = names[int(pred_ids[i][pos])]
            gold.append([names[t] for t in tags])
            predicted.append(words)
        return self.scored(entity_scores(gold, predicted), spec, total, count)

