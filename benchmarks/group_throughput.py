"""Examples/s per student of a KD step against a plain fine-tuning step, alone and in groups.

``study run --group-size N`` trains up to N students that share their batches together
(``study.training.trainer.train_group``): one teacher forward pass per batch feeds every student that reads
the teacher's features, logit-only objectives read cached logits. For each objective this trains a
group of 1, 8 and 20 identical students (the same seed, hence the same batches) for one epoch over
the same seeded SST-2 subsample with the project's own loop and reports, per student, training
examples per second (the group's epoch time, dev evaluation excluded) and that rate over plain
fine-tuning's (``ce``) at the same group size and precision; the group's rate (students x examples
per second) over one student alone is what grouping gains. ``--precision fp32,bf16`` runs every row in
each precision (students, teacher passes and the logit cache alike: ``training.precision`` and
``teacher.precision`` of a grid), one table row per objective and precision. Prints a table;
nothing is asserted.

    python benchmarks/group_throughput.py --data-dir ../shared/data [--examples 1024] [--groups 1,8,20] \
        [--precision fp32,bf16]
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers

from study.core.device import check_precision, select_device
from study.core.hashing import derive_seed
from study.execution.datacache import DataCache
from study.execution.teacher import load_tokenizer
from study.models import StudentSize, build_student, load_pretrained_classifier
from study.objectives import Distillation, ModelDims
from study.objectives.presets import preset
from study.tasks.catalogue import TASKS, resolve_data_dir
from study.training.trainer import Student, teacher_logits, train_group


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--student", default="L2_H384")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--objectives", default="ce,logit_kd,hidden_mse,attention_kl")
    ap.add_argument("--groups", default="1,8,20", help="group sizes, comma-separated")
    ap.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (CUDA), comma-separated")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    device = select_device(args.device)
    precisions = args.precision.split(",")
    for p in precisions:
        check_precision(device, p, "--precision")
    task = TASKS["sst2"]
    data = DataCache(resolve_data_dir(args.data_dir))
    teacher_name = "all-MiniLM-L6-v2"
    tokenizer = load_tokenizer(teacher_name)
    # Throughput does not depend on whether the teacher was fine-tuned: use the pretrained weights.
    teacher = load_pretrained_classifier(teacher_name, task.num_labels)
    teacher.set_attn_implementation("sdpa")
    train_ds = data.tokenized("sst2", "train", tokenizer, args.max_length, max_examples=args.examples, data_seed=0)
    dev_ds, dev_labels = data.tokenized_dev("sst2", tokenizer, args.max_length, max_examples=32)
    budget = {"epochs": 1, "learning_rate": 1e-4, "batch_size": args.batch_size, "warmup_ratio": 0.1,
              "weight_decay": 0.01, "max_grad_norm": 1.0}
    size = StudentSize.parse(args.student)
    caches = {p: teacher_logits(teacher, train_ds, tokenizer, device, precision=p) for p in precisions}
    sizes = [int(n) for n in args.groups.split(",")]

    def student(name: str, precision: str) -> Student:
        torch.manual_seed(derive_seed(0, "init"))
        init = "teacher_lower" if size.hidden == teacher.config.hidden_size else "random"
        model = build_student(teacher, size, init, task.num_labels, "sdpa")
        slots = preset(name)
        objective = Distillation(slots["prediction"], slots["intermediate"], task_type=task.task_type,
                                 student=ModelDims.of(model.config), teacher=ModelDims.of(teacher.config))
        return Student(model, objective, dict(budget, precision=precision), 0, desc=name,
                       cached_teacher_logits=None if objective.needs_teacher_forward else caches[precision])

    rows = [(name, p) for name in args.objectives.split(",") for p in precisions]
    # Warm-up (thread pools, allocator, kernel selection): one untimed group of one per row, so that
    # the first timed row is not the only cold one.
    for name, p in rows:
        train_group([student(name, p)], train_ds, dev_ds, dev_labels, task, tokenizer, device, teacher=teacher,
                    teacher_precision=p)
    rate: dict[tuple[str, str, int], float] = {}
    memory: dict[tuple[str, str, int], float] = {}
    for name, p in rows:
        for n in sizes:
            group = [student(name, p) for _ in range(n)]
            t0 = time.perf_counter()
            results = train_group(group, train_ds, dev_ds, dev_labels, task, tokenizer, device, teacher=teacher,
                                  teacher_precision=p)
            r = results[0]
            rate[(name, p, n)] = r.train_examples_per_s
            memory[(name, p, n)] = r.peak_memory_mb
            print(f"{name} {p} x{n}: {r.train_examples_per_s:.1f} examples/s per student "
                  f"({time.perf_counter() - t0:.0f} s with evaluation)", flush=True)
            del group, results

    print(f"\ndevice={device.type} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"student={args.student} examples={len(train_ds)} max_length={args.max_length} batch={args.batch_size}"
          "; logit objectives read cached logits")
    _table(rate, memory, rows, sizes, precisions, device)


def _table(rate: dict, memory: dict, rows: list[tuple[str, str]], sizes: list[int], precisions: list[str],
           device: torch.device) -> None:
    """The table: per (objective, precision) row, examples/s per student at each group size."""
    print("training examples/s per student: each student's own rate (the group's epoch time), and in brackets the\n"
          "group's rate (students x examples / s) over one student's alone, and that rate over ce's at the same size\n"
          "and precision; 'vs fp32': the rate over the same row's in fp32")
    header = f"{'objective':<16}{'precision':<10}" + "".join(f"{'group ' + str(n):>30}" for n in sizes)
    print(header + (f"{'vs fp32':>10}" if "fp32" in precisions and len(precisions) > 1 else ""))
    for name, p in rows:
        cells = []
        for n in sizes:
            eps = rate[(name, p, n)]
            gain = n * eps / rate[(name, p, sizes[0])]
            vs_ce = f"{eps / rate[('ce', p, n)]:.2f}x ce" if ("ce", p, n) in rate else ""
            cells.append(f"{eps:8.1f} ({gain:.2f}x alone, {vs_ce})")
        base = rate.get((name, "fp32", sizes[0])) if len(precisions) > 1 else None
        vs = f"{rate[(name, p, sizes[0])] / base:>9.2f}x" if base else ""
        print(f"{name:<16}{p:<10}" + "".join(f"{c:>30}" for c in cells) + vs)
    print(f"peak memory (MiB, {'CUDA allocator' if device.type == 'cuda' else 'process RSS'}), "
          + ", ".join(f"{name} {p} x{n}: {memory[(name, p, n)]:.0f}" for name, p in rows for n in sizes))


if __name__ == "__main__":
    main()
