"""What the sequence-level task types share (one label per sentence or sentence pair): reading
files through ``study.tasks.formats`` and the hub, tokenisation, the (B, C) head and 1-D metrics.
A type says what a label is (``label``, ``hub_label``) and what one prediction is
(``predict``, ``loss_sum``); ``sequence_classification`` and ``sequence_regression`` do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, PreTrainedTokenizerBase

from study.core.device import autocast
from study.tasks.formats import read_examples
from study.tasks.hub import hub_columns
from study.tasks.metrics import compute_metrics
from study.tasks.spec import Split, TaskSpec
from study.tasks.types import FeatureDataset, TaskType, get_type


class TokenizedSplit(FeatureDataset):
    """A split tokenised once without padding; batches are padded per batch by the collator.
    ``labels`` of each feature: a 0-d tensor of ``label_dtype`` (int64 class id, float32 score)."""

    def __init__(self, split: Split, tokenizer: PreTrainedTokenizerBase, max_length: int,
                 task_type: str = "classification", label_dtype: torch.dtype = torch.long):
        self.split = split
        self.task_type = task_type
        fields = list(zip(*split.texts)) if len(split) else [[]]
        enc = tokenizer(*[list(f) for f in fields], truncation=True, max_length=max_length)
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in range(len(split))]
        for i, (feat, label) in enumerate(zip(self.features, split.labels)):
            feat["labels"] = torch.tensor(label, dtype=label_dtype)
            feat["idx"] = i  # row of this example in a teacher-logit cache


@torch.no_grad()
def predict_with_loss(model: torch.nn.Module, loader: DataLoader, task: TaskSpec,
                      device: torch.device, precision: str = "fp32") -> tuple[np.ndarray, float]:
    """Predictions (N,) of a sequence task's model over ``loader`` (class ids, or scores for
    regression: the task type's ``predict``) and the mean loss to the labels per example (its
    ``loss_sum``: cross-entropy in nats, or squared error); forward passes in ``precision``."""
    ttype = get_type(task.task_type)
    model.eval()
    preds, total, count = [], torch.zeros((), dtype=torch.float64), 0
    for batch in loader:
        labels = batch["labels"].to(device)
        batch = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "idx")}
        with autocast(device, precision):
            logits = model(**batch).logits.float()  # (B, C)
        total += ttype.loss_sum(logits, labels).double().cpu()
        count += labels.shape[0]
        preds.append(ttype.predict(logits))
    return torch.cat(preds).cpu().numpy(), float(total) / max(count, 1)


class SequenceTaskType(TaskType):
    """A sentence or a sentence pair -> (B, C) logits; metrics from ``study.tasks.metrics``."""

    auto_class = AutoModelForSequenceClassification
    label_dtype = torch.long

    # ------------------------------------------------------------------ what a label is
    def label(self, spec: TaskSpec, value: Any, where: str) -> Any:
        """The target of a raw label read at ``where`` (file and line).

        Raises:
            StudyConfigError: a value the task does not declare (names ``where``)."""
        raise NotImplementedError

    def hub_label(self, spec: TaskSpec, value: Any) -> Any:
        """The target of a label from the hub (already checked by the hub's dataset)."""
        raise NotImplementedError

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C) logits -> (B,) predictions, as the metrics take them."""
        raise NotImplementedError

    def loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The summed loss of (B, C) logits to (B,) labels, a scalar."""
        raise NotImplementedError

    # ------------------------------------------------------------------ TaskType
    def read_file(self, spec, path, entry, group_by):
        return read_examples(spec, path, entry, group_by, lambda value, where: self.label(spec, value, where))

    def read_hub(self, spec):
        return {split: Split(texts=texts, labels=[self.hub_label(spec, y) for y in raw])
                for split, (texts, raw) in hub_columns(spec).items()}

    def tokenize(self, spec, split, tokenizer, max_length):
        return TokenizedSplit(split, tokenizer, max_length, self.name, self.label_dtype)

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def dev_labels(self, data) -> list:
        return [f["labels"].item() for f in data.features]

    def evaluate(self, model, loader, data, labels, spec, device, precision="fp32"):
        preds, loss = predict_with_loss(model, loader, spec, device, precision)
        return {**compute_metrics(spec, preds, np.asarray(labels)), "loss": loss}
