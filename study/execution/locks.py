"""Run locks that hold across machines: a cell (or teacher) is claimed by creating its MLflow run.

File locks hold on one disk only; drivers and workers on several machines share just the
tracking server. So a worker claims a cell (or a teacher) by creating its RUNNING run, and every
RUNNING run says who holds it (tags ``study.claim.node``, ``.pid``, ``.process_start``) and that
it is alive (``study.heartbeat``, Unix seconds, renewed every ``heartbeat_interval_s()`` by a
thread of the holding process). The protocol, for one key (a cell id):

1. Read the key's runs. One that is done (FINISHED) → nothing to do. RUNNING runs whose holder is
   dead are marked KILLED (``reap``); a live one → the key is busy, skip it.
2. Create our run, ``study.claim.state=pending``, and read again. Done meanwhile, another
   *confirmed* live claim, or an earlier pending one (order: start time, then run id) → withdraw.
3. Set ``confirmed`` and read again. Another confirmed live claim → withdraw, back off a random
   moment and start over (both saw each other); else the claim is ours.

Withdrawing tags the run and deletes it (it trained nothing). Two claims can both pass step 3
only if neither saw the other's ``confirmed``, which a store that reads its own writes rules
out: each writes before it reads, so the later reader sees both. Start-time order only decides
who steps back early, so clock skew costs a retry, never a double claim.

A holder is dead when, on this machine (same host and boot), no process has its pid and start
time (exact, at once); elsewhere, when its heartbeat is older than the claim timeout (default
600 s; clocks must agree to well within it, as NTP keeps them). A run from before claims (no
``study.claim.node``) is dead. A holder cut off longer than the timeout loses its claim to a
worker that retrains the cell; whichever finishes second ends KILLED with
``study.duplicate_of`` naming the first (``finish``), so a cell has one FINISHED run.
"""

from __future__ import annotations

import os
import platform
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.core import contract
from study.core.errors import StudyConfigError

#: Seconds after which a RUNNING run from another machine without a new heartbeat is dead.
DEFAULT_CLAIM_TIMEOUT_S = 600.0
#: Seconds between heartbeats (``STUDY_HEARTBEAT_S`` overrides it, for tests).
DEFAULT_HEARTBEAT_S = 30.0


def heartbeat_interval_s() -> float:
    """Seconds between two heartbeats of a RUNNING run: ``$STUDY_HEARTBEAT_S`` or 30."""
    return float(os.environ.get("STUDY_HEARTBEAT_S") or DEFAULT_HEARTBEAT_S)


def check_claim_timeout(timeout_s: float) -> float:
    """Return ``timeout_s`` (seconds) if at least three heartbeat intervals.

    Raises:
        StudyConfigError: shorter, or not a number (a live worker would look dead).
    """
    beat = heartbeat_interval_s()
    if not (timeout_s == timeout_s and timeout_s >= 3 * beat):
        raise StudyConfigError(f"--claim-timeout {timeout_s} s is too short: allowed at least 3 heartbeat "
                               f"intervals ({3 * beat:g} s; heartbeats every {beat:g} s, "
                               "STUDY_HEARTBEAT_S), so that a live worker never looks dead.")
    return timeout_s


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "0"


#: This machine: host name and boot, so a pid is judged only where it means something.
#: ``STUDY_NODE`` overrides it: for containers that share a host name on one kernel, and for
#: tests that play several machines on one.
NODE = os.environ.get("STUDY_NODE") or f"{platform.node()}:{_boot_id()}"


def holder_tags() -> dict[str, str]:
    """Tags naming this process as the holder of a run, with a first heartbeat."""
    me = psutil.Process()
    return {contract.TAG_CLAIM_NODE: NODE, contract.TAG_CLAIM_PID: str(me.pid),
            contract.TAG_CLAIM_PROCESS_START: f"{me.create_time():.2f}",
            contract.TAG_HEARTBEAT: f"{time.time():.3f}"}


def _process_alive(pid: int, start: str) -> bool:
    try:
        return f"{psutil.Process(pid).create_time():.2f}" == start
    except (psutil.Error, ValueError):
        return False


