"""General (task-agnostic) distillation: students distilled from a pretrained teacher on packed raw
text, before any task (DistilBERT, Sanh et al. 2019; TinyBERT's general distillation, Jiao et al.
2020; MiniLM, Wang et al. 2020 and 2021; Wang et al. 2023's task-agnostic setting).

There are no labels. Each student's loss is its ``Distillation``'s intermediate terms (hidden
states, attention, relations: the features, losses and mappings every cell uses), plus, when its
prediction slot is given, prediction-layer KD over masked-LM outputs at the masked positions:
``(1 - alpha) * L_mlm + alpha * L_kd`` (DistilBERT's L_mlm and L_ce), computed as token
classification over the vocabulary (``study.objectives.prediction``). Masking then follows BERT
(15% of tokens; 80% [MASK], 10% random, 10% kept; ``DataCollatorForLanguageModeling``) from a
seeded stream, the same masks for every student of a group and for the teacher.

Students that share the corpus blocks, the seed, the batch size and the step budget train
together (``train_general_group``): the teacher runs once per batch for all of them; each student
keeps its own optimiser, schedule and dropout stream (``study.training.trainer.setup_student``),
so on CPU each ends as it would have alone.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForLanguageModeling

from study.core import contract
from study.core.device import autocast, peak_memory_mb
from study.core.hashing import derive_seed
from study.objectives import FeatureSource, FeatureTap, KDInputs
from study.training.state import LiveStudent, Student
from study.training.trainer import (
    CHECK_EVERY,
    TrainResult,
    check_finite,
    drop_student,
    optimiser_step,
    setup_student,
)

#: BERT's masking rate (Devlin et al. 2019), DistilBERT's too.
MLM_PROBABILITY = 0.15


def split_blocks(blocks: torch.Tensor, dev_every: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, dev) of packed ``blocks`` (N, T) int64: every ``dev_every``-th block (from the first)
    is held out for the dev loss, the rest train. Raises ValueError when nothing is left to train on."""
    n = blocks.shape[0]
    dev_rows = torch.arange(0, n, dev_every)
    keep = torch.ones(n, dtype=torch.bool)
    keep[dev_rows] = False
    if not bool(keep.any()):
        raise ValueError(f"{n} packed block(s) leave nothing to train on with dev_every={dev_every}")
    return blocks[keep], blocks[dev_rows]


def total_steps(n_train: int, budget: dict) -> int:
    """Optimiser steps of a general stage: ``epochs`` passes over ``n_train`` blocks in batches of
    ``batch_size`` (the last batch of an epoch may be short), capped by ``max_steps``."""
    steps = budget["epochs"] * math.ceil(n_train / budget["batch_size"])
    return min(steps, budget["max_steps"]) if budget.get("max_steps") else steps


class Masker:
    """BERT's masking of a batch, from the stream ``mlm_mask`` of the seed: batch ``step`` is masked
    the same way in every run and for every student (``DataCollatorForLanguageModeling``'s rule,
    with its random draws made under a fixed seed so they leave the caller's streams alone)."""

    def __init__(self, tokenizer, seed: int):
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=MLM_PROBABILITY)
        self.seed = seed

    def __call__(self, input_ids: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids (B, T) int64, labels (B, T) int64 with -100 where not masked)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, f"mlm_mask_{step}"))
            return self.collator.torch_mask_tokens(input_ids.clone())


class _Teacher:
    """The teacher's one pass per batch: hidden states, the Q/K/V taps the students read, and its
    masked-LM logits when some student distils them."""

    def __init__(self, model: torch.nn.Module, members: list[LiveStudent], precision: str):
        self.model = model.eval()
        layers: dict[int, set[str]] = {}
        for s in members:
            for layer, names in s.spec.objective.taps()[1].items():
                layers.setdefault(layer, set()).update(names)
        self.tap = FeatureTap(model, set(layers), set().union(*layers.values())) if layers else None
        self.needs_hidden = any(s.spec.objective.needs_hidden for s in members)
        self.precision = precision

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, device: torch.device):
        if self.tap is not None:
            self.tap.clear()
        with autocast(device, self.precision):
            out = self.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=self.needs_hidden)
        logits = out.logits.float() if hasattr(out, "logits") else None  # (B, T, V) with an MLM head
        source = FeatureSource(mask, self.model.config.num_attention_heads, out.hidden_states,
                               self.tap.projections if self.tap else {})
        return logits, source

    def remove(self) -> None:
        if self.tap is not None:
            self.tap.remove()


