"""The training loop: one function a reader can follow top to bottom (``train_group``: set-up in
``setup_student``, each batch in ``_train_batch`` with one student's step in ``_student_step``, the end of
an epoch in ``_end_epoch``).

AdamW, linear warm-up then linear decay, gradient clipping, evaluation on dev after each
epoch. The teacher (if any) runs in eval mode under ``torch.no_grad`` so it is outside the
student's graph. Each budget's ``precision`` (``fp32``, ``bf16``, ``fp16``; ``study.core.device``)
sets the autocast of its model's passes, the same on CPU and CUDA: a student's forward and dev
evaluation in its own, the teacher's passes and logit cache in the teacher's (fp16 adds a gradient
scaler). On CPU a run is deterministic in fp32 and bf16 (same cell, same seed → same losses and
dev score). Students that share their batches
train together, each exactly as alone (``train_group``); ``train`` is the one-student case.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import LengthGroupedSampler

from study.core import contract
from study.core.device import autocast, grad_scaler, peak_memory_mb
from study.core.hashing import derive_seed
from study.objectives import Distillation, FeatureSource, FeatureTap, KDInputs
from study.objectives.prediction import teacher_loss
from study.tasks.spec import TaskSpec
from study.tasks.types import get_type
from study.tasktypes.sequence import TokenizedSplit
from study.training.state import (
    Checkpointer,
    LiveStudent,
    Position,
    RNGState,
    Student,
    restore_student,
    student_state,
)


@dataclass
class TrainResult:
    """What a training run produced: final dev metrics (fractions) and costs."""

    dev_metrics: dict[str, float]
    wall_time_s: float
    train_time_s: float
    train_examples_per_s: float
    peak_memory_mb: float
    history: list[dict] = field(default_factory=list)
    #: students trained together on the same batches (``train_group``); costs are the group's
    group_size: int = 1
    #: CPU seconds this process spent (all its threads, ``time.process_time``) over ``wall_time_s``
    cpu_time_s: float = float("nan")
    #: intra-op threads torch used (``torch.get_num_threads()``): with ``cpu_time_s`` and
    #: ``wall_time_s``, the share of its cores the run had (``study.execution.forecast.cpu_share``)
    cpu_threads: int = 0


@torch.no_grad()
def teacher_logits(teacher: torch.nn.Module, data: TokenizedSplit, tokenizer: PreTrainedTokenizerBase,
                   device: torch.device, batch_size: int = 128, precision: str = "fp32") -> torch.Tensor:
    """The teacher's logits for every example (feature) of ``data``, computed in ``precision``
    (the teacher's; ``study.core.device.autocast``), float32 on CPU, in row order:
    (N, C) for sequence tasks; (N, T_max, C) for token classification and (N, T_max, 2) (start,
    end) per window for extractive QA, T_max the longest feature, zero beyond each feature's
    length (batches are right-padded, so a batch reads ``cache[idx, :T]``).

    The teacher is frozen and in eval mode (no dropout), so its logits for an example never change
    during a student's training: objectives that need only the logits read them from this cache
    instead of running the teacher on every step.
    """
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
        with autocast(device, precision):
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
    teacher_precision: str = "fp32",
) -> TrainResult:
    """Train ``model`` on ``train_data`` with ``objective`` and return final dev metrics: the
    one-student case of ``train_group``.

    ``train_data``/``dev_data`` come from the task type's ``tokenize`` (``study.tasktypes``), which
    also gives the collator, the targets and positions of a batch, and the dev metrics.

    Args:
        budget: ``epochs``, ``learning_rate``, ``batch_size``, ``warmup_ratio``,
            ``weight_decay``, ``max_grad_norm``; optionally ``precision`` (fp32 when absent).
        log_metrics: called once per epoch with ``(key, value, step)`` triples (batched
            logging; ``train_loss`` per optimiser step, dev metrics per epoch).
        cached_teacher_logits: (N, C) from ``teacher_logits``; used instead of running the teacher
            when the objective needs only logits.
        mixup: a resolved mix-up slot (``study.objectives.mixup``); ``{}``/None is none.
        on_epoch_end: called after each epoch's evaluation with ``(epoch, model, dev_metrics)``
            (the teacher keeps its best-metric and lowest-loss checkpoints this way).
        teacher_precision: the precision of ``teacher``'s passes (its fine-tuning's).

    Raises:
        FloatingPointError: the loss became nan or inf (the message names the step).
        ValueError: the objective reads the teacher and neither it nor cached logits were given.
    """
    student = Student(model, objective, budget, seed, log_metrics=log_metrics, desc=desc,
                      cached_teacher_logits=cached_teacher_logits, mixup=mixup, on_epoch_end=on_epoch_end)
    result = train_group([student], train_data, dev_data, dev_labels, task, tokenizer, device, teacher,
                         teacher_precision)[0]
    if isinstance(result, BaseException):
        raise result
    return result


def setup_student(spec: Student, position: int, teacher: torch.nn.Module | None, total_batches: int,
                  device: torch.device) -> LiveStudent:
    """A student's optimiser, schedule, hooks and random streams (``train``'s set-up, per student).

    Raises:
        ValueError: the objective reads the teacher and neither it nor cached logits were given.
    """
    model, objective, budget, seed = spec.model, spec.objective, spec.budget, spec.seed
    rng = RNGState(derive_seed(seed, "dropout"), device)
    model.to(device)
    objective.to(device)
    use_cache = (objective.needs_teacher and not objective.needs_teacher_forward
                 and spec.cached_teacher_logits is not None)
    run_teacher = teacher is not None and objective.needs_teacher and not use_cache
    if objective.needs_teacher and not (use_cache or run_teacher):
        raise ValueError("the objective reads the teacher, but neither a teacher nor cached logits were given")
    if spec.mixup and teacher is None:
        raise ValueError("mix-up distillation runs the teacher on mixed inputs: give the teacher")
    mix_gen = torch.Generator().manual_seed(derive_seed(seed, "mixup"))
    mix_rng = random.Random(derive_seed(seed, "mixup_lambda"))
    # Forward hooks keep the Q/K/V projections that attention-like features are computed from.
    s_layers, _ = objective.taps()
    tap = FeatureTap(model, set(s_layers), set().union(*s_layers.values())) if s_layers else None
    params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n  # noqa: E731
    named = list(model.named_parameters()) + list(objective.named_parameters())
    groups = [
        {"params": [p for n, p in named if p.requires_grad and not no_decay(n)], "weight_decay": budget["weight_decay"]},
        {"params": [p for n, p in named if p.requires_grad and no_decay(n)], "weight_decay": 0.0},
    ]
    assert sum(len(g["params"]) for g in groups) == len(params)
    optimizer = torch.optim.AdamW(groups, lr=budget["learning_rate"])
    total_steps = budget["epochs"] * total_batches
    scheduler = get_linear_schedule_with_warmup(optimizer, int(budget["warmup_ratio"] * total_steps), total_steps)
    precision = budget.get("precision", "fp32")
    return LiveStudent(spec, position, rng, optimizer, scheduler, params, tap, use_cache, run_teacher, mix_gen, mix_rng,
                 precision, grad_scaler(device, precision))


@dataclass
class _TeacherBatch:
    """The teacher's forward pass on one batch, shared by every student that reads features."""

    logits: torch.Tensor | None = None  # (B, C) float32
    source: FeatureSource | None = None
    precision: str = "fp32"  # the teacher's, for its passes in a student's mix-up term


