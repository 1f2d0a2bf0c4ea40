"""``ray``: one Ray task per work unit, on a local Ray cluster or a running one.

Each task asks for ``num_cpus`` CPUs, ``num_gpus`` GPUs (a fraction shares a GPU) and any custom
``resources``; a task whose worker process died (OOM killer, a lost node) is retried up to
``max_retries`` times, while a cell that raises is logged FAILED by the worker and never retried
by Ray. Workers log to the tracking URI the driver uses: a tracking server (``study server``)
when the cluster has other machines; a sqlite file only on a local cluster this run starts,
where every worker shares this machine's disk.
"""

from __future__ import annotations

import json
import math
import socket
import time

from study.core.errors import EnvironmentFault, StudyConfigError
from study.execution.executors.base import Executor, register
from study.execution.units import WorkUnit
from study.execution.work import CellOutcome, RunContext, worker_for

ADDRESS_HELP = ("allowed: HOST:PORT of a running cluster's head (what `ray start --head` prints), "
                "`auto` for the cluster this machine belongs to, or no --address for a local cluster")
#: Seconds to wait for a TCP answer from the cluster's head before refusing its address.
PROBE_TIMEOUT_S = 5.0


def _train_unit(unit: WorkUnit, ctx: RunContext) -> list[CellOutcome]:
    """The Ray task: train ``unit`` in this worker process (teachers stay loaded between tasks)."""
    return worker_for(ctx).run(unit, log=lambda line: print(line, flush=True))


def parse_resources(value) -> dict[str, float]:
    """Custom Ray resources per task from a JSON object (or a dict): name -> amount >= 0.

    Raises:
        StudyConfigError: not a JSON object of names to non-negative finite numbers.
    """
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise StudyConfigError(f"--ray-resources {value!r} is not JSON ({exc.msg}); allowed: an object "
                                   'of resource names to amounts, e.g. \'{"accelerator_type:A100": 0.5}\'.') from None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v) and v >= 0 for k, v in value.items()):
        raise StudyConfigError(f"--ray-resources {json.dumps(value)} is not allowed: an object of resource "
                               "names to non-negative numbers, e.g. '{\"accelerator_type:A100\": 0.5}'.")
    return {k: float(v) for k, v in value.items()}


