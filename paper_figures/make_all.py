"""Every paper figure, twice where a published table exists: from the published Distiller table
and from our own grid's runs, side by side.

    python paper_figures/make_all.py [--tracking-uri URI] [--out DIR]

Writes ``DIR/published/<name>.{png,csv}`` and ``DIR/ours/<name>.{png,csv}`` (default
``runs/paper_figures``). A figure whose grid has no runs in the store is skipped with a line
saying which ``study run --grid`` makes it; the exit code is 0 unless a figure failed otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, grid of ours or None, whether the published table can draw it)
FIGURES = [
    ("distiller_intermediate_by_task", "distiller-cpu", True),
    ("distiller_aug_gain_vs_size", "distiller-aug-cpu", True),
    ("autodistiller_lodo", "distiller-cpu", True),
    ("sultan2024_cost_table", "sultan2024-cpu", True),
    ("wang2023_init_by_objective", "wang2023-cpu", False),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", help="MLflow store (default runs/mlflow.db)")
    p.add_argument("--out", type=Path, default=HERE.parent / "runs" / "paper_figures")
    args = p.parse_args()
    failed = 0
    for name, grid, published in FIGURES:
        jobs = [("published", [])] if published else []
        jobs.append(("ours", ["--grid", grid] + (["--tracking-uri", args.tracking_uri] if args.tracking_uri else [])))
        for source, extra in jobs:
            out = args.out / source
            proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *extra, "--out", str(out)],
                                  capture_output=True, text=True)
            if proc.returncode == 0:
                print(f"{name} ({source}{'' if source == 'published' else ': ' + grid}): {out / name}.png")
            elif source == "ours" and "No runs were found" in proc.stderr:
                print(f"{name} (ours): skipped, no runs of {grid}: run `study run --grid {grid}`")
            else:
                failed += 1
                print(f"{name} ({source}) FAILED: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