def _student_step(s: LiveStudent, batch: dict, labels: torch.Tensor, positions: torch.Tensor | None, idx: torch.Tensor,
                  mask: torch.Tensor, shared: _TeacherBatch, teacher: torch.nn.Module | None, ttype,
                  device: torch.device) -> None:
    """One optimiser step of one student on one batch; its losses stay on the device in
    ``s.recorded`` and are checked for finiteness every CHECK_EVERY steps (FloatingPointError).
    ``labels``/``positions`` as the task type's ``split_batch`` gives them; ``ttype`` the task type
    (``study.tasktypes``), which reads the logits off a model's output."""
    model, objective, budget = s.spec.model, s.spec.objective, s.spec.budget
    if s.tap is not None:
        s.tap.clear()
    with autocast(device, s.precision):
        out = model(**batch, output_hidden_states=objective.needs_hidden)
        t_logits = None
        if s.use_cache:
            t_logits = s.spec.cached_teacher_logits[idx.cpu()].to(device)  # (B, C) or (B, T_max, C)
            if t_logits.dim() == 3:
                t_logits = t_logits[:, :mask.shape[1]]  # (B, T, C)
        elif s.run_teacher:
            t_logits = shared.logits
    student_src = teacher_src = None
    if len(objective.terms):
        student_src = FeatureSource(mask, model.config.num_attention_heads, out.hidden_states,
                                    s.tap.projections if s.tap else {})
        teacher_src = shared.source
    losses = objective(KDInputs(
        student_logits=ttype.logits(out).float(),  # (B, C), (B, T, C) or (B, T, 2)
        labels=labels,  # (B,), (B, T) or (B, 2)
        mask=mask,  # (B, T)
        teacher_logits=t_logits,
        student=student_src, teacher=teacher_src, index=idx,
        positions=positions,
    ))
    mixup = s.spec.mixup
    if mixup:
        losses["loss_mixup"] = mixup_loss(model, teacher, objective, batch,
                                          s.mix_rng.betavariate(mixup["alpha"], mixup["alpha"]),
                                          s.mix_gen, device, (s.precision, shared.precision))
        losses["loss"] = losses["loss"] + mixup["weight"] * losses["loss_mixup"]
        losses["loss_mixup"] = losses["loss_mixup"].detach()
    optimiser_step(s, losses["loss"], budget["max_grad_norm"])
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.step += 1
    s.seen += labels.shape[0]
    for k, v in losses.items():
        s.recorded.setdefault(contract.TRAIN_PREFIX + k, []).append(v.detach())  # "loss": train_loss
    if s.step % CHECK_EVERY == 0:
        check_finite(s.recorded[contract.METRIC_TRAIN_LOSS], s.first_step)