def _losses(s: LiveStudent, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None,
            teacher_logits: torch.Tensor | None, teacher_source: FeatureSource, device: torch.device) -> dict:
    """One student's losses on one batch (graph kept): ``{"loss", <components>}``."""
    model, objective = s.spec.model, s.spec.objective
    if s.tap is not None:
        s.tap.clear()
    with autocast(device, s.precision):
        out = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=objective.needs_hidden)
    source = FeatureSource(mask, model.config.num_attention_heads, out.hidden_states,
                           s.tap.projections if s.tap else {})
    mlm = objective.prediction is not None
    return objective(KDInputs(
        student_logits=out.logits.float() if mlm else ids.new_zeros((0,), dtype=torch.float32),  # (B, T, V)
        labels=labels if mlm else ids,  # (B, T): token ids at masked positions, -100 elsewhere
        mask=mask,  # (B, T) bool
        teacher_logits=teacher_logits if mlm else None,
        student=source, teacher=teacher_source,
        positions=(labels != -100) if mlm else None,  # (B, T) bool: the masked positions
    ))


@torch.no_grad()
def _dev_losses(s: LiveStudent, dev: torch.Tensor, teacher: _Teacher, masker: Masker | None,
                device: torch.device, batch_size: int) -> dict[str, float]:
    """The student's mean losses on the held-out blocks, in eval mode (no dropout), masks from a
    fixed stream (step -1 - i for dev batch i): ``{"loss": nats, <components>}``."""
    model = s.spec.model
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for i, start in enumerate(range(0, dev.shape[0], batch_size)):
        ids = dev[start:start + batch_size].to(device)
        labels = None
        if masker is not None:
            ids, labels = masker(ids.cpu(), -1 - i)
            ids, labels = ids.to(device), labels.to(device)
        mask = torch.ones_like(ids, dtype=torch.bool)
        t_logits, t_source = teacher(ids, mask, device)
        losses = _losses(s, ids, mask, labels, t_logits, t_source, device)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v) * ids.shape[0]
        n += ids.shape[0]
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


def train_general_group(students: list[Student], blocks: torch.Tensor, teacher: torch.nn.Module,
                        device: torch.device, *, dev_every: int, tokenizer=None,
                        teacher_precision: str = "fp32") -> list[TrainResult | Exception]:
    """Distil ``students`` from ``teacher`` on packed raw text, together on the same batches.

    Args:
        students: each with a base encoder (``AutoModel``) or, for masked-LM KD, a
            ``...ForMaskedLM`` model; its ``Distillation`` (intermediate terms; a prediction slot
            for masked-LM KD, task type ``token_classification``); its budget (``epochs``,
            ``max_steps`` or None, ``learning_rate``, ``batch_size``, ``warmup_ratio``,
            ``weight_decay``, ``max_grad_norm``, optionally ``precision``). All share the seed, the
            batch size and the step budget.
        blocks: (N, T) int64 packed input ids (``study.corpora.pack``); every ``dev_every``-th
            block is held out (``split_blocks``).
        teacher: the pretrained teacher (``AutoModel``, or ``...ForMaskedLM`` for masked-LM KD).
        tokenizer: the teacher's, needed for masking when some student distils masked-LM outputs.

    Returns:
        Per student its ``TrainResult`` (``dev_metrics``: ``loss`` and each component, nats on the
        held-out blocks, and ``score`` = -loss; ``history`` one entry per epoch), or the exception
        that dropped it (a ``FloatingPointError`` naming the step). ``KeyboardInterrupt`` propagates.

    Raises:
        ValueError: the students differ in seed, batch size or step budget; masked-LM KD without a
            tokenizer.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    first = students[0]
    _check_group(students)
    train_blocks, dev_blocks = split_blocks(blocks, dev_every)
    budget, seed = first.budget, first.seed
    steps = total_steps(train_blocks.shape[0], budget)
    masker = None
    if any(s.objective.prediction is not None for s in students):
        if tokenizer is None:
            raise ValueError("masked-LM KD masks the batches: give the teacher's tokenizer")
        masker = Masker(tokenizer, seed)
    results: list[TrainResult | Exception | None] = [None] * len(students)
    members = _members(students, results, teacher, steps, device)
    t_pass = _Teacher(teacher.to(device), members, teacher_precision)
    order_gen = torch.Generator().manual_seed(derive_seed(seed, "data_order"))
    batch_size = budget["batch_size"]
    train_time, step, epoch = 0.0, 0, 0
    bar = tqdm(total=steps, desc=f"{first.desc}" + (f" (+{len(students) - 1})" if len(students) > 1 else ""),
               unit="step", leave=False)
    try:
        while step < steps:
            epoch += 1
            order = torch.randperm(train_blocks.shape[0], generator=order_gen)
            t0 = time.perf_counter()
            for s in members:
                s.spec.model.train()
                s.recorded, s.first_step = {}, s.step + 1
            for b in range(0, len(order), batch_size):
                if step >= steps:
                    break
                _general_step(members, train_blocks[order[b:b + batch_size]], step, t_pass, masker, device)
                step += 1
                bar.update(1)
            train_time += time.perf_counter() - t0
            for s in members:
                if s.error is None:
                    try:
                        with s.rng.active():
                            _end_epoch(s, epoch, dev_blocks, t_pass, masker, device, batch_size)
                    except Exception as exc:
                        drop_student(s, exc)
    finally:
        bar.close()
        t_pass.remove()
        for s in members:
            if s.tap is not None:
                s.tap.remove()
    wall, cpu, memory = time.perf_counter() - start, time.process_time() - cpu_start, peak_memory_mb(device)
    for s in members:
        results[s.position] = s.error if s.error is not None else TrainResult(
            dev_metrics=s.dev_metrics, wall_time_s=wall, train_time_s=train_time,
            train_examples_per_s=s.seen / train_time if train_time else float("nan"), peak_memory_mb=memory,
            history=s.history, group_size=len(students), cpu_time_s=cpu, cpu_threads=torch.get_num_threads())
    return results


def _check_group(students: list[Student]) -> None:
    """Raise ValueError unless every student shares the first one's seed, batch size and step budget."""
    first = students[0]
    for spec in students[1:]:
        for key in ("batch_size", "epochs", "max_steps"):
            if spec.budget.get(key) != first.budget.get(key) or spec.seed != first.seed:
                raise ValueError(f"students of a general group share seed, batch_size, epochs and max_steps "
                                 f"({spec.desc} differs in {key} or seed)")


