"""Checkpoints inside a cell: a killed group resumes where it was, not from zero.

While a group trains (``study.training.trainer.train_group``), every ``checkpoint_every`` seconds
(``study run --checkpoint-every MINUTES``; default 5 min on CPU, 10 on a GPU, 0 for none; not part
of any id) each live cell's state (``study.training.state.student_state``: weights, optimiser,
schedule, mapping and critic states, random streams, data position, epoch and step, running
losses) is written to ``<checkpoints>/<cell_id>/``:

- ``step-<S>.pt``: the state and the group's position (``torch.save``; read back with
  ``weights_only=True``);
- ``checkpoint.json``: which file, its SHA-256, the position; written last.

Each file is written beside its final name, flushed to disk (fsync) and renamed over it, and the
folder is synced; ``checkpoint.json`` is the commit point, so a kill at any moment leaves either
the previous checkpoint or the new one whole. The older step file goes after the commit.

A rerun (or a Ray retry of a dead task) that claims the cell again reads its checkpoint: the
cells of a group whose checkpoints share a position resume together from it; a cell whose
checkpoint is missing, partial or damaged (checksum, unreadable, another recipe's) is warned
about in one line and starts over, in a group of its own. A resumed cell's run is tagged
``study.resumed_from`` and logs its earlier epochs again, so it holds the whole history. On CPU
the resumed cell ends bit-identical to an uninterrupted one.

A cell's checkpoint is removed when its run ends FINISHED or FAILED; an interrupted or killed
cell keeps it for the next run. ``study clean`` removes orphans (checkpoints of finished cells,
and the temporary files of a dead writer).

Where: ``runs/checkpoints`` by default (``--checkpoint-dir`` elsewhere). With a tracking server
and workers on several machines it must be a path every worker reads and writes (a shared
filesystem), or a retried cell on another machine starts over.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from study.core.paths import runs_dir
from study.execution import interrupt
from study.training.state import Position

#: The checkpoint folder's commit record.
CHECKPOINT_META = "checkpoint.json"
#: Bumped when the saved state's layout changes; a checkpoint of another format starts over.
FORMAT = 1
#: Minutes between checkpoints by device type when ``--checkpoint-every`` is not given.
DEFAULT_EVERY_MIN = {"cpu": 5.0, "cuda": 10.0}


def checkpoints_dir() -> Path:
    """The default checkpoint folder, ``runs/checkpoints``."""
    return runs_dir() / "checkpoints"


def default_every_s(device_type: str) -> float:
    """Seconds between checkpoints on a device of ``device_type`` (``cpu``, ``cuda``, ...)."""
    return 60.0 * DEFAULT_EVERY_MIN.get(device_type, DEFAULT_EVERY_MIN["cuda"])


@dataclass
class Saved:
    """A checkpoint read back: the group's ``position`` and the cell's ``state``."""

    position: Position
    state: dict


def _write_atomic(path: Path, data) -> None:
    """Write ``data`` (bytes-like) to ``path`` whole or not at all: a temporary file beside it,
    flushed and fsynced, renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """The checkpoints of cells under ``root`` (default ``runs/checkpoints``), one folder per cell id.

    ``log`` receives one-line warnings (a checkpoint that cannot be used)."""

    def __init__(self, root: Path | str | None = None, log: Callable[[str], None] = print):
        self.root = Path(root) if root is not None else checkpoints_dir()
        self.log = log

    def folder(self, cell_id: str) -> Path:
        return self.root / cell_id

    def save(self, cell_id: str, position: Position, state: dict) -> Path:
        """Write ``state`` (``student_state``) of ``cell_id`` at ``position`` atomically; return
        the state file. An ``OSError`` (a full disk) propagates: the caller stops the grid."""
        folder = self.folder(cell_id)
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "cell_id": cell_id, "epoch": position.epoch, "batches": position.batches,
                    "step": position.step, "order_state": position.order_state, "state": state}, buf)
        data = buf.getbuffer()
        name = f"step-{position.step:09d}.pt"
        _write_atomic(folder / name, data)
        meta = {"format": FORMAT, "cell_id": cell_id, "file": name, "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data), "epoch": position.epoch, "batches": position.batches, "step": position.step,
                "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_atomic(folder / CHECKPOINT_META, json.dumps(meta, indent=2).encode())
        _sync_dir(folder)
        for old in folder.glob("step-*.pt"):
            if old.name != name:
                old.unlink(missing_ok=True)
        return folder / name

    def load(self, cell_id: str) -> Saved | None:
        """The cell's checkpoint, or None: when it has none, silently; when it is partial or
        damaged (no commit record, a checksum that differs, a file that cannot be read, another
        format or cell), with one warning naming the folder and why; the cell then starts over."""
        folder = self.folder(cell_id)
        if not folder.is_dir():
            return None
        try:
            meta = json.loads((folder / CHECKPOINT_META).read_text())
            data = (folder / meta["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ValueError(f"{meta['file']} does not match the SHA-256 in {CHECKPOINT_META}")
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if payload.get("format") != FORMAT or payload.get("cell_id") != cell_id:
                raise ValueError(f"it is format {payload.get('format')} of cell {payload.get('cell_id')}, "
                                 f"not format {FORMAT} of cell {cell_id}")
            position = Position(payload["epoch"], payload["batches"], payload["step"], payload["order_state"])
            return Saved(position, payload["state"])
        except FileNotFoundError as exc:
            why = f"{Path(exc.filename).name if exc.filename else 'a file'} is missing (a partial write)"
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        self.log(f"warning: the checkpoint in {folder} cannot be used ({why}); cell {cell_id} starts over")
        return None

    def remove(self, cell_id: str) -> None:
        """Remove the cell's checkpoint (its run ended)."""
        shutil.rmtree(self.folder(cell_id), ignore_errors=True)

    def cell_ids(self) -> list[str]:
        """The cells that have a checkpoint folder."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def remove_stale_files(self) -> int:
        """Remove the temporary files a dead writer left (``.<name>.tmp<pid>``); return how many."""
        n = 0
        for tmp in self.root.glob("*/.*.tmp*"):
            pid = tmp.name.rsplit(".tmp", 1)[1]
            if not pid.isdigit() or (int(pid) != os.getpid() and not psutil.pid_exists(int(pid))):
                tmp.unlink(missing_ok=True)
                n += 1
        return n


class GroupCheckpointer:
    """A group's ``study.training.state.Checkpointer``: due every ``every_s`` seconds of wall time
    (``<= 0``: never), and at the first batch's end after a held SIGTERM/SIGHUP
    (``study.execution.interrupt.held``); it writes each member's state under its cell id
    (``cell_ids``, in the group's order), logs one line with what it wrote and how long it took,
    and then raises the held signal, if any, as ``Terminated``."""

    def __init__(self, store: CheckpointStore, cell_ids: list[str], every_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self.cell_ids, self.every_s, self.clock = store, cell_ids, every_s, clock
        self.last = clock()
        self.written = 0

    def due(self) -> bool:
        return self.every_s > 0 and (interrupt.pending() or self.clock() - self.last >= self.every_s)

    def save(self, position: Position, states: dict[int, dict]) -> None:
        t0 = time.perf_counter()
        size = 0
        for i, state in states.items():
            size += self.store.save(self.cell_ids[i], position, state).stat().st_size
        self.written += 1
        self.last = self.clock()
        why = " on the interruption" if interrupt.pending() else ""
        self.store.log(f"checkpoint{why} of {len(states)} cell(s) at epoch {position.epoch}, batch "
                       f"{position.batches} (step {position.step}): {size / 2**20:.0f} MiB in "
                       f"{time.perf_counter() - t0:.1f} s")
        interrupt.raise_pending()


def resume_plan(store: CheckpointStore, cell_ids: Iterable[str]) -> list[tuple[list[int], Position | None, list[dict]]]:
    """Split a group's cells (``cell_ids``, in order) by where their checkpoints stand: per part,
    (the cells' indices, their shared ``Position`` or None to start over, their states). Cells
    whose checkpoints share a position resume together; those without a usable one start over
    together (warned about by ``CheckpointStore.load``)."""
    saved = [store.load(cid) for cid in cell_ids]
    parts: dict[tuple[int, int] | None, list[int]] = {}
    for i, sv in enumerate(saved):
        parts.setdefault(None if sv is None else sv.position.key, []).append(i)
    return [(idx, None if key is None else saved[idx[0]].position,
             [saved[i].state for i in idx] if key is not None else [])
            for key, idx in parts.items()]


def orphans(store: CheckpointStore, status: dict[str, str]) -> list[tuple[str, str]]:
    """The checkpoints no run will resume from, with why: (cell id, reason) for each cell whose
    ``status`` (``Tracker.cell_status``: cell id → done, failed, running, killed) is done or
    failed, or that the store has no run of. A killed or running cell's checkpoint is kept."""
    out = []
    for cell_id in store.cell_ids():
        state = status.get(cell_id)
        if state in ("done", "failed"):
            out.append((cell_id, f"the cell's run {'finished' if state == 'done' else 'failed'}"))
        elif state is None:
            out.append((cell_id, "the store has no run of this cell"))
    return out