def _probe(address: str) -> None:
    """Refuse an address whose head does not answer on TCP within ``PROBE_TIMEOUT_S``."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StudyConfigError(f"--address {address!r} is not HOST:PORT; {ADDRESS_HELP}.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        raise StudyConfigError(f"Cannot reach the Ray cluster at --address {address!r} ({why}); {ADDRESS_HELP}.") from None


@register
class RayExecutor(Executor):
    """One Ray task per work unit (see the module doc)."""

    name = "ray"
    options = {"address": None, "num_cpus": 1.0, "num_gpus": 0.0, "ray_resources": None, "max_retries": 2,
               "local_cpus": None}

    def check(self, ctx: RunContext, shared_store: bool) -> None:
        """Refuse, before any training: Ray missing, a bad resource amount, an unreachable
        address, a sqlite store with a cluster this run does not start, ``--device cuda``
        without GPUs per task."""
        s = self.settings
        try:
            import ray  # noqa: F401  (optional dependency, kd-study[ray]: imported only when used)
        except ImportError:
            raise StudyConfigError("--executor ray needs Ray, which is not installed: pip install "
                                   "'kd-study[ray]' (or `pip install ray`), or use --executor serial.") from None
        for opt in ("num_cpus", "num_gpus"):
            v = s[opt]
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise StudyConfigError(f"--{opt.replace('_', '-')} {v!r} is not allowed: a number >= 0 per task "
                                       "(fractions share a device, e.g. 0.5).")
        if s["num_cpus"] == 0 and s["num_gpus"] == 0 and not parse_resources(s["ray_resources"]):
            raise StudyConfigError("--num-cpus 0 with --num-gpus 0 and no --ray-resources would start every cell "
                                   "at once; allowed: a positive amount of some resource per task.")
        if not (isinstance(s["max_retries"], int) and s["max_retries"] >= 0):
            raise StudyConfigError(f"--max-retries {s['max_retries']!r} is not allowed: an integer >= 0.")
        if s["local_cpus"] is not None:
            if s["address"] is not None:
                raise StudyConfigError("--local-cpus sizes a local cluster; it does not apply with --address.")
            if not (isinstance(s["local_cpus"], int) and s["local_cpus"] >= 1):
                raise StudyConfigError(f"--local-cpus {s['local_cpus']!r} is not allowed: an integer >= 1.")
        if ctx.device == "cuda" and s["num_gpus"] == 0:
            raise StudyConfigError("--device cuda with --executor ray needs --num-gpus > 0 per task (Ray hides "
                                   "the GPUs from tasks that ask for none; 0.5 shares one GPU between two).")
        if s["address"] is not None and not shared_store:
            raise StudyConfigError(
                f"The tracking URI {ctx.tracking_uri!r} is a sqlite file on this machine; workers of the Ray "
                f"cluster at {s['address']!r} cannot write it. Start `study server` and pass its URI "
                "(--tracking-uri http://HOST:PORT), or leave out --address to run on a local cluster.")
        if s["address"] is not None:
            _probe(s["address"])
        parse_resources(s["ray_resources"])

    def _start(self, ctx: RunContext, shared_store: bool) -> bool:
        """Connect to (or start) the cluster; True when this call started it."""
        import ray  # optional dependency, kd-study[ray]: imported only when used

        s = self.settings
        if ray.is_initialized():
            return False
        env = {"TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}  # no progress bars in workers' logs
        try:
            if s["address"] is None:
                ray.init(num_cpus=s["local_cpus"], include_dashboard=False, runtime_env={"env_vars": env},
                         logging_level="WARNING")
            else:
                ray.init(address=s["address"], runtime_env={"env_vars": env}, logging_level="WARNING")
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise StudyConfigError(f"Cannot start or join the Ray cluster ({type(exc).__name__}: {text}); "
                                   f"{ADDRESS_HELP}.") from None
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if not shared_store and len(nodes) > 1:
            ray.shutdown()
            raise StudyConfigError(f"The Ray cluster has {len(nodes)} machines but the tracking URI "
                                   f"{ctx.tracking_uri!r} is a sqlite file on this one; start `study server` "
                                   "and pass --tracking-uri http://HOST:PORT.")
        return True

    def run(self, units, ctx, report, log=print) -> None:
        import ray  # optional dependency, kd-study[ray]: imported only when used
        from ray.exceptions import RayError

        s = self.settings
        started = self._start(ctx, ctx.tracking_uri and not ctx.tracking_uri.startswith("sqlite:"))
        remote = ray.remote(_train_unit)
        options = {"num_cpus": s["num_cpus"], "num_gpus": s["num_gpus"], "max_retries": s["max_retries"],
                   "retry_exceptions": False}
        if parse_resources(s["ray_resources"]):
            options["resources"] = parse_resources(s["ray_resources"])
        by_ref = {remote.options(name=f"unit {u.name}", **options).remote(u, ctx): u for u in units}
        pending = list(by_ref)
        log(f"ray: {len(units)} tasks sent to {ray.cluster_resources().get('CPU', 0):g} CPUs, "
            f"{ray.cluster_resources().get('GPU', 0):g} GPUs ({s['num_cpus']:g} CPU, {s['num_gpus']:g} GPU a task)")
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    unit = by_ref[ref]
                    try:
                        outcomes = ray.get(ref)
                    except RayError as exc:  # the worker died (after retries), or failed outside a cell
                        if isinstance(getattr(exc, "cause", None), EnvironmentFault):
                            raise exc.cause from None  # the grid stops; the finally shuts Ray down
                        line = " ".join(str(exc).split())[:500]
                        outcomes = [CellOutcome(c.cell_id, c.name, "failed", error=f"{type(exc).__name__}: {line}",
                                                dataset=c.dataset) for c in unit.cells]
                    for outcome in outcomes:
                        report(outcome)
        except KeyboardInterrupt:
            for ref in pending:  # the task gets KeyboardInterrupt: its cell's run ends KILLED
                ray.cancel(ref)
            ray.wait(pending, num_returns=len(pending), timeout=15)
            raise
        finally:
            if started:
                time.sleep(0.1)
                ray.shutdown()