def optimiser_step(s: LiveStudent, loss: torch.Tensor, max_grad_norm: float) -> None:
    """Backward, clip to ``max_grad_norm`` and step; under fp16 through the student's scaler
    (gradients unscaled before clipping; a step with inf/nan gradients is skipped)."""
    if s.scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(s.params, max_grad_norm)
        s.optimizer.step()
        return
    s.scaler.scale(loss).backward()
    s.scaler.unscale_(s.optimizer)
    torch.nn.utils.clip_grad_norm_(s.params, max_grad_norm)
    s.scaler.step(s.optimizer)
    s.scaler.update()


def train_group(students: list[Student], train_data: TokenizedSplit, dev_data: TokenizedSplit, dev_labels: list,
                task: TaskSpec, tokenizer: PreTrainedTokenizerBase, device: torch.device,
                teacher: torch.nn.Module | None = None, teacher_precision: str = "fp32",
                checkpointer: Checkpointer | None = None,
                resume: tuple[Position, list[dict]] | None = None) -> list[TrainResult | Exception]:
    """Train several students on the same batches; each ends as it would have trained alone.

    The students share the training data, the seed (hence the data order), the batch size and the
    number of epochs; each has its own optimiser, schedule, objective, callbacks and dropout
    stream (its global random state is swapped in around its own work, so on CPU its weights and
    losses are bit-identical to ``train`` on it alone). The teacher runs once per batch, with the
    hidden states and Q/K/V taps that any student needs, when some student reads its features;
    logit-only students read their cached logits. Each student runs in its budget's
    ``precision``; the teacher's passes run in ``teacher_precision`` (its fine-tuning's).

    After a batch, when ``checkpointer.due()``, it saves each live student's state (``study.training.state``).
    ``resume`` = (a ``Position``, one state per student, emptied once restored) continues from one:
    on CPU every student ends bit-identical to an uninterrupted run, its earlier epochs logged again.

    Returns:
        Per student, in order: its ``TrainResult`` (costs are the group's: ``train_time_s`` and
        ``wall_time_s`` are the seconds the whole group took), or the exception that dropped it
        (a ``FloatingPointError`` naming the step of a nan or inf loss; a ``ValueError`` for a
        student whose objective reads a teacher that was not given); the others go on.
        ``KeyboardInterrupt`` propagates.

    Raises:
        ValueError: the students differ in seed, batch size or epochs, or ``resume`` has not one
            state per student (a state that does not fit its student is that student's result).
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    if not students:
        return []
    _check_shared(students, resume)
    seed, batch_size, epochs = students[0].seed, students[0].budget["batch_size"], students[0].budget["epochs"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ttype = get_type(task.task_type)
    loader, dev_loader = _loaders(train_data, dev_data, ttype.collator(tokenizer), batch_size, seed)
    if teacher is not None:
        teacher.to(device).eval()
    results: list[TrainResult | Exception | None] = [None] * len(students)
    members = setup_all(students, results, teacher, len(loader), device)
    first_epoch, done = _restore_all(members, resume) if resume is not None else (1, 0)
    t_pass = _TeacherPass.for_students(teacher, members, teacher_precision)
    train_time = 0.0
    try:
        for epoch in range(first_epoch, epochs + 1):
            live = [s for s in members if s.error is None]
            if not live:
                break
            order_state = loader.sampler.generator.get_state()  # the epoch's data order, for checkpoints
            if resume is not None and epoch == first_epoch:
                order_state = resume[0].order_state
                batches = _reopen_epoch(live, loader, order_state, done)
            else:
                batches, done = _open_epoch(live, loader), 0
            t0 = time.perf_counter()
            desc = live[0].spec.desc if len(students) == 1 else f"{live[0].spec.desc} (+{len(live) - 1})"
            bar = tqdm(batches, total=len(loader), initial=done, desc=f"{desc} epoch {epoch}/{epochs}", leave=False,
                       unit="batch")
            _train_epoch(live, bar, Position(epoch, done, live[0].step, order_state), t_pass, ttype, device,
                         checkpointer)
            train_time += time.perf_counter() - t0
            for s in live:
                if s.error is None:
                    try:
                        with s.rng.active():
                            _end_epoch(s, epoch, dev_loader, dev_data, dev_labels, task, ttype, device)
                    except Exception as exc:
                        drop_student(s, exc)
    finally:
        for tap in [s.tap for s in members] + [t_pass.tap]:
            if tap is not None:
                tap.remove()
    wall, cpu, memory = time.perf_counter() - start, time.process_time() - cpu_start, peak_memory_mb(device)
    for s in members:
        results[s.position] = s.error if s.error is not None else _result(s, wall, train_time, memory, cpu,
                                                                          len(students))
    return results


def _result(s: LiveStudent, wall: float, train_time: float, memory: float, cpu: float, size: int) -> TrainResult:
    """A finished student's ``TrainResult``; the costs (seconds, MB) are its group's."""
    return TrainResult(dev_metrics=s.dev_metrics, wall_time_s=wall, train_time_s=train_time,
                       train_examples_per_s=s.seen / train_time if train_time else float("nan"),
                       peak_memory_mb=memory, history=s.history, group_size=size, cpu_time_s=cpu,
                       cpu_threads=torch.get_num_threads())


def _loaders(train_data: TokenizedSplit, dev_data: TokenizedSplit, collate, batch_size: int,
             seed: int) -> tuple[DataLoader, DataLoader]:
    """The training loader (batches of similar length, in the order of the ``data_order`` stream
    of ``seed``) and the dev loader (in order, 128 a batch)."""
    # Batches of similar length (HF's group_by_length) cut padding about in half on GLUE: ~1.7x faster.
    sampler = LengthGroupedSampler(batch_size, lengths=train_data.lengths,
                                   generator=torch.Generator().manual_seed(derive_seed(seed, "data_order")))
    loader = DataLoader(train_data, batch_size=batch_size, sampler=sampler, collate_fn=collate)
    return loader, DataLoader(dev_data, batch_size=128, shuffle=False, collate_fn=collate)


def setup_all(students: list[Student], results: list, teacher: torch.nn.Module | None, total_batches: int,
              device: torch.device) -> list[LiveStudent]:
    """Each student's training state (``setup_student``); a student whose set-up raises gets the
    exception as its entry of ``results`` and is left out."""
    members = []
    for i, spec in enumerate(students):
        try:
            members.append(setup_student(spec, i, teacher, total_batches, device))
        except Exception as exc:
            results[i] = exc
    return members


def _check_shared(students: list[Student], resume: tuple[Position, list[dict]] | None = None) -> None:
    """Raise ValueError unless every student shares the first one's seed, batch size and epochs,
    and ``resume`` (if any) has one state per student."""
    if resume is not None and len(resume[1]) != len(students):
        raise ValueError(f"resume gives {len(resume[1])} state(s) for {len(students)} student(s)")
    first = students[0]
    for spec in students[1:]:
        for what, a, b in (("seed", first.seed, spec.seed),
                           ("batch_size", first.budget["batch_size"], spec.budget["batch_size"]),
                           ("epochs", first.budget["epochs"], spec.budget["epochs"])):
            if a != b:
                raise ValueError(f"students of a group share their {what}: {a!r} and {b!r} ({spec.desc})")


@dataclass
class _TeacherPass:
    """The teacher's one forward pass per batch for every student that reads its features: the
    union of the hidden states and Q/K/V taps they read."""

    model: torch.nn.Module | None
    tap: FeatureTap | None
    needs_hidden: bool
    precision: str = "fp32"

    @classmethod
    def for_students(cls, teacher: torch.nn.Module | None, members: list[LiveStudent],
                     precision: str = "fp32") -> _TeacherPass:
        forward = [s for s in members if s.run_teacher]
        layers: dict[int, set[str]] = {}
        for s in forward:
            for layer, names in s.spec.objective.taps()[1].items():
                layers.setdefault(layer, set()).update(names)
        tap = FeatureTap(teacher, set(layers), set().union(*layers.values())) if layers else None
        return cls(teacher, tap, any(s.spec.objective.needs_hidden for s in forward), precision)

    def __call__(self, batch: dict, mask: torch.Tensor, ttype, device: torch.device) -> _TeacherBatch:
        """The teacher's logits (float32) and features on ``batch`` (``mask``: (B, T) bool)."""
        shared = _TeacherBatch(precision=self.precision)
        if self.tap is not None:
            self.tap.clear()
        with autocast(device, self.precision), torch.no_grad():
            t_out = self.model(**batch, output_hidden_states=self.needs_hidden)
            shared.logits = ttype.logits(t_out).float()  # (B, C), (B, T, C) or (B, T, 2)
        shared.source = FeatureSource(mask, self.model.config.num_attention_heads, t_out.hidden_states,
                                      self.tap.projections if self.tap else {})
        if self.tap is not None:
            self.tap.clear()  # a student's mix-up pass through the teacher must not overwrite them
        return shared


