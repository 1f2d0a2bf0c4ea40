"""Examples/s of a KD training step against a plain fine-tuning step of the same student.

Runs the project's own training loop (``study.training.trainer.train``) for one epoch over the same
seeded SST-2 subsample for each objective, so the figures include the teacher's forward pass
(where the objective needs one), the loss, backward and the optimiser step; dev evaluation is
excluded. Prints a table; nothing is asserted.

    python benchmarks/kd_step_throughput.py --data-dir ../shared/data [--examples 1024] [--device auto]
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers

from study.core.device import select_device
from study.core.hashing import derive_seed
from study.execution.datacache import DataCache
from study.execution.teacher import load_tokenizer
from study.models import StudentSize, build_student, load_pretrained_classifier
from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.tasks.catalogue import TASKS, resolve_data_dir
from study.training.trainer import teacher_logits, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--student", default="L2_H384")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--objectives", default="ce,logit_kd,logit_mse,hidden_mse,attention_kl")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    device = select_device(args.device)
    task = TASKS["sst2"]
    data = DataCache(resolve_data_dir(args.data_dir))
    teacher_name = "all-MiniLM-L6-v2"
    tokenizer = load_tokenizer(teacher_name)
    # Throughput does not depend on whether the teacher was fine-tuned: use the pretrained weights.
    teacher = load_pretrained_classifier(teacher_name, task.num_labels)
    train_ds = data.tokenized("sst2", "train", tokenizer, args.max_length, max_examples=args.examples, data_seed=0)
    dev_ds, dev_labels = data.tokenized_dev("sst2", tokenizer, args.max_length, max_examples=32)
    budget = {"epochs": 1, "learning_rate": 1e-4, "batch_size": args.batch_size, "warmup_ratio": 0.1,
              "weight_decay": 0.01, "max_grad_norm": 1.0}
    size = StudentSize.parse(args.student)
    rows = []
    teacher.set_attn_implementation("sdpa")
    t0 = time.perf_counter()
    cache = teacher_logits(teacher, train_ds, tokenizer, device)
    cache_s = time.perf_counter() - t0
    runs = []
    for name in args.objectives.split(","):
        runs.append((name, False))
        if name in ("logit_kd", "logit_mse"):
            runs.append((name, True))
    for name, cached in runs:
        torch.manual_seed(derive_seed(0, "init"))
        attn = "sdpa"  # attention features come from Q/K/V hooks: no eager kernel needed
        init = "teacher_lower" if size.hidden == teacher.config.hidden_size else "random"
        student = build_student(teacher, size, init, task.num_labels, attn)
        slots = preset(name)
        objective = Distillation(slots["prediction"], slots["intermediate"], task_type=task.task_type,
                                 student=ModelDims.of(student.config), teacher=ModelDims.of(teacher.config))
        t0 = time.perf_counter()
        result = train(student, objective, train_ds, dev_ds, dev_labels, task, tokenizer, budget, 0, device,
                       teacher=teacher if (objective.needs_teacher and not cached) else None, desc=name,
                       cached_teacher_logits=cache if cached else None)
        label = f"{name} (cached)" if cached else name
        rows.append((label, attn, result.train_examples_per_s, result.peak_memory_mb, time.perf_counter() - t0))
    base = rows[0][2] if rows and rows[0][0] == "ce" else None
    print(f"\ndevice={device.type} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"student={args.student} examples={len(train_ds)} max_length={args.max_length} batch={args.batch_size}"
          f"{' bf16 autocast' if device.type == 'cuda' else ' fp32'}")
    print(f"teacher-logit cache for {len(train_ds)} examples built in {cache_s:.1f} s "
          f"({len(train_ds) / cache_s:.0f} examples/s); 'cached' rows read it instead of running the teacher")
    print(f"{'objective':<22}{'attention':<10}{'examples/s':>12}{'vs ce':>8}{'peak MiB':>10}")
    for name, attn, eps, mem, _ in rows:
        rel = f"{eps / base:.2f}x" if base else "-"
        print(f"{name:<22}{attn:<10}{eps:>12.1f}{rel:>8}{mem:>10.0f}")


if __name__ == "__main__":
    main()
