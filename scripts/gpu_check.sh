#!/usr/bin/env bash
# One pass over what only a CUDA machine can show (issue 21), printed as one table:
#   1. the smoke grid with --device cuda in bf16 (training.precision and teacher.precision bf16);
#   2. benchmarks/group_throughput.py in bf16 at groups of 1, 8 and 32 students, with peak memory;
#   3. Ray with fractional GPUs: four groups of the smoke grid's cells at --num-gpus 0.25, i.e.
#      several groups on one GPU at once (the table shows how many overlapped).
# Everything is logged to a fresh runs/ folder and store under a temporary directory (printed),
# never to the repository's. Where no GPU is present it refuses in one line, exit 3, before any
# Python starts.
#   bash scripts/gpu_check.sh [--examples N]   (N: group-throughput examples, default 1024)
set -euo pipefail

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "gpu_check: no CUDA GPU here (nvidia-smi lists none); run it on a GPU machine" >&2
  exit 3
fi

cd "$(dirname "$0")/.."
EXAMPLES=1024
if [ "${1:-}" = "--examples" ]; then EXAMPLES="$2"; fi
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: nvidia-smi lists a GPU but torch ($PY) sees none (a CPU build of torch?)" >&2
  exit 3
fi
if [ -z "${STUDY_DATA_DIR:-}" ] && [ -d ../shared/data/glue ]; then
  export STUDY_DATA_DIR="$(cd ../shared/data && pwd)"
fi
WORK="$(mktemp -d)"
export STUDY_RUNS_DIR="$WORK/runs" MLFLOW_TRACKING_URI="sqlite:///$WORK/runs/mlflow.db"
mkdir -p "$STUDY_RUNS_DIR"
echo "gpu_check: logs and store under $WORK"

# The smoke grid in bf16, and a Ray grid of four groups (seeds 1-4, two cells each) in bf16.
"$PY" - "$WORK" <<'PYEOF'
import sys, yaml
work = sys.argv[1]
smoke = yaml.safe_load(open("study/grids/smoke.yaml"))
for slot in ("training", "teacher"):
    smoke[slot]["precision"] = "bf16"
smoke["name"] = "gpu-check-smoke-bf16"
yaml.safe_dump(smoke, open(f"{work}/smoke-bf16.yaml", "w"))
ray = dict(smoke, name="gpu-check-ray-bf16", group_size=2,
           axes=dict(smoke["axes"], objective=["ce", "logit_kd"], initialisation=["teacher_lower"], seed=[1, 2, 3, 4]))
yaml.safe_dump(ray, open(f"{work}/ray-bf16.yaml", "w"))
PYEOF

t0=$(date +%s)
"$PY" -m study.cli run --grid "$WORK/smoke-bf16.yaml" --device cuda 2>&1 | tee "$WORK/smoke.log" | tail -n 25
t1=$(date +%s)
"$PY" benchmarks/group_throughput.py --device cuda --precision bf16 --groups 1,8,32 --examples "$EXAMPLES" \
  --objectives ce,logit_kd,hidden_mse,attention_kl 2>&1 | tee "$WORK/throughput.log" | grep -v 'it/s' | tail -n 15
t2=$(date +%s)
"$PY" -m study.cli run --grid "$WORK/ray-bf16.yaml" --device cuda --executor ray --num-gpus 0.25 --num-cpus 1 \
  --group-size 2 2>&1 | tee "$WORK/ray.log" | tail -n 25
t3=$(date +%s)

"$PY" - "$WORK" "$((t1 - t0))" "$((t2 - t1))" "$((t3 - t2))" <<'PYEOF'
import re, sys
import mlflow
work, smoke_s, bench_s, ray_s = sys.argv[1], *map(int, sys.argv[2:])
client = mlflow.MlflowClient()

def cells(grid):
    exp = client.get_experiment_by_name(grid)
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.`study.kind` = 'cell'")

def overlap(runs):
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time or r.info.start_time, -1) for r in runs])
    now = most = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most

rows = []
for label, grid, secs in (("smoke, cuda, bf16", "gpu-check-smoke-bf16", smoke_s),
                          ("ray, 0.25 GPU a task, bf16", "gpu-check-ray-bf16", ray_s)):
    runs = cells(grid)
    done = [r for r in runs if r.info.status == "FINISHED"]
    score = sum(r.data.metrics.get("dev_score", 0) for r in done) / max(len(done), 1)
    mem = max((r.data.metrics.get("peak_memory_mb", 0) for r in done), default=0)
    extra = f"; at most {overlap(done)} cells at once" if grid.endswith("ray-bf16") else ""
    rows.append((label, f"{len(done)}/{len(runs)} cells finished, mean dev score {score:.4f}{extra}", secs, mem))
log = open(f"{work}/throughput.log").read()
for name, p, n, eps in re.findall(r"^(\w+) (\w+) x(\d+): ([\d.]+) examples/s per student", log, re.M):
    mem = re.search(rf"{name} {p} x{n}: (\d+)", log.split("peak memory")[-1])
    rows.append((f"group throughput {name} x{n}, {p}", f"{float(eps):.1f} examples/s per student", "",
                 float(mem.group(1)) if mem else float("nan")))
rows.append(("group throughput, all rows", "", bench_s, ""))
print(f"\n{'check':<40}{'result':<64}{'wall s':>8}{'peak MiB':>10}")
for label, result, secs, mem in rows:
    print(f"{label:<40}{result:<64}{secs!s:>8}{mem if mem == '' else f'{mem:.0f}':>10}")
PYEOF