def _open_epoch(live: list[LiveStudent], loader: DataLoader):
    """Start an epoch for every live student; return the epoch's batch iterator.

    Each opening of the loader draws its base seed from the global generator, so each student
    makes, from its own stream, the ``LOADER_OPENS`` draws it made alone; the batches come from
    the first student's iterator (the sampler is consumed once)."""
    batches = None
    for s in live:
        s.spec.model.train()
        # Losses stay on the device and reach the host once per epoch (each .item() would be a GPU
        # synchronisation); finiteness is read every CHECK_EVERY steps.
        s.recorded = {}
        s.first_step = s.step + 1
        with s.rng.active():
            for _ in range(LOADER_OPENS):
                it = iter(loader)
        batches = it if batches is None else batches
    return batches


def _restore_all(members: list[LiveStudent], resume: tuple[Position, list[dict]]) -> tuple[int, int]:
    """Restore each member from its state in ``resume`` and log its earlier epochs again (a resumed
    cell's run then holds them too); a member whose state does not fit is dropped with the error.
    The states are emptied from ``resume``'s list once restored: they hold a copy of every weight
    and optimiser moment, which the training that follows does not need. Returns (the epoch to
    resume, the batches of it done)."""
    for s in members:
        try:
            restore_student(s, resume[1][s.position])
        except ValueError as exc:  # another recipe's state: this student fails, the others go on
            drop_student(s, exc)
            continue
        if s.spec.log_metrics and s.logged:
            s.spec.log_metrics(s.logged)
    resume[1][:] = [None] * len(resume[1])
    return resume[0].epoch, resume[0].batches


