"""MLflow bookkeeping: experiments per grid, batched logging, the done/failed/running map.

Schema (``analysis.table`` reads exactly this): one experiment per grid, named as the grid;
teachers in the experiment ``teachers``. Tags ``study.kind`` (``cell``/``teacher``),
``study.cell_id`` / ``study.teacher_id``, ``study.grid``, ``study.error`` on failure. Metrics are
logged with ``log_batch`` (one sqlite round trip per epoch, not per point).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
import traceback
from collections import defaultdict
from collections.abc import Iterable

from filelock import FileLock
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

import study
from analysis import contract
from study.paths import PROJECT_ROOT, runs_dir, tracking_uri

TEACHER_EXPERIMENT = "teachers"
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        if out.returncode:
            return "unknown"
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags(device: str) -> dict[str, str]:
    """Provenance tags: package versions, git commit, device, host."""
    import torch
    import transformers

    return {
        "study.version": study.__version__,
        "study.git_commit": _git_commit(),
        "study.device": device,
        "study.versions.torch": torch.__version__,
        "study.versions.transformers": transformers.__version__,
        "study.versions.python": platform.python_version(),
        "study.host": platform.node(),
    }


class Tracker:
    """A thin layer over ``MlflowClient`` with the study's schema."""

    def __init__(self, uri: str | None = None):
        self.uri = tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        if self.uri.startswith("sqlite:///"):
            db = self.uri[len("sqlite:///"):]
            os.makedirs(os.path.dirname(db) or ".", exist_ok=True)
            # MLflow creates and migrates the sqlite schema on first use; two workers doing that
            # at once corrupt the migration, so the first use is serialised.
            with FileLock(db + ".lock"):
                self.client.search_experiments(max_results=1)

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        """The experiment's id; created with artifacts under ``runs/mlartifacts/`` if missing."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        location = None
        if self.uri.startswith("sqlite:"):
            location = (runs_dir() / "mlartifacts" / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another worker created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def runs(self, experiment: str | None, kind: str, key: str, value: str | None = None) -> dict[str, list]:
        """Runs of ``kind`` in ``experiment`` (every experiment when None), grouped by the tag
        ``key``, newest first; only those whose ``key`` equals ``value`` when it is given (one
        cell's runs, without reading them all)."""
        if experiment is None:
            exp_ids = [e.experiment_id for e in self.client.search_experiments(max_results=50000)]
        else:
            exp_id = self.experiment_id(experiment, create=False)
            exp_ids = [] if exp_id is None else [exp_id]
        out: dict[str, list] = defaultdict(list)
        if not exp_ids:
            return out
        query = f"tags.`{contract.TAG_KIND}` = '{kind}'"
        if value is not None:
            query += f" and tags.`{key}` = '{value}'"
        token = None
        while True:
            page = self.client.search_runs(exp_ids, filter_string=query,
                                           max_results=1000, page_token=token,
                                           order_by=["attributes.start_time DESC"])
            for run in page:
                out[run.data.tags.get(key, "")].append(run)
            token = page.token
            if not token:
                return out

    def cell_runs(self, cell_id: str | None = None) -> dict[str, list]:
        """Every cell run in the store (any grid's experiment), by cell id, newest first: a cell
        trained by one grid is found by every grid that contains it."""
        return self.runs(None, contract.KIND_CELL, contract.TAG_CELL_ID, cell_id)

    def adopt(self, grid: str, cells: Iterable, runs: dict[str, list]) -> int:
        """Tag the FINISHED run of each of ``cells`` (objects with ``cell_id``, ``name``,
        ``factors``) as a member of ``grid`` when another grid trained it; returns how many."""
        key = contract.membership_tag(grid)
        n = 0
        for cell in cells:
            for run in runs.get(cell.cell_id, []):
                if run.info.status == "FINISHED":
                    if key not in run.data.tags:
                        self.client.set_tag(run.info.run_id, key,
                                            contract.encode_membership(cell.name, cell.factors))
                        n += 1
                    break
        return n

    def cell_status(self, grid: str | None = None) -> dict[str, str]:
        """cell_id → ``done`` (a FINISHED run exists in any experiment), ``failed``, ``running``,
        or ``killed``. ``grid`` is accepted for compatibility; the lookup is by cell id."""
        status = {}
        for cell_id, runs in self.cell_runs().items():
            statuses = [r.info.status for r in runs]
            if "FINISHED" in statuses:
                status[cell_id] = "done"
            else:
                status[cell_id] = {"FAILED": "failed", "RUNNING": "running"}.get(statuses[0], "killed")
        return status

    def start(self, experiment: str, run_name: str, tags: dict[str, str], params: dict[str, str]) -> str:
        """Create a RUNNING run with its params and tags logged in one batch; return its id."""
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name)
        params_list = [Param(k, str(v)) for k, v in params.items()]
        tags_list = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, max(len(params_list), len(tags_list)), 100):  # MLflow: 100 of each per batch
            self.client.log_batch(run.info.run_id, params=params_list[i:i + 100], tags=tags_list[i:i + 100])
        return run.info.run_id

    def log_metrics(self, run_id: str, points: Iterable[tuple[str, float, int]]) -> None:
        """Log ``(key, value, step)`` points in batches."""
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(s)) for k, v, s in points]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + _BATCH])

    def finish(self, run_id: str) -> None:
        self.client.set_terminated(run_id, "FINISHED")

    def fail(self, run_id: str, exc: BaseException) -> None:
        """Record the error (tag ``study.error`` and the traceback as an artifact) and mark FAILED."""
        message = f"{type(exc).__name__}: {exc}"[:4000]
        self.client.set_tag(run_id, "study.error", message)
        try:
            self.client.log_text(run_id, "".join(traceback.format_exception(exc)), "error.txt")
        except Exception:  # the error tag is what matters; an artifact store problem must not hide it
            pass
        self.client.set_terminated(run_id, "FAILED")

    def kill_orphans(self, runs: list) -> int:
        """Mark RUNNING runs KILLED (called under the cell's lock, so their process is gone)."""
        n = 0
        for run in runs:
            if run.info.status == "RUNNING":
                self.client.set_tag(run.info.run_id, "study.error", "process died (killed) before finishing")
                self.client.set_terminated(run.info.run_id, "KILLED")
                n += 1
        return n
