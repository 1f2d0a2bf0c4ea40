"""One label per sequence: classification (class ids) and regression (a score), the study's
first task types. Parsing and reading stay in ``study.tasks.catalogue`` (the shipped YAMLs, their readers
and every cell id are unchanged); this module is their face behind the ``TaskType`` interface.
"""

from __future__ import annotations

import numpy as np
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from study.tasks.types import TaskType, register


@register("classification", "regression")
class SequenceClassification(TaskType):
    """A sentence or a sentence pair -> (B, C) logits (C = 1 for regression); metrics from
    ``study.tasks.metrics.METRICS`` (1-D predictions)."""

    auto_class = AutoModelForSequenceClassification

    @property
    def metrics(self) -> tuple[str, ...]:
        from study.tasks.metrics import METRICS

        return tuple(METRICS)

    def parse(self, doc, where, root):
        from study.tasks.catalogue import parse_task

        return parse_task(doc, where, root)

    def read_file(self, spec, path, entry, group_by):
        from study.tasks.catalogue import _read_file

        return _read_file(spec, path, entry, group_by)

    def read_hub(self, spec):
        from study.tasks.catalogue import _load_hub

        return _load_hub(spec)

    def tokenize(self, spec, split, tokenizer, max_length):
        from study.training.trainer import TokenizedSplit

        return TokenizedSplit(split, tokenizer, max_length, self.name == "regression")

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def dev_labels(self, data) -> list:
        return [f["labels"].item() for f in data.features]

    def evaluate(self, model, loader, data, labels, spec, device):
        from study.tasks.metrics import compute_metrics
        from study.training.trainer import predict_with_loss

        preds, loss = predict_with_loss(model, loader, spec, device)
        return {**compute_metrics(spec.name, preds, np.asarray(labels)), "loss": loss}