def _train_epoch(live: list[LiveStudent], bar, start: Position, t_pass: _TeacherPass, ttype, device: torch.device,
                 checkpointer: Checkpointer | None) -> None:
    """Train ``live`` on the rest of an epoch's batches (``bar``, from ``start``), handing every
    live student's state to ``checkpointer`` whenever it is due."""
    done = start.batches
    for batch in bar:
        _train_batch(live, batch, t_pass, ttype, device)
        done += 1
        if live[0].error is None and live[0].step % CHECK_EVERY == 0:
            bar.set_postfix(loss=f"{live[0].recorded['train_loss'][-1].item():.4f}")
        if checkpointer is not None and checkpointer.due():
            kept = [s for s in live if s.error is None]
            if kept:
                checkpointer.save(Position(start.epoch, done, kept[0].step, start.order_state),
                                  {s.position: student_state(s) for s in kept})


def _reopen_epoch(live: list[LiveStudent], loader: DataLoader, order_state: torch.Tensor, done: int):
    """The batch iterator of a resumed epoch, past its first ``done`` batches, the loader's data
    order replayed from ``order_state`` (its generator's state at the epoch's start). The students'
    random streams are left as restored: the draws ``_open_epoch`` made from them happened before
    the checkpoint."""
    loader.sampler.generator.set_state(order_state)
    for s in live:
        s.spec.model.train()
    with torch.random.fork_rng(devices=[]):
        batches = iter(loader)
        for _ in range(done):
            next(batches)
    return batches