def dead_reason(run, timeout_s: float, now: float | None = None) -> str | None:
    """Why the RUNNING ``run``'s holder is dead, or None while it is alive (see the module doc)."""
    tags = run.data.tags
    node = tags.get(contract.TAG_CLAIM_NODE)
    if node is None:
        return "its process died before finishing (a run from before claims)"
    if node == NODE:
        if _process_alive(int(tags.get(contract.TAG_CLAIM_PID, "0")), tags.get(contract.TAG_CLAIM_PROCESS_START, "")):
            return None
        return f"its process (pid {tags.get(contract.TAG_CLAIM_PID)} on this machine) died before finishing"
    now = time.time() if now is None else now
    beat = float(tags.get(contract.TAG_HEARTBEAT) or run.info.start_time / 1000)
    if now - beat > timeout_s:
        return (f"no heartbeat from {node} pid {tags.get(contract.TAG_CLAIM_PID)} for {now - beat:.0f} s "
                f"(claim timeout {timeout_s:g} s): its worker is taken for dead")
    return None


class Heartbeat:
    """One daemon thread per process and store that renews ``study.heartbeat`` on the runs this
    process holds, every ``heartbeat_interval_s()`` seconds. A failed renewal is retried at the
    next beat (a store that stays away longer than the claim timeout loses the claim)."""

    _by_uri: dict[str, Heartbeat] = {}
    _guard = threading.Lock()

    def __init__(self, uri: str):
        self.uri = uri
        self.runs: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def of(cls, uri: str) -> Heartbeat:
        """This process's heartbeat for the store at ``uri``."""
        with cls._guard:
            if uri not in cls._by_uri:
                cls._by_uri[uri] = cls(uri)
            return cls._by_uri[uri]

    def add(self, run_id: str) -> None:
        with self._lock:
            self.runs.add(run_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="study-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, run_id: str) -> None:
        with self._lock:
            self.runs.discard(run_id)

    def _loop(self) -> None:
        client = MlflowClient(tracking_uri=self.uri)  # its own client: the main thread's is busy
        while True:
            time.sleep(heartbeat_interval_s())
            with self._lock:
                runs = list(self.runs)
            for run_id in runs:
                try:
                    client.set_tag(run_id, contract.TAG_HEARTBEAT, f"{time.time():.3f}")
                except Exception:  # the store is away; the next beat tries again
                    pass


@dataclass
class Claim:
    """The outcome of ``claim``: ``state`` is ``claimed`` (``run_id`` is ours, RUNNING),
    ``done`` (``run`` finished it) or ``busy`` (``holder`` has it); ``reaped`` lists the reasons
    of the dead claims marked KILLED on the way."""

    state: str
    run_id: str | None = None
    run: object = None
    holder: str = ""
    reaped: tuple[str, ...] = ()


def _order(run) -> tuple[int, str]:
    return run.info.start_time, run.info.run_id


def _holder(run) -> str:
    t = run.data.tags
    return f"{t.get(contract.TAG_CLAIM_NODE, '?')} pid {t.get(contract.TAG_CLAIM_PID, '?')} (run {run.info.run_id})"


# What a SQL backend says when two writers insert the same tag key at once (sqlite, MySQL,
# PostgreSQL): MLflow's tag setters are a select then an insert (SQLAlchemy's merge), so two
# drivers tagging one experiment or run together can both find no row and one insert fails.
_DUPLICATE_KEY = ("UNIQUE constraint failed", "Duplicate entry", "duplicate key value")


def set_tag_racing(setter, *args, attempts: int = 3) -> None:
    """Call an MLflow tag ``setter`` (``client.set_tag`` / ``client.set_experiment_tag``) with
    ``args``, again when a concurrent writer inserted the same key first (the row exists then, so
    the next call updates it). Raises the MlflowException when it is anything else, or after
    ``attempts`` races."""
    for attempt in range(attempts):
        try:
            return setter(*args)
        except MlflowException as exc:
            if attempt == attempts - 1 or not any(s in str(exc) for s in _DUPLICATE_KEY):
                raise


def reap(tracker, runs: list, timeout_s: float, now: float | None = None) -> list[str]:
    """Mark KILLED every RUNNING run of ``runs`` whose holder is dead (``dead_reason`` at ``now``,
    default the current time), with the reason as ``study.error``; return the reasons."""
    reasons = []
    for run in runs:
        if run.info.status != "RUNNING":
            continue
        why = dead_reason(run, timeout_s, now)
        if why is not None:
            set_tag_racing(tracker.client.set_tag, run.info.run_id, contract.TAG_ERROR, why[:4000])
            tracker.client.set_terminated(run.info.run_id, "KILLED")
            reasons.append(why)
    return reasons


def claim(tracker, experiment: str, run_name: str, tags: dict[str, str], lookup: Callable[[], list],
          is_done: Callable[[object], bool] = lambda r: r.info.status == "FINISHED",
          timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S, attempts: int = 5) -> Claim:
    """Claim the key whose runs ``lookup()`` returns, by creating a RUNNING run in ``experiment``
    with ``tags`` (which must make ``lookup`` find it); see the module doc for the protocol.

    Returns a ``Claim``; when ``claimed``, the caller owns the run and ends it with
    ``finish`` or ``Tracker.fail``. Raises what the store raises.
    """
    reaped: list[str] = []
    for attempt in range(attempts):
        runs = lookup()
        done = next((r for r in runs if is_done(r)), None)
        if done is not None:
            return Claim("done", run=done, reaped=tuple(reaped))
        # one clock reading for both: a heartbeat crossing the timeout between two readings was
        # neither reaped nor live, and its run was left RUNNING beside the retrained one
        now = time.time()
        reaped += reap(tracker, runs, timeout_s, now)
        live = [r for r in runs if r.info.status == "RUNNING" and dead_reason(r, timeout_s, now) is None]
        if live:
            return Claim("busy", holder=_holder(min(live, key=_order)), reaped=tuple(reaped))
        run_id = tracker.start(experiment, run_name, {**tags, contract.TAG_CLAIM_STATE: "pending"}, {})
        try:
            got = _settle(tracker, run_id, lookup, is_done, timeout_s, reaped)
        except BaseException as exc:  # Ctrl-C, SIGTERM, a store error: the claim ends KILLED/FAILED
            tracker.fail(run_id, exc)
            raise
        if got is not None:
            return got
        time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))  # both stepped back: retry apart
    return Claim("busy", holder="(contended: no claim after retries)", reaped=tuple(reaped))


