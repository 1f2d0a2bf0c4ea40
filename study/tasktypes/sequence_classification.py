"""One label per sequence: classification (class ids) and regression (a score), the study's
first task types. Parsing and reading stay in ``study.tasks.catalogue`` (the shipped YAMLs, their readers
and every cell id are unchanged); this module is their face behind the ``TaskType`` interface.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, PreTrainedTokenizerBase

from study.core.device import autocast
from study.tasks.catalogue import Split, TaskSpec, _load_hub, _read_file, parse_task
from study.tasks.metrics import METRICS, compute_metrics
from study.tasks.types import FeatureDataset, TaskType, register


class TokenizedSplit(FeatureDataset):
    """A split tokenised once without padding; batches are padded per batch by the collator."""

    def __init__(self, split: Split, tokenizer: PreTrainedTokenizerBase, max_length: int, regression: bool):
        self.split = split
        self.task_type = "regression" if regression else "classification"
        fields = list(zip(*split.texts)) if len(split) else [[]]
        enc = tokenizer(*[list(f) for f in fields], truncation=True, max_length=max_length)
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in range(len(split))]
        dtype = torch.float32 if regression else torch.long
        for i, (feat, label) in enumerate(zip(self.features, split.labels)):
            feat["labels"] = torch.tensor(label, dtype=dtype)
            feat["idx"] = i  # row of this example in a teacher-logit cache




@torch.no_grad()
def predict_with_loss(model: torch.nn.Module, loader: DataLoader, task: TaskSpec,
                      device: torch.device) -> tuple[np.ndarray, float]:
    """Predictions (as ``predict``) and the mean loss to the labels: cross-entropy in nats per
    example, or squared error for regression."""
    model.eval()
    preds, total, count = [], torch.zeros((), dtype=torch.float64), 0
    for batch in loader:
        labels = batch["labels"].to(device)
        batch = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "idx")}
        with autocast(device):
            logits = model(**batch).logits.float()  # (B, C)
        if task.task_type == "regression":
            out = logits.squeeze(-1)
            total += torch.nn.functional.mse_loss(out, labels.float(), reduction="sum").double().cpu()
        else:
            out = logits.argmax(-1)
            total += torch.nn.functional.cross_entropy(logits, labels.long(), reduction="sum").double().cpu()
        count += labels.shape[0]
        preds.append(out)
    return torch.cat(preds).cpu().numpy(), float(total) / max(count, 1)



@register("classification", "regression")
class SequenceClassification(TaskType):
    """A sentence or a sentence pair -> (B, C) logits (C = 1 for regression); metrics from
    ``study.tasks.metrics.METRICS`` (1-D predictions)."""

    auto_class = AutoModelForSequenceClassification

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(METRICS)

    def parse(self, doc, where, root):
        return parse_task(doc, where, root)

    def read_file(self, spec, path, entry, group_by):
        return _read_file(spec, path, entry, group_by)

    def read_hub(self, spec):
        return _load_hub(spec)

    def tokenize(self, spec, split, tokenizer, max_length):
        return TokenizedSplit(split, tokenizer, max_length, self.name == "regression")

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def dev_labels(self, data) -> list:
        return [f["labels"].item() for f in data.features]

    def evaluate(self, model, loader, data, labels, spec, device):
        preds, loss = predict_with_loss(model, loader, spec, device)
        return {**compute_metrics(spec.name, preds, np.asarray(labels)), "loss": loss}
