"""How far the `study run --dry-run` forecast is from what a finished grid took.

For each grid named, the forecast is made as if its finished cells and their teachers were still
to train (a grid stopped part-way is compared on what it finished),
from the shipped calibration figures only (``study/calibration.json``: never from the grid's own
runs), and compared with the measured wall time: the sum of its cells' ``wall_time_s`` and its
teachers' fine-tuning (the driver's own overhead between cells, loading models and data, is not
in it: compare with the `time` of the `study run` too). A grid trained in groups
(``--group-size``) is forecast in the groups its runs log (``group_size``), and a grouped cell
counts its group's wall time divided by the group's size, so each group counts once. Prints one
row per grid: forecast, measured, error in percent, and how many of the runs had the CPU to themselves (``cpu_share`` of
at least ``MIN_CPU_SHARE``; "?" for runs from before it was logged): a wall time measured
beside other work is no test of the forecast.

    python benchmarks/forecast_error.py --grid smoke --grid wang2023-cpu --data-dir ../shared/data
"""

from __future__ import annotations

import argparse

from study.core import contract
from study.execution import forecast as fc
from study.execution.datacache import DataCache
from study.execution.tracking import TEACHER_EXPERIMENT, Tracker
from study.execution.units import work_units
from study.grid import load_grid
from study.tasks.catalogue import resolve_data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", action="append", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    tracker = Tracker()
    data = DataCache(resolve_data_dir(args.data_dir))
    cal = fc.shipped_calibration()
    runs = tracker.cell_runs()
    teacher_runs = {tid: rs for tid, rs in tracker.runs(TEACHER_EXPERIMENT, contract.KIND_TEACHER,
                                                                contract.TAG_TEACHER_ID).items()}
    print(f"{'grid':<18}{'cells':>6}{'group':>6}{'forecast min':>14}{'measured min':>14}{'error %':>9}{'runs alone':>12}")
    for name in args.grid:
        grid = load_grid(name)
        cells = grid.validate()
        sizes = {d: len(data.raw(d)["train"]) for d in grid.axes["dataset"]}
        keys = {(c.dataset, c.training["max_length"], c.teacher.settings["model"]) for c in cells}
        keys |= {(t.dataset, t.settings["max_length"], t.settings["model"]) for t in grid.teachers()}
        finished = [c for c in cells if any(r.info.status == "FINISHED" for r in runs.get(c.cell_id, []))]
        trained = {c.teacher.teacher_id for c in finished}
        group_size = max([int(r.data.metrics.get(contract.METRIC_GROUP_SIZE, 1)) for c in finished
                          for r in runs[c.cell_id] if r.info.status == "FINISHED"] or [1])
        f = fc.forecast(finished, [t for t in grid.teachers() if t.teacher_id in trained], sizes, cal,
                        args.device, groups=work_units(finished, group_size), tokens=fc.example_tokens(keys, data))
        measured, missing, shares = 0.0, 0, []
        for cell in cells:
            done = [r for r in runs.get(cell.cell_id, []) if r.info.status == "FINISHED"]
            if done:
                m = done[0].data.metrics
                measured += m.get(contract.METRIC_WALL_TIME, 0.0) / max(int(m.get(contract.METRIC_GROUP_SIZE, 1)), 1)
                shares.append(fc.cpu_share(m))
            else:
                missing += 1
        for spec in grid.teachers():
            if spec.teacher_id not in trained:
                continue
            done = [r for r in teacher_runs.get(spec.teacher_id, []) if r.info.status == "FINISHED"]
            if done:
                measured += done[0].data.metrics.get(contract.METRIC_WALL_TIME, 0.0)
                shares.append(fc.cpu_share(m))
        known = [x for x in shares if x is not None]
        alone = f"{sum(x >= fc.MIN_CPU_SHARE for x in known)}/{len(shares)}" if known else "?"
        note = f"  ({missing} cells not finished)" if missing else ""
        err = 100 * (f.total_s - measured) / measured if measured else float("nan")
        print(f"{name:<18}{len(cells):>6}{group_size:>6}{f.total_s / 60:>14.1f}{measured / 60:>14.1f}{err:>+9.0f}{alone:>12}{note}")


if __name__ == "__main__":
    main()
