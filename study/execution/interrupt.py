"""SIGTERM (and SIGHUP) as an interruption: what a scheduler or ``timeout`` sends ends the cell in
progress the way Ctrl-C does, its MLflow run KILLED (``Tracker.fail``) and retrained by the next
``study run``, instead of a run left RUNNING by a process that died mid-write.

A preemption notice can also be *held* (:func:`held`): while a group trains with checkpoints on,
the first SIGTERM/SIGHUP is recorded instead of raised; the trainer reaches the end of its batch,
the checkpointer sees it (:func:`pending`), writes every member's checkpoint and raises it
(:func:`raise_pending`), so the rerun resumes from that batch, not from the last periodic
checkpoint. A second signal, or ``HOLD_GRACE_S`` seconds without reaching a batch's end (a dev
evaluation, a teacher pass), raises at once: a scheduler's grace period (Slurm's KillWait, 30 s by
default) is not overrun.

A store request is never cut in half (:func:`deferred`, around every call of the tracker's MLflow
client): a signal that arrives during one is raised when the request returns. Raised inside it, the
interruption could end the process with the run it was creating committed but its id unknown (left
RUNNING), or with a write transaction the exception's frames keep open, so the sqlite store stays
locked while the run is being ended KILLED.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The signals turned into ``Terminated``.
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)
#: The longest a held signal waits for a batch's end before it is raised anyway (seconds).
HOLD_GRACE_S = 15.0


class _Signals:
    """What the handler of :func:`signals_as_interrupt` shares with :func:`held`."""

    def __init__(self) -> None:
        self.fired = False  # Terminated was raised: later signals are ignored
        self.holding = 0  # depth of held() blocks
        self.pending: int | None = None  # a held signal's number
        self.timer: threading.Timer | None = None
        self.deferring = 0  # depth of deferred() blocks
        self.deferred: int | None = None  # a signal that arrived inside one

    def hold(self, signum: int) -> None:
        """Keep ``signum`` pending for the checkpointer; after ``HOLD_GRACE_S`` it is sent again."""
        self.pending = signum
        self.timer = threading.Timer(HOLD_GRACE_S, os.kill, (os.getpid(), signum))
        self.timer.daemon = True
        self.timer.start()

    def raise_now(self, signum: int) -> None:
        self.fired, self.pending = True, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        raise Terminated(signum)


_active: _Signals | None = None


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGHUP raises ``Terminated`` in the main thread; later
    ones are ignored while the run is being marked KILLED. Outside the main thread it does nothing
    (Python delivers signals to the main thread only). The previous handlers are restored after."""
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state, outer = _Signals(), _active

    def handler(signum, frame):
        if state.fired:
            return
        if state.deferring and state.deferred is None and state.pending is None:  # raised on return
            state.deferred = signum
            return
        if state.holding and state.pending is None:  # held: the checkpointer raises it
            state.hold(signum)
            return
        state.raise_now(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    _active = state
    try:
        yield
    finally:
        _active = outer
        if state.timer is not None:
            state.timer.cancel()
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def held() -> Iterator[None]:
    """Within the block (and inside :func:`signals_as_interrupt`), hold the first SIGTERM/SIGHUP
    until :func:`raise_pending` raises it, a second signal arrives, or ``HOLD_GRACE_S`` pass. A
    signal still held when the block ends is raised then. Outside ``signals_as_interrupt`` (a Ray
    worker, a test) it does nothing."""
    state = _active
    if state is None:
        yield
        return
    state.holding += 1
    try:
        yield
    finally:
        state.holding -= 1
    if state.holding == 0 and state.pending is not None and not state.fired:
        state.raise_now(state.pending)


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block (and inside :func:`signals_as_interrupt`, in the main thread), the first
    SIGTERM/SIGHUP is recorded, not raised; when the outermost block ends it is raised, or, inside
    :func:`held`, left pending for the checkpointer. A second signal raises at once (a request that
    hangs on a store that is away). Elsewhere it does nothing. For a store request (an MLflow client
    call), which an exception in its middle can leave half done."""
    state = _active
    if state is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    state.deferring += 1
    try:
        yield
    finally:
        state.deferring -= 1
        if state.deferring == 0 and state.deferred is not None:
            signum, state.deferred = state.deferred, None
            if state.holding and not state.fired:
                state.hold(signum)  # the checkpointer raises it at the batch's end
            elif not state.fired:
                state.raise_now(signum)


def pending() -> bool:
    """Whether a held SIGTERM/SIGHUP waits to be raised (:func:`held`)."""
    return _active is not None and _active.pending is not None and not _active.fired


def raise_pending() -> None:
    """Raise the held signal as ``Terminated``, if one waits; else nothing."""
    if pending():
        _active.raise_now(_active.pending)


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's exit status for a process ended by this signal: 128 + its number (130 Ctrl-C)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)