def _train_batch(live: list[LiveStudent], batch: dict, t_pass: _TeacherPass, ttype, device: torch.device) -> None:
    """One optimiser step of every live student on ``batch``, the teacher run once for all of
    them when some student reads it; a student that raises leaves the group (``drop_student``)."""
    batch = {k: v.to(device) for k, v in batch.items()}
    labels, positions = ttype.split_batch(batch)  # (B,), (B, T) or (B, 2); (B, T) bool or None
    idx = batch.pop("idx")
    mask = batch["attention_mask"].bool()  # (B, T)
    shared = _TeacherBatch(precision=t_pass.precision)
    if any(s.run_teacher and s.error is None for s in live):
        shared = t_pass(batch, mask, ttype, device)
    for s in live:
        if s.error is not None:
            continue
        try:
            with s.rng.active():
                _student_step(s, batch, labels, positions, idx, mask, shared, t_pass.model, ttype, device)
        except Exception as exc:  # one student's failure never stops the others
            drop_student(s, exc)


def drop_student(s: LiveStudent, exc: Exception) -> None:
    """Take ``s`` out of the group with ``exc`` as its result, its feature hooks removed."""
    s.error = exc
    if s.tap is not None:
        s.tap.remove()
        s.tap = None


def _end_epoch(s: LiveStudent, epoch: int, dev_loader: DataLoader, dev_data: TokenizedSplit, dev_labels: list,
               task: TaskSpec, ttype, device: torch.device) -> None:
    """A student's end of epoch: the finiteness check, its losses and dev metrics logged in one
    batch, its ``on_epoch_end``."""
    check_finite(s.recorded.get(contract.METRIC_TRAIN_LOSS, []), s.first_step)
    points: list[tuple[str, float, int]] = []
    for key, values in s.recorded.items():
        host = torch.stack(values).float().cpu().tolist()  # one transfer per component and epoch
        points += [(key, v, s.first_step + i) for i, v in enumerate(host)]
    s.dev_metrics = ttype.evaluate(s.spec.model, dev_loader, dev_data, dev_labels, task, device, s.precision)
    points += [(contract.DEV_PREFIX + k, float(v), epoch) for k, v in s.dev_metrics.items()]
    s.history.append({"epoch": epoch, **s.dev_metrics})
    s.logged += points
    if s.spec.log_metrics:
        s.spec.log_metrics(points)
    if s.spec.on_epoch_end:
        s.spec.on_epoch_end(epoch, s.spec.model, s.dev_metrics)


