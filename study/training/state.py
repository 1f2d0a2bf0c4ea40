"""A student's training state inside a group, and how it is checkpointed and restored.

``LiveStudent`` is everything one student of ``study.training.trainer.train_group`` carries from step
to step; ``student_state`` captures it at a batch boundary and ``restore_student`` puts it back, so
that a group resumed from a checkpoint (``Position``) trains on exactly as it would have: the same
weights, optimiser moments, schedule, random streams (dropout, mix-up), data position and running
losses. On CPU the resumed student ends bit-identical to an uninterrupted one
(``tests/test_checkpoint.py``). Where a checkpoint is written and checked is the execution layer's
business (``study.execution.checkpoints``); the trainer only asks a ``Checkpointer`` when one is due.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch

from study.objectives import Distillation, FeatureTap


@dataclass
class Student:
    """One student of a group trained by ``train_group``: its model and objective, its budget
    (``epochs``, ``learning_rate``, ``batch_size``, ``warmup_ratio``, ``weight_decay``,
    ``max_grad_norm``, optionally ``precision``: fp32 when absent), its cell's seed, and its
    callbacks (as ``train``'s arguments)."""

    model: torch.nn.Module
    objective: Distillation
    budget: dict
    seed: int
    log_metrics: Callable[[list[tuple[str, float, int]]], None] | None = None
    desc: str = "train"
    cached_teacher_logits: torch.Tensor | None = None
    mixup: dict | None = None
    on_epoch_end: Callable[[int, torch.nn.Module, dict[str, float]], None] | None = None



class RNGState:
    """One student's global random state (CPU, and the device's on CUDA): dropout draws from the
    global generator, so in a group each student's stream is swapped in around its own work and
    is exactly the stream it would have alone."""

    def __init__(self, seed: int, device: torch.device):
        self.device = device
        torch.manual_seed(seed)
        self._save()

    def _save(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None

    @contextmanager
    def active(self):
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            yield
        finally:
            self._save()


@dataclass
class LiveStudent:
    """A student's training state inside ``train_group``."""

    spec: Student
    position: int
    rng: RNGState
    optimizer: torch.optim.Optimizer
    scheduler: object
    params: list
    tap: FeatureTap | None
    use_cache: bool
    run_teacher: bool
    mix_gen: torch.Generator
    mix_rng: random.Random
    precision: str = "fp32"
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    history: list[dict] = field(default_factory=list)
    dev_metrics: dict[str, float] = field(default_factory=dict)
    recorded: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    #: every metric point logged at the ends of finished epochs (a resumed run logs them again)
    logged: list[tuple[str, float, int]] = field(default_factory=list)
    step: int = 0
    first_step: int = 1  # the first step of the current epoch
    seen: int = 0
    error: Exception | None = None


@dataclass(frozen=True)
class Position:
    """Where a group stands between two batches: ``epoch`` (1-based) in progress, ``batches`` of
    it done, ``step`` optimiser steps done in all, and ``order_state`` the data-order generator's
    state at the epoch's start (a uint8 tensor: replaying it gives the epoch's batches again)."""

    epoch: int
    batches: int
    step: int
    order_state: torch.Tensor = field(compare=False, repr=False)

    @property
    def key(self) -> tuple[int, int]:
        """(epoch, batches): members resumed together must share it."""
        return (self.epoch, self.batches)


class Checkpointer(Protocol):
    """What ``train_group`` asks, after each batch: whether a checkpoint is due, and to save one."""

    def due(self) -> bool:
        """True when a checkpoint should be written now (cheap: no device synchronisation)."""

    def save(self, position: Position, states: dict[int, dict]) -> None:
        """Write ``states`` (``student_state`` per student's index in the group) at ``position``
        before returning: the states share the live tensors, which the next step changes."""


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``module`` by name, persistent or not (a contrastive memory
    bank is a non-persistent buffer that still carries state from step to step)."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def student_state(s: LiveStudent) -> dict:
    """``s``'s training state at a batch boundary, as plain tensors, numbers, lists and dicts
    (``torch.load(..., weights_only=True)`` reads it back): the model's and the objective's
    parameters and buffers (mappings, projections, critics, memory banks), the optimiser, schedule
    and fp16 scaler states, the random states (dropout: CPU and CUDA; mix-up's two streams), the
    step counters, the current epoch's recorded losses, and what earlier epochs logged."""
    return {
        "model": {k: v.detach() for k, v in _tensors(s.spec.model).items()},
        "objective": {k: v.detach() for k, v in _tensors(s.spec.objective).items()},
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "scaler": s.scaler.state_dict() if s.scaler is not None else None,
        "rng_cpu": s.rng.cpu,
        "rng_cuda": s.rng.cuda,
        "mix_gen": s.mix_gen.get_state(),
        "mix_rng": s.mix_rng.getstate(),
        "step": s.step,
        "first_step": s.first_step,
        "seen": s.seen,
        "history": s.history,
        "dev_metrics": s.dev_metrics,
        "recorded": {k: torch.stack(v) for k, v in s.recorded.items() if v},
        "logged": [list(p) for p in s.logged],
    }


@torch.no_grad()
def restore_student(s: LiveStudent, state: dict) -> None:
    """Put ``state`` (from ``student_state``) back into ``s``, set up afresh by
    ``setup_student`` for the same cell.

    Raises:
        ValueError: the state's parameters or buffers do not match ``s``'s model or objective
            (a checkpoint of another recipe).
    """
    for what, module in (("model", s.spec.model), ("objective", s.spec.objective)):
        own, saved = _tensors(module), state[what]
        if set(own) != set(saved) or any(own[k].shape != saved[k].shape for k in own):
            raise ValueError(f"the checkpoint's {what} does not match this cell's {what}")
        for k, t in own.items():
            t.copy_(saved[k])
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    if s.scaler is not None and state["scaler"] is not None:
        s.scaler.load_state_dict(state["scaler"])
    s.rng.cpu = state["rng_cpu"]
    if state["rng_cuda"] is not None and s.rng.cuda is not None:
        s.rng.cuda = state["rng_cuda"]
    s.mix_gen.set_state(state["mix_gen"])
    s.mix_rng.setstate(tuple(state["mix_rng"]))
    s.step, s.first_step, s.seen = state["step"], state["first_step"], state["seen"]
    s.history, s.dev_metrics = list(state["history"]), dict(state["dev_metrics"])
    s.recorded = {k: list(v.unbind(0)) for k, v in state["recorded"].items()}
    s.logged = [(k, v, step) for k, v, step in state["logged"]]
