"""Telling a fault of the environment (``EnvironmentFault``) from a fault of the cell.

A cell's exception is an environment fault when it, or an exception it was raised from, is an
``OSError`` with errno ENOSPC, EDQUOT, EROFS or EIO; EACCES/EPERM on a path under ``runs/``; a
missing file whose folder is gone (a lost data folder); a library's error that carries one of
these (``os error 28`` from Rust code such as safetensors, sqlite's ``database or disk is full``);
or a tracking server that does not answer (connection refused, reset or timed out after MLflow's
retries). Anything else (a NaN, an out-of-memory error, a bug) stays the cell's failure.
"""

from __future__ import annotations

import errno
import re
import time
from pathlib import Path

from study.core.errors import EnvironmentFault
from study.core.paths import runs_dir

_ERRNO_WHAT = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error",
}
_HINTS = {
    errno.ENOSPC: "free space there (or point STUDY_RUNS_DIR at a larger filesystem)",
    errno.EDQUOT: "free space or raise the quota (or point STUDY_RUNS_DIR elsewhere)",
    errno.EROFS: "make the filesystem writable (or point STUDY_RUNS_DIR elsewhere)",
    errno.EIO: "check the disk or network filesystem",
    errno.EACCES: "make it writable by this user (or point STUDY_RUNS_DIR elsewhere)",
}
_TEXT_ERRNO = (("no space left on device", errno.ENOSPC), ("database or disk is full", errno.ENOSPC),
               ("disk quota exceeded", errno.EDQUOT), ("read-only file system", errno.EROFS),
               ("attempt to write a readonly database", errno.EROFS), ("disk i/o error", errno.EIO))
_UNREACHABLE = ("max retries exceeded", "failed to establish a new connection", "connection refused",
                "read timed out", "connection aborted", "remotedisconnected", "connection reset")
RERUN = "then run `study run` again: the cells left pending train then"
#: ``EnvironmentFault.what`` of a tracking server that stopped answering.
SERVER_STOPPED = "the MLflow tracking server stopped answering"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _under_runs(filename) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(runs_dir().resolve())
    except (OSError, ValueError, TypeError):
        return False


def _os_fault(exc: OSError) -> EnvironmentFault | None:
    where = str(exc.filename) if exc.filename else "the study's files"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM) and exc.filename and _under_runs(exc.filename):
        return EnvironmentFault("permission denied", where, f"{_HINTS[errno.EACCES]}, {RERUN}")
    if code == errno.ENOENT and exc.filename and not Path(exc.filename).parent.exists():
        return EnvironmentFault("folder gone", where, f"restore the folder (the data set or runs/), {RERUN}")
    if code in _ERRNO_WHAT:
        return EnvironmentFault(_ERRNO_WHAT[code], where, f"{_HINTS[code]}, {RERUN}")
    return None


def environment_fault(exc: BaseException, store: str = "the MLflow store") -> EnvironmentFault | None:
    """The ``EnvironmentFault`` that ``exc`` stands for, or None when it is the cell's own failure
    (see the module doc); ``store`` names the tracking URI for an unreachable server."""
    for e in _chain(exc):
        if isinstance(e, EnvironmentFault):
            return e
        if isinstance(e, OSError) and not isinstance(e, ConnectionError) and (f := _os_fault(e)):
            return f
    text = " ".join(" ".join(str(e).split()) for e in _chain(exc)).lower()
    if (m := re.search(r"os error (\d+)", text)) and int(m.group(1)) in _ERRNO_WHAT:
        code = int(m.group(1))
        return EnvironmentFault(_ERRNO_WHAT[code], f"writing under {runs_dir()}", f"{_HINTS[code]}, {RERUN}")
    for needle, code in _TEXT_ERRNO:
        if needle in text:
            return EnvironmentFault(_ERRNO_WHAT[code], f"writing under {runs_dir()} or {store}",
                                    f"{_HINTS[code]}, {RERUN}")
    names = {type(e).__name__ for e in _chain(exc)}
    if store.startswith(("http://", "https://")) and (
            any(n in text for n in _UNREACHABLE) or names & {"ConnectionError", "ConnectTimeout", "ReadTimeout"}):
        at = time.strftime("%H:%M:%S UTC", time.gmtime())
        return EnvironmentFault(SERVER_STOPPED, f"{store}, given up at {at}",
                                f"start it again on the same store (`study server`), {RERUN}")
    return None


def server_stopped(exc: BaseException) -> bool:
    """True when ``exc`` is the fault of a tracking server that stopped answering: ending runs on
    it then only costs a timeout each (the next ``study run`` reaps them)."""
    return isinstance(exc, EnvironmentFault) and exc.what == SERVER_STOPPED