def mixup_loss(model: torch.nn.Module, teacher: torch.nn.Module, objective: Distillation, batch: dict,
               lam: float, generator: torch.Generator, device: torch.device,
               precisions: tuple[str, str] = ("fp32", "fp32")) -> torch.Tensor:
    """MixKD's term on one batch (see ``study.objectives.mixup``): both models see the same
    interpolation, weight ``lam`` in [0, 1], of their own word embeddings with those of the
    batch's rows permuted by ``generator`` (seeded: a rerun mixes the same pairs); a float32+ scalar.
    ``precisions``: (the student's, the teacher's).
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, T)
    perm = torch.randperm(ids.shape[0], generator=generator).to(device)
    mixed_mask = torch.maximum(mask, mask[perm])
    extra = {k: v for k, v in batch.items() if k == "token_type_ids"}

    def mixed(m: torch.nn.Module) -> torch.Tensor:
        emb = m.get_input_embeddings()(ids)  # (B, T, H)
        return lam * emb + (1.0 - lam) * emb[perm]

    with autocast(device, precisions[0]):
        s_logits = model(inputs_embeds=mixed(model), attention_mask=mixed_mask, **extra).logits.float()
    with autocast(device, precisions[1]), torch.no_grad():
        t_logits = teacher(inputs_embeds=mixed(teacher), attention_mask=mixed_mask, **extra).logits.float()
    params = objective.prediction
    if params["distance"] == "none":
        params = {"distance": "kl", "teacher_temperature": 1.0, "student_temperature": 1.0}
    return teacher_loss(s_logits, t_logits, params, objective.task_type)


#: Iterators of the training loader opened per epoch, each drawing one number from the global
#: generator (the dropout stream): the loop opens one, and so did the progress bar of tqdm.auto
#: (its asyncio wrapper) when the loop iterated the bar; kept so cells train as they always did.
LOADER_OPENS = 2

#: Steps between reads of the loss's finiteness (each read is a host synchronisation on a GPU).
CHECK_EVERY = 50


def check_finite(losses: list[torch.Tensor], first_step: int) -> None:
    """Raise FloatingPointError naming the first step whose loss is nan or inf."""
    if not losses:
        return
    stacked = torch.stack(losses)
    finite = torch.isfinite(stacked)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise FloatingPointError(f"non-finite training loss {stacked[bad].item()} at step {first_step + bad}")