def _members(students: list[Student], results: list, teacher: torch.nn.Module, steps: int,
             device: torch.device) -> list[LiveStudent]:
    """Each student's training state; one whose set-up raises gets the exception in ``results``."""
    members = []
    for i, spec in enumerate(students):
        try:  # one "epoch" of ``steps`` batches: the schedule spans the whole budget
            one_pass = Student(spec.model, spec.objective, {**spec.budget, "epochs": 1}, spec.seed,
                               spec.log_metrics, spec.desc)
            members.append(setup_student(one_pass, i, teacher, steps, device))
        except Exception as exc:
            results[i] = exc
    return members


def _general_step(members: list[LiveStudent], ids: torch.Tensor, step: int, t_pass: _Teacher,
                  masker: Masker | None, device: torch.device) -> None:
    """One optimiser step of every live student on the batch ``ids`` (B, T); the teacher runs once."""
    labels = None
    if masker is not None:
        ids, labels = masker(ids, step)
        labels = labels.to(device)
    ids = ids.to(device)
    mask = torch.ones_like(ids, dtype=torch.bool)  # packed blocks have no padding
    live = [s for s in members if s.error is None]
    if not live:
        return
    t_logits, t_source = t_pass(ids, mask, device)
    for s in live:
        try:
            with s.rng.active():
                losses = _losses(s, ids, mask, labels, t_logits, t_source, device)
                optimiser_step(s, losses["loss"], s.spec.budget["max_grad_norm"])
                s.scheduler.step()
                s.optimizer.zero_grad(set_to_none=True)
            s.step += 1
            s.seen += ids.shape[0]
            for k, v in losses.items():
                s.recorded.setdefault(contract.TRAIN_PREFIX + k, []).append(v.detach())
            if s.step % CHECK_EVERY == 0:
                check_finite(s.recorded[contract.METRIC_TRAIN_LOSS], s.first_step)
        except Exception as exc:  # one student's failure never stops the others
            drop_student(s, exc)


def _end_epoch(s: LiveStudent, epoch: int, dev: torch.Tensor, t_pass: _Teacher, masker: Masker | None,
               device: torch.device, batch_size: int) -> None:
    """A student's end of a pass: finiteness, its train losses and dev losses logged in one batch."""
    check_finite(s.recorded.get(contract.METRIC_TRAIN_LOSS, []), s.first_step)
    points: list[tuple[str, float, int]] = []
    for key, values in s.recorded.items():
        host = torch.stack(values).float().cpu().tolist()  # one transfer per component and pass
        points += [(key, v, s.first_step + i) for i, v in enumerate(host)]
    dev_losses = _dev_losses(s, dev, t_pass, masker, device, batch_size)
    s.dev_metrics = {**dev_losses, "score": -dev_losses["loss"]}
    points += [(contract.DEV_PREFIX + k, v, epoch) for k, v in s.dev_metrics.items()]
    s.history.append({"epoch": epoch, **s.dev_metrics})
    if s.spec.log_metrics:
        s.spec.log_metrics(points)
