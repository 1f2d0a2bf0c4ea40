"""``serial``: every unit in this process, one after another (the default)."""

from __future__ import annotations

from study.execution.executors.base import Executor, register
from study.execution.work import Worker


@register
class SerialExecutor(Executor):
    """Trains the units in the driver's own process, in order; teachers stay loaded."""

    name = "serial"

    def run(self, units, ctx, report, log=print) -> None:
        worker = Worker(ctx)
        for unit in units:
            for outcome in worker.run(unit, log):
                report(outcome)
