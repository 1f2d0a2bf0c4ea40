"""The same logit-KD cell trained by our loop and by TextBrewer 0.2.1: examples/s and dev score.

Matched: the student (L2_H384 from the teacher's lower layers, same seed), the teacher (the
pretrained all-MiniLM-L6-v2 with a fresh head, or a fine-tuned teacher folder given with
``--teacher``), the seeded SST-2 subsample, the batches (the same ``DataLoader``: length-grouped
sampler, same seed), AdamW with the same parameter groups, linear warm-up schedule, gradient
clipping, and the loss: our ``logit_kd`` preset is 0.5·CE(gold) + 0.5·τ²·KL(p_t^τ ‖ p_s^τ) at
τ = 2; TextBrewer's ``BasicDistiller`` with ``kd_loss_type='ce'`` (soft cross-entropy, which
differs from KL by the teacher's entropy, a constant in the student), ``temperature=2``,
``kd_loss_weight = 0.5·τ² = 2`` and ``hard_label_weight = 0.5`` has the same gradient.

Rows, each timed over the whole training call (dev evaluation excluded for ours, TextBrewer's
per-epoch checkpoint save included, as its loop does it):

- ours, teacher forward on every step (what a hidden-state cell does);
- ours, teacher logits cached once per cell (what the runner does for logit-only objectives;
  the cache build is timed and added);
- TextBrewer, teacher forward on every step (its default);
- TextBrewer, ``is_caching_logits=True`` (its own logit cache, filled in its first pass).

``--precision bf16`` (or ``fp32,bf16``: every row in each) runs both loops in that precision: ours
through the budget's ``precision`` (student, teacher passes and logit cache), TextBrewer's whole
``train`` call and the dev evaluation under the same ``torch.autocast`` context
(``study.core.device.autocast``), so the comparison stays like for like. fp16 is refused here:
TextBrewer's loop would run without the gradient scaler ours uses.

Prints a table; nothing is asserted. Run alone on the machine: the figures are wall-clock.

    python benchmarks/textbrewer_compare.py --data-dir ../shared/data [--examples 2000] [--epochs 2] \
        [--precision fp32,bf16]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
import transformers
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import LengthGroupedSampler

from study.core.device import autocast, check_precision, select_device
from study.core.hashing import derive_seed
from study.execution.datacache import DataCache
from study.execution.teacher import load_tokenizer
from study.models import StudentSize, build_student, load_pretrained_classifier
from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.tasks.catalogue import TASKS, resolve_data_dir
from study.tasks.types import get_type
from study.training.trainer import teacher_logits, train

TAU = 2.0


def _optimizer(model: torch.nn.Module, budget: dict) -> torch.optim.Optimizer:
    """AdamW with the parameter groups our trainer uses (no decay on biases and LayerNorm)."""
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n  # noqa: E731
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return torch.optim.AdamW([
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": budget["weight_decay"]},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ], lr=budget["learning_rate"])


def run_textbrewer(student, teacher, train_ds, tokenizer, budget, device, caching: bool,
                   precision: str = "fp32") -> float:
    """Train ``student`` with TextBrewer's BasicDistiller, its ``train`` call under
    ``autocast(device, precision)``; returns the wall seconds of ``train``."""
    from textbrewer import (  # optional (dev extra): only this run needs it
        BasicDistiller,
        DistillationConfig,
        TrainingConfig,
    )

    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    sampler = LengthGroupedSampler(budget["batch_size"], lengths=train_ds.lengths,
                                   generator=torch.Generator().manual_seed(derive_seed(0, "data_order")))
    loader = DataLoader(train_ds, batch_size=budget["batch_size"], sampler=sampler, collate_fn=collate)
    steps = budget["epochs"] * math.ceil(len(train_ds) / budget["batch_size"])
    optimizer = _optimizer(student, budget)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(budget["warmup_ratio"] * steps), steps)

    def adaptor(batch, outputs):
        return {"logits": outputs.logits, "losses": outputs.loss}

    def drop_idx(batch):
        return {k: v for k, v in batch.items() if k != "idx"}

    with tempfile.TemporaryDirectory() as out:
        t_config = TrainingConfig(device=device.type, output_dir=out, log_dir=None)
        d_config = DistillationConfig(temperature=TAU, kd_loss_type="ce", kd_loss_weight=0.5 * TAU ** 2,
                                      hard_label_weight=0.5, is_caching_logits=caching)
        distiller = BasicDistiller(t_config, d_config, teacher.eval(), student, adaptor, adaptor)
        torch.manual_seed(derive_seed(0, "dropout"))
        t0 = time.perf_counter()
        with distiller, autocast(device, precision):
            distiller.train(optimizer, loader, num_epochs=budget["epochs"], scheduler=scheduler,
                            max_grad_norm=budget["max_grad_norm"], batch_postprocessor=drop_idx)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--teacher", default="all-MiniLM-L6-v2",
                    help="hub id or folder of a fine-tuned SST-2 teacher, e.g. runs/teachers/<id> after the smoke "
                         "grid (default: the pretrained model with a fresh head)")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=2,
                    help="times each row runs; the first round warms up, the fastest later one is printed")
    ap.add_argument("--precision", default="fp32", help="fp32 or bf16, comma-separated (both loops alike)")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    device = select_device(args.device)
    precisions = args.precision.split(",")
    for p in precisions:
        if p == "fp16":
            raise SystemExit("--precision fp16: TextBrewer's loop has no gradient scaler here; not like for like")
        check_precision(device, p, "--precision")
    task = TASKS["sst2"]
    data = DataCache(resolve_data_dir(args.data_dir))
    tokenizer = load_tokenizer("all-MiniLM-L6-v2")  # a teacher folder from runs/teachers holds weights only
    teacher = load_pretrained_classifier(args.teacher, task.num_labels).to(device)
    train_ds = data.tokenized("sst2", "train", tokenizer, args.max_length, max_examples=args.examples, data_seed=0)
    dev_ds, dev_labels = data.tokenized_dev("sst2", tokenizer, args.max_length)
    budget = {"epochs": args.epochs, "learning_rate": 1e-4, "batch_size": args.batch_size, "warmup_ratio": 0.1,
              "weight_decay": 0.01, "max_grad_norm": 1.0}
    size = StudentSize.parse("L2_H384")
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    dev_loader = DataLoader(dev_ds, batch_size=128, shuffle=False, collate_fn=collate)
    seen = budget["epochs"] * len(train_ds)

    def fresh_student():
        torch.manual_seed(derive_seed(0, "init"))
        return build_student(teacher, size, "teacher_lower", task.num_labels, "sdpa").to(device)

    def ours(cached: bool, precision: str) -> tuple[float, float]:
        student = fresh_student()
        slots = preset("logit_kd")
        objective = Distillation(slots["prediction"], slots["intermediate"], task_type=task.task_type,
                                 student=ModelDims.of(student.config), teacher=ModelDims.of(teacher.config))
        cache_s, cache = 0.0, None
        if cached:
            t0 = time.perf_counter()
            cache = teacher_logits(teacher, train_ds, tokenizer, device, precision=precision)
            cache_s = time.perf_counter() - t0
        result = train(student, objective, train_ds, dev_ds, dev_labels, task, tokenizer,
                       dict(budget, precision=precision), 0, device, teacher=None if cached else teacher,
                       desc="ours", cached_teacher_logits=cache, teacher_precision=precision)
        return result.train_time_s + cache_s, result.dev_metrics["accuracy"]

    def brewer(caching: bool, precision: str) -> tuple[float, float]:
        student = fresh_student()
        wall = run_textbrewer(student, teacher, train_ds, tokenizer, budget, device, caching, precision)
        metrics = get_type(task.task_type).evaluate(student, dev_loader, dev_ds, dev_labels, task, device, precision)
        return wall, metrics["accuracy"]

    plan = [((label, p), (lambda f=f, c=c, p=p: f(c, p))) for p in precisions
            for label, f, c in (("ours, teacher forward", ours, False), ("ours, cached logits", ours, True),
                                ("TextBrewer, teacher forward", brewer, False),
                                ("TextBrewer, is_caching_logits", brewer, True))]
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for r in range(max(args.rounds, 1)):
        # Rows interleave, and the order alternates between rounds, so that a load on the machine
        # that comes and goes falls on every row alike.
        for label, fn in (plan if r % 2 == 0 else plan[::-1]):
            wall, acc = fn()
            if r == 0 and args.rounds > 1:
                continue  # warm-up round
            if label not in best or wall < best[label][0]:
                best[label] = (wall, acc)
    rows = [(key, seen / best[key][0], best[key][0], best[key][1]) for key, _ in plan]

    print(f"\ndevice={device.type} torch={torch.__version__} threads={torch.get_num_threads()} teacher={args.teacher} "
          f"student=L2_H384 teacher_lower train={len(train_ds)} x {budget['epochs']} epochs "
          f"max_length={args.max_length} batch={args.batch_size} dev={len(dev_ds)}")
    print(f"{'loop':<32}{'precision':>10}{'examples/s':>12}{'wall s':>9}{'dev acc':>9}{'vs TextBrewer same mode':>26}")
    for k in range(0, len(rows), 4):  # four rows per precision
        block = rows[k:k + 4]
        ref = {False: block[2][1], True: block[3][1]}
        for i, ((label, p), eps, wall, acc) in enumerate(block):
            print(f"{label:<32}{p:>10}{eps:>12.1f}{wall:>9.3f}{acc:>9.4f}{eps / ref[i in (1, 3)]:>25.2f}x")
        print(f"{block[0][0][1]}: ours cached against TextBrewer's default (teacher forward): "
              f"{block[1][1] / block[2][1]:.2f}x")


if __name__ == "__main__":
    main()
