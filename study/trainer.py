"""The training loop: one function a reader can follow top to bottom.

AdamW, linear warm-up then linear decay, gradient clipping, evaluation on dev after each
epoch. The teacher (if any) runs in eval mode under ``torch.no_grad`` so it is outside the
student's graph. On CUDA the forward passes run under bf16 autocast; on CPU everything is fp32
and deterministic (same cell, same seed → same dev score).
"""

from __future__ import annotations

import hashlib
import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import LengthGroupedSampler

from study.data import Split, TaskSpec
from study.metrics import compute_metrics
from study.objectives import Distillation, FeatureSource, FeatureTap, KDInputs


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream (``init``, ``data_order``, ``dropout``...).

    Streams depend on the cell's seed and the stream's name only, so cells that differ in one
    factor share initial weights and data order (common random numbers): a paired comparison.
    """
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class TokenizedSplit(torch.utils.data.Dataset):
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

    @property
    def lengths(self) -> list[int]:
        """Token count of each example (no padding)."""
        return [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def select_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda`` as given.

    Raises:
        ValueError: ``cuda`` requested without a GPU, or an unknown device string.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"Unknown device {device!r}: use auto, cpu or cuda.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' requested but torch sees no GPU; use --device cpu or auto.")
    return torch.device(device)


@dataclass
class TrainResult:
    """What a training run produced: final dev metrics (fractions) and costs."""

    dev_metrics: dict[str, float]
    wall_time_s: float
    train_time_s: float
    train_examples_per_s: float
    peak_memory_mb: float
    history: list[dict] = field(default_factory=list)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA allocator peak on GPU; peak resident set of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, task: TaskSpec, device: torch.device) -> np.ndarray:
    """Predictions over a loader: class ids (N,) int64, or scores (N,) float32 for regression."""
    return predict_with_loss(model, loader, task, device)[0]


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
        with _autocast(device):
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


@torch.no_grad()
def teacher_logits(teacher: torch.nn.Module, data: TokenizedSplit, tokenizer: PreTrainedTokenizerBase,
                   device: torch.device, batch_size: int = 128) -> torch.Tensor:
    """The teacher's logits for every example (feature) of ``data``, float32 on CPU, in row order:
    (N, C) for sequence tasks; (N, T_max, C) for token classification and (N, T_max, 2) (start,
    end) per window for extractive QA, T_max the longest feature, zero beyond each feature's
    length (batches are right-padded, so a batch reads ``cache[idx, :T]``).

    The teacher is frozen and in eval mode (no dropout), so its logits for an example never change
    during a student's training: objectives that need only the logits read them from this cache
    instead of running the teacher on every step.
    """
    from study.tasktypes import get_type

    ttype = get_type(getattr(data, "task_type", "classification"))
    teacher.to(device).eval()
    collate = ttype.collator(tokenizer)
    order = sorted(range(len(data)), key=data.lengths.__getitem__)  # little padding per batch
    loader = DataLoader(torch.utils.data.Subset(data, order), batch_size=batch_size, shuffle=False,
                        collate_fn=collate)
    out = torch.empty(0)
    t_max = max(data.lengths, default=0)
    for batch in loader:
        idx = batch.pop("idx")
        ttype.split_batch(batch)
        batch = {k: v.to(device) for k, v in batch.items()}
        with _autocast(device):
            logits = ttype.logits(teacher(**batch)).float().cpu()  # (B, C) or (B, T, C)
        if out.numel() == 0:
            shape = (len(data), logits.shape[-1]) if logits.dim() == 2 else (len(data), t_max, logits.shape[-1])
            out = torch.zeros(shape)
        if logits.dim() == 2:
            out[idx] = logits
        else:  # a batch's padded positions hold logits too: keep each feature's own tokens only
            real = batch["attention_mask"].bool().cpu()[..., None]  # (B, T, 1)
            out[idx, :logits.shape[1]] = logits.masked_fill(~real, 0.0)
    return out


def evaluate(model: torch.nn.Module, loader: DataLoader, labels: list, task: TaskSpec, device: torch.device) -> dict[str, float]:
    """The task's official dev metrics (fractions), ``score``, and ``loss`` (the mean dev loss:
    cross-entropy in nats per example, or squared error for regression)."""
    preds, loss = predict_with_loss(model, loader, task, device)
    return {**compute_metrics(task.name, preds, np.asarray(labels)), "loss": loss}


def train(
    model: torch.nn.Module,
    objective: Distillation,
    train_data: TokenizedSplit,
    dev_data: TokenizedSplit,
    dev_labels: list,
    task: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    budget: dict,
    seed: int,
    device: torch.device,
    teacher: torch.nn.Module | None = None,
    log_metrics: Callable[[list[tuple[str, float, int]]], None] | None = None,
    desc: str = "train",
    cached_teacher_logits: torch.Tensor | None = None,
    mixup: dict | None = None,
    on_epoch_end: Callable[[int, torch.nn.Module, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_data`` with ``objective`` and return final dev metrics.

    ``train_data``/``dev_data`` come from the task type's ``tokenize`` (``study.tasktypes``), which
    also gives the collator, the targets and positions of a batch, and the dev metrics.

    Args:
        budget: ``epochs``, ``learning_rate``, ``batch_size``, ``warmup_ratio``,
            ``weight_decay``, ``max_grad_norm``.
        log_metrics: called once per epoch with ``(key, value, step)`` triples (batched
            logging; ``train_loss`` per optimiser step, dev metrics per epoch).
        cached_teacher_logits: (N, C) from ``teacher_logits``; used instead of running the teacher
            when the objective needs only logits.
        mixup: a resolved mix-up slot (``study.objectives.mixup``); ``{}``/None is none.
        on_epoch_end: called after each epoch's evaluation with ``(epoch, model, dev_metrics)``
            (the teacher keeps its best-metric and lowest-loss checkpoints this way).

    Raises:
        FloatingPointError: the loss became nan or inf (the message names the step).
        ValueError: the objective reads the teacher and neither it nor cached logits were given.
    """
    start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    from study.tasktypes import get_type

    ttype = get_type(task.task_type)
    torch.manual_seed(derive_seed(seed, "dropout"))
    collate = ttype.collator(tokenizer)
    # Batches of similar length (HF's group_by_length) cut padding about in half on GLUE: ~1.7x faster.
    sampler = LengthGroupedSampler(budget["batch_size"], lengths=train_data.lengths,
                                   generator=torch.Generator().manual_seed(derive_seed(seed, "data_order")))
    loader = DataLoader(train_data, batch_size=budget["batch_size"], sampler=sampler, collate_fn=collate)
    dev_loader = DataLoader(dev_data, batch_size=128, shuffle=False, collate_fn=collate)

    model.to(device)
    objective.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    use_cache = (objective.needs_teacher and not objective.needs_teacher_forward
                 and cached_teacher_logits is not None)
    run_teacher = teacher is not None and objective.needs_teacher and not use_cache
    if objective.needs_teacher and not (use_cache or run_teacher):
        raise ValueError("the objective reads the teacher, but neither a teacher nor cached logits were given")
    if mixup and teacher is None:
        raise ValueError("mix-up distillation runs the teacher on mixed inputs: give the teacher")
    mix_gen = torch.Generator().manual_seed(derive_seed(seed, "mixup"))
    mix_rng = random.Random(derive_seed(seed, "mixup_lambda"))
    # Forward hooks keep the Q/K/V projections that attention-like features are computed from.
    s_layers, t_layers = objective.taps()
    taps = [FeatureTap(model, set(s_layers), set().union(*s_layers.values())) if s_layers else None,
            FeatureTap(teacher, set(t_layers), set().union(*t_layers.values())) if t_layers else None]
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n  # noqa: E731
    named = list(model.named_parameters()) + list(objective.named_parameters())
    groups = [
        {"params": [p for n, p in named if p.requires_grad and not no_decay(n)], "weight_decay": budget["weight_decay"]},
        {"params": [p for n, p in named if p.requires_grad and no_decay(n)], "weight_decay": 0.0},
    ]
    assert sum(len(g["params"]) for g in groups) == len(params)
    optimizer = torch.optim.AdamW(groups, lr=budget["learning_rate"])
    total_steps = budget["epochs"] * math.ceil(len(train_data) / budget["batch_size"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(budget["warmup_ratio"] * total_steps), total_steps)

    history: list[dict] = []
    step, seen, train_time = 0, 0, 0.0
    dev_metrics: dict[str, float] = {}
    try:
        for epoch in range(1, budget["epochs"] + 1):
            model.train()
            # Losses stay on the device and reach the host once per epoch (each .item() would be a
            # GPU synchronisation); finiteness is read every CHECK_EVERY steps.
            recorded: dict[str, list[torch.Tensor]] = {}
            first_step = step + 1
            t0 = time.perf_counter()
            bar = tqdm(loader, desc=f"{desc} epoch {epoch}/{budget['epochs']}", leave=False, unit="batch")
            for batch in bar:
                batch = {k: v.to(device) for k, v in batch.items()}
                labels, positions = ttype.split_batch(batch)  # (B,), (B, T) or (B, 2); (B, T) bool or None
                idx = batch.pop("idx")
                mask = batch["attention_mask"].bool()  # (B, T)
                for tap in taps:
                    if tap is not None:
                        tap.clear()
                with _autocast(device):
                    out = model(**batch, output_hidden_states=objective.needs_hidden)
                    t_out, t_logits = None, None
                    if use_cache:
                        t_logits = cached_teacher_logits[idx.cpu()].to(device)  # (B, C) or (B, T_max, C)
                        if t_logits.dim() == 3:
                            t_logits = t_logits[:, :mask.shape[1]]  # (B, T, C)
                    elif run_teacher:
                        with torch.no_grad():
                            t_out = teacher(**batch, output_hidden_states=objective.needs_hidden)
                            t_logits = ttype.logits(t_out).float()
                student_src = teacher_src = None
                if len(objective.terms):
                    student_src = FeatureSource(mask, model.config.num_attention_heads, out.hidden_states,
                                                taps[0].projections if taps[0] else {})
                    teacher_src = FeatureSource(mask, teacher.config.num_attention_heads, t_out.hidden_states,
                                                taps[1].projections if taps[1] else {})
                losses = objective(KDInputs(
                    student_logits=ttype.logits(out).float(),  # (B, C), (B, T, C) or (B, T, 2)
                    labels=labels,  # (B,), (B, T) or (B, 2)
                    mask=mask,  # (B, T)
                    teacher_logits=t_logits,
                    student=student_src, teacher=teacher_src, index=idx,
                    positions=positions,
                ))
                if mixup:
                    losses["loss_mixup"] = mixup_loss(model, teacher, objective, batch,
                                                      mix_rng.betavariate(mixup["alpha"], mixup["alpha"]),
                                                      mix_gen, device)
                    losses["loss"] = losses["loss"] + mixup["weight"] * losses["loss_mixup"]
                    losses["loss_mixup"] = losses["loss_mixup"].detach()
                loss = losses["loss"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, budget["max_grad_norm"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                seen += labels.shape[0]
                for k, v in losses.items():
                    recorded.setdefault("train_loss" if k == "loss" else f"train_{k}", []).append(v.detach())
                if step % CHECK_EVERY == 0:
                    _check_finite(recorded["train_loss"], first_step)
                    bar.set_postfix(loss=f"{recorded['train_loss'][-1].item():.4f}")
            _check_finite(recorded.get("train_loss", []), first_step)
            train_time += time.perf_counter() - t0
            points: list[tuple[str, float, int]] = []
            for key, values in recorded.items():
                host = torch.stack(values).float().cpu().tolist()  # one transfer per component and epoch
                points += [(key, v, first_step + i) for i, v in enumerate(host)]
            dev_metrics = ttype.evaluate(model, dev_loader, dev_data, dev_labels, task, device)
            points += [(f"dev_{k}", float(v), epoch) for k, v in dev_metrics.items()]
            history.append({"epoch": epoch, **dev_metrics})
            if log_metrics:
                log_metrics(points)
            if on_epoch_end:
                on_epoch_end(epoch, model, dev_metrics)
    finally:
        for tap in taps:
            if tap is not None:
                tap.remove()
    wall = time.perf_counter() - start
    return TrainResult(dev_metrics=dev_metrics, wall_time_s=wall, train_time_s=train_time,
                       train_examples_per_s=seen / train_time if train_time else float("nan"),
                       peak_memory_mb=peak_memory_mb(device), history=history)


def mixup_loss(model: torch.nn.Module, teacher: torch.nn.Module, objective: Distillation, batch: dict,
               lam: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """MixKD's term on one batch (see ``study.objectives.mixup``): both models see the same
    interpolation, weight ``lam`` in [0, 1], of their own word embeddings with those of the
    batch's rows permuted by ``generator`` (seeded: a rerun mixes the same pairs); a float32+ scalar.
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, T)
    perm = torch.randperm(ids.shape[0], generator=generator).to(device)
    mixed_mask = torch.maximum(mask, mask[perm])
    extra = {k: v for k, v in batch.items() if k == "token_type_ids"}

    def mixed(m: torch.nn.Module) -> torch.Tensor:
        emb = m.get_input_embeddings()(ids)  # (B, T, H)
        return lam * emb + (1.0 - lam) * emb[perm]

    with _autocast(device):
        s_logits = model(inputs_embeds=mixed(model), attention_mask=mixed_mask, **extra).logits.float()
        with torch.no_grad():
            t_logits = teacher(inputs_embeds=mixed(teacher), attention_mask=mixed_mask, **extra).logits.float()
    params = objective.prediction
    if params["distance"] == "none":
        params = {"distance": "kl", "teacher_temperature": 1.0, "student_temperature": 1.0}
    from study.objectives.prediction import teacher_loss

    return teacher_loss(s_logits, t_logits, params, objective.task_type)


#: Steps between reads of the loss's finiteness (each read is a host synchronisation on a GPU).
CHECK_EVERY = 50


def _check_finite(losses: list[torch.Tensor], first_step: int) -> None:
    """Raise FloatingPointError naming the first step whose loss is nan or inf."""
    if not losses:
        return
    stacked = torch.stack(losses)
    finite = torch.isfinite(stacked)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise FloatingPointError(f"non-finite training loss {stacked[bad].item()} at step {first_step + bad}")
