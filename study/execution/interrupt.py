"""SIGTERM (and SIGHUP) as an interruption: what a scheduler or ``timeout`` sends ends the cell in
progress the way Ctrl-C does, its MLflow run KILLED (``Tracker.fail``) and retrained by the next
``study run``, instead of a run left RUNNING by a process that died mid-write.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The signals turned into ``Terminated``.
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


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
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum, frame):
        nonlocal fired
        if fired:
            return
        fired = True
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's exit status for a process ended by this signal: 128 + its number (130 Ctrl-C)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)