def _settle(tracker, run_id: str, lookup, is_done, timeout_s: float, reaped: list[str]) -> Claim | None:
    """Steps 2 and 3 of the protocol for our new run: the claim's outcome, or None to retry."""
    def others(runs: list) -> list:
        return [r for r in runs if r.info.run_id != run_id and r.info.status == "RUNNING"
                and dead_reason(r, timeout_s) is None]

    runs = lookup()
    mine = next((r for r in runs if r.info.run_id == run_id), None)
    done = next((r for r in runs if is_done(r)), None)
    rivals = others(runs)
    first = [r for r in rivals if r.data.tags.get(contract.TAG_CLAIM_STATE) == "confirmed"
             or (mine is not None and _order(r) < _order(mine))]
    if done is not None or first:
        withdraw(tracker, run_id, "done by another run" if done else f"claimed first by {_holder(first[0])}")
        if done is not None:
            return Claim("done", run=done, reaped=tuple(reaped))
        return Claim("busy", holder=_holder(first[0]), reaped=tuple(reaped))
    tracker.client.set_tag(run_id, contract.TAG_CLAIM_STATE, "confirmed")
    runs = lookup()
    done = next((r for r in runs if is_done(r)), None)
    rivals = [r for r in others(runs) if r.data.tags.get(contract.TAG_CLAIM_STATE) == "confirmed"]
    if done is None and not rivals:
        return Claim("claimed", run_id=run_id, reaped=tuple(reaped))
    withdraw(tracker, run_id, "done by another run" if done else f"confirmed at once with {_holder(rivals[0])}")
    if done is not None:
        return Claim("done", run=done, reaped=tuple(reaped))
    return None


def withdraw(tracker, run_id: str, reason: str) -> None:
    """Give up a claim that trained nothing: tag why, then delete its run (a deleted run is
    invisible to searches, so it never counts as a cell's state)."""
    tracker.release(run_id)
    tracker.client.set_tag(run_id, contract.TAG_CLAIM_WITHDRAWN, reason[:4000])
    tracker.client.set_terminated(run_id, "KILLED")
    tracker.client.delete_run(run_id)


def finish(tracker, run_id: str, lookup: Callable[[], list]) -> str | None:
    """End our claimed run FINISHED, unless another run of the key FINISHED meanwhile (our claim
    had gone stale and was taken over): then end ours KILLED, tagged ``study.duplicate_of`` with
    the first one's id, which is returned (its metrics stay for inspection)."""
    first = next((r for r in lookup() if r.info.status == "FINISHED" and r.info.run_id != run_id), None)
    if first is None:
        tracker.finish(run_id)
        return None
    tracker.client.set_tag(run_id, contract.TAG_DUPLICATE_OF, first.info.run_id)
    tracker.client.set_tag(run_id, contract.TAG_ERROR, f"duplicate: run {first.info.run_id} finished this "
                                                       "cell first (this run's claim had gone stale)")
    tracker.release(run_id)
    tracker.client.set_terminated(run_id, "KILLED")
    return first.info.run_id
