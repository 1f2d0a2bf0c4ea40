"""MLflow bookkeeping: experiments per grid, batched logging, the done/failed/running map.

Schema (``analysis.table`` reads exactly this): one experiment per grid, named as the grid;
teachers in the experiment ``teachers``. Tags ``study.kind`` (``cell``/``teacher``),
``study.cell_id`` / ``study.teacher_id``, ``study.grid``, ``study.error`` on failure. Metrics are
logged with ``log_batch`` (one sqlite round trip per epoch, not per point).

For MLflow's UI: every experiment is a model-training one (``mlflow.experimentKind``), a grid's
experiment carries its description, every run MLflow's source tags (``environment_tags``), a cell
its data as dataset inputs (``log_datasets``) and, on request, system metrics (``system_metrics``).
"""

from __future__ import annotations

import functools
import gc
import getpass
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from unittest import mock
from urllib.parse import unquote, urlparse

from filelock import FileLock, Timeout
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient
from mlflow.utils import get_results_from_paginated_fn

import study
from study.core import contract
from study.core.errors import EnvironmentFault, StudyConfigError
from study.core.faults import environment_fault, server_stopped
from study.core.paths import SOURCE_ROOT, make_directory, tracking_uri
from study.execution import interrupt, locks

TEACHER_EXPERIMENT = "teachers"
#: Where stage runs are logged (``study.execution.stages``): one experiment shared by every grid.
STAGE_EXPERIMENT = "stages"
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call
#: Seconds to wait for another worker creating or migrating the sqlite schema.
SCHEMA_LOCK_TIMEOUT_S = 300
#: The first request to a tracking server: no retries and a short timeout, so an unreachable
#: server is reported in seconds (MLflow's defaults retry for minutes). Later requests keep
#: MLflow's defaults, or whatever the user set.
PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
#: While a grid runs against a tracking server: 3 retries 1, 2, 4 s apart (plus up to 1 s of
#: jitter each), 8 s per attempt, so a server that died is found within about 45 s (10 s when its
#: port is closed) instead of MLflow's minutes; the grid then stops (``EnvironmentFault``) with the
#: cell pending. Variables the user set win.
SERVER_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "8",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
#: About how long (seconds) a dead server is retried under ``SERVER_ENV``: 4 attempts of 8 s,
#: 7 s of back-off, up to 3 s of jitter.
SERVER_PATIENCE_S = 42


def set_server_patience(uri: str) -> None:
    """For a tracking server, put ``SERVER_ENV`` into this process's environment (inherited by the
    workers it starts) unless the user set those variables."""
    if uri.startswith(("http://", "https://")):
        for key, value in SERVER_ENV.items():
            os.environ.setdefault(key, value)


def _git(args: list[str], cwd: Path) -> str | None:
    """``git ARGS`` in ``cwd``: its output, or None when git or the repository is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str:
    """The code's commit (``-dirty`` when tracked files changed): the package's checkout when the
    package sits at its top (a clone, an editable install), else the working directory's
    repository (a user's project around an installed package), else ``unknown``."""
    top = _git(["rev-parse", "--show-toplevel"], SOURCE_ROOT)
    where = SOURCE_ROOT if top and Path(top).resolve() == SOURCE_ROOT else Path.cwd()
    head = _git(["rev-parse", "HEAD"], where)
    if not head:
        return "unknown"
    return head + ("-dirty" if _git(["status", "--porcelain", "--untracked-files=no"], where) else "")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return "unknown"


def environment_tags(device: str, source: str = "study run") -> dict[str, str]:
    """Provenance tags: package versions, git commit, device, host; and MLflow's own source tags
    (``source``: the command, e.g. ``study run --grid smoke``; the commit; the user)."""
    commit = git_commit()
    tags = {
        contract.TAG_VERSION: study.__version__,
        contract.TAG_GIT_COMMIT: commit,
        contract.TAG_DEVICE: device,
        contract.TAG_VERSIONS_PREFIX + "torch": version("torch"),
        contract.TAG_VERSIONS_PREFIX + "transformers": version("transformers"),
        contract.TAG_VERSIONS_PREFIX + "python": platform.python_version(),
        contract.TAG_HOST: platform.node(),
        contract.TAG_MLFLOW_SOURCE_NAME: source,
        contract.TAG_MLFLOW_SOURCE_TYPE: "LOCAL",
        contract.TAG_MLFLOW_USER: _user(),
    }
    if commit != "unknown":
        tags[contract.TAG_MLFLOW_GIT_COMMIT] = commit.removesuffix("-dirty")
    return tags


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset input of a run: ``name`` (``sst2/train``), ``digest`` (a hash of its examples),
    ``context`` (``contract.DATASET_CONTEXT_*``), where it came from (``source_type`` and the
    ``source`` dict, never an absolute path) and its size."""

    name: str
    digest: str
    context: str
    source_type: str
    source: dict
    rows: int

    def as_input(self) -> DatasetInput:
        """The MLflow ``DatasetInput``."""
        data = Dataset(name=self.name, digest=self.digest[:36], source_type=self.source_type,
                       source=json.dumps(self.source, sort_keys=True),
                       profile=json.dumps({"num_rows": self.rows}))
        return DatasetInput(data, tags=[InputTag(contract.TAG_MLFLOW_DATASET_CONTEXT, self.context)])


class Tracker:
    """A thin layer over ``MlflowClient`` with the study's schema.

    Opening the store is checked: a store that cannot be opened (a ``runs/`` that is a file or
    cannot be created, an unknown URI scheme, an unreachable server) raises ``StudyConfigError``
    with one line naming it, within seconds. A sqlite store in a read-only folder opens for
    reading (``read_only`` is True).
    """

    def __init__(self, uri: str | None = None, claim_timeout_s: float = locks.DEFAULT_CLAIM_TIMEOUT_S):
        self.uri = tracking_uri(uri)
        self.read_only = False
        #: seconds without a heartbeat after which another machine's RUNNING run is dead
        self.claim_timeout_s = claim_timeout_s
        try:
            if self.uri.startswith("sqlite:///"):
                self.client = self._open_sqlite(self.uri[len("sqlite:///"):])
            else:
                with _probe_env(self.uri):
                    self.client = MlflowClient(tracking_uri=self.uri)
                    self.client.search_experiments(max_results=1)
        except StudyConfigError:
            raise
        except Exception as exc:
            raise StudyConfigError(_open_error(self.uri, exc)) from None
        self.client = UninterruptedClient(self.client)

    def _open_sqlite(self, db: str) -> MlflowClient:
        folder = Path(db).parent
        make_directory(folder, "store folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            if not Path(db).is_file():
                raise StudyConfigError(f"The store folder {str(folder)!r} is read-only and holds no "
                                       "mlflow.db; point STUDY_RUNS_DIR at a writable directory.")
            self.read_only = True  # reading works; nothing may be created or migrated here
            client = MlflowClient(tracking_uri=self.uri)
            client.search_experiments(max_results=1)
            return client
        # MLflow creates and migrates the sqlite schema when the client's store is first built;
        # two workers doing that at once corrupt the migration, so the lock is taken before the
        # client exists and held until the schema is complete.
        try:
            with FileLock(db + ".lock", timeout=SCHEMA_LOCK_TIMEOUT_S):
                client = MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)
                relocate_artifacts(db)
        except Timeout:
            raise StudyConfigError(f"Waited {SCHEMA_LOCK_TIMEOUT_S} s for the lock {db}.lock held by "
                                   "another study process; if none is running, delete that file.") from None
        return client

    def require_writable(self) -> None:
        """Raise ``StudyConfigError`` when the store was opened read-only (a read-only folder)."""
        if self.read_only:
            raise StudyConfigError(f"The MLflow store {self.uri!r} is in a read-only folder: it can be "
                                   "read (study status, analyze) but not written; make the folder "
                                   "writable or point STUDY_RUNS_DIR at another one.")

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        """The experiment's id; created with artifacts under ``runs/mlartifacts/`` if missing, and
        marked a model-training experiment (one of an older store is marked on first use)."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if create and not self.read_only and contract.TAG_MLFLOW_EXPERIMENT_KIND not in exp.tags:
                locks.set_tag_racing(self.client.set_experiment_tag, exp.experiment_id,
                                     contract.TAG_MLFLOW_EXPERIMENT_KIND, contract.EXPERIMENT_KIND_TRAINING)
            return exp.experiment_id
        if not create:
            return None
        location = None
        if self.uri.startswith("sqlite:///"):
            # Beside the database, so a copied or moved store finds them (relocate_artifacts).
            location = (Path(self.uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location, tags={
                contract.TAG_MLFLOW_EXPERIMENT_KIND: contract.EXPERIMENT_KIND_TRAINING})
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
        found = get_results_from_paginated_fn(
            lambda n, token: self.client.search_runs(exp_ids, filter_string=query, max_results=n,
                                                     page_token=token, order_by=["attributes.start_time DESC"]),
            max_results_per_page=1000,
        )
        for run in found:
            out[run.data.tags.get(key, "")].append(run)
        return out

    def cell_runs(self, cell_id: str | None = None) -> dict[str, list]:
        """Every cell run in the store (any grid's experiment), by cell id, newest first: a cell
        trained by one grid is found by every grid that contains it."""
        return self.runs(None, contract.KIND_CELL, contract.TAG_CELL_ID, cell_id)

    def adopt(self, grid: str, cells: Iterable, runs: dict[str, list], version: str | None = None) -> int:
        """Tag the FINISHED run of each of ``cells`` (objects with ``cell_id``, ``name``,
        ``factors``) as a member of ``grid`` at ``version`` (the grid's hash of cell ids) when it is
        not tagged so yet: trained by another grid, or by an earlier version of this one. Returns
        how many runs were tagged."""
        key = contract.membership_tag(grid)
        n = 0
        for cell in cells:
            for run in runs.get(cell.cell_id, []):
                if run.info.status == "FINISHED":
                    value = contract.encode_membership(cell.name, cell.factors, version)
                    if run.data.tags.get(key) != value:
                        locks.set_tag_racing(self.client.set_tag, run.info.run_id, key, value)
                        n += 1
                    break
        return n

    def set_grid_version(self, grid: str, version: str, description: str | None = None,
                         source: Path | None = None) -> None:
        """Record ``version`` (the hash of the grid's cell ids) on the grid's experiment,
        ``description`` (the grid's) as the experiment's description in MLflow's UI, and the YAML
        file it came from (``source``), so `study status --grid NAME` finds a user grid."""
        exp_id = self.experiment_id(grid)
        locks.set_tag_racing(self.client.set_experiment_tag, exp_id, contract.TAG_GRID_VERSION, version)
        if description and description.strip():
            locks.set_tag_racing(self.client.set_experiment_tag, exp_id, contract.TAG_MLFLOW_NOTE, description.strip())
        if source is not None:
            locks.set_tag_racing(self.client.set_experiment_tag, exp_id, contract.TAG_GRID_SOURCE,
                                 str(Path(source).resolve()))

    def log_datasets(self, run_id: str, records: Iterable[DatasetRecord]) -> None:
        """Log ``records`` as the run's dataset inputs (the Dataset column, the run's lineage)."""
        inputs = [r.as_input() for r in records]
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    @contextmanager
    def system_metrics(self, run_ids: Iterable[str], enabled: bool = True):
        """While the block runs, log MLflow's system metrics (CPU, memory, disk, network; GPU
        utilisation and memory with ``nvidia-ml-py`` on an NVIDIA GPU) to each of ``run_ids``,
        every ``$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (MLflow's default 10).
        Nothing when not ``enabled``."""
        monitors = [SystemMetricsMonitor(r, tracking_uri=self.uri) for r in run_ids] if enabled else []
        for m in monitors:
            m.start()
        try:
            yield
        finally:
            for m in monitors:
                m.finish()

    def grid_source(self, grid: str) -> tuple[str | None, str | None] | None:
        """(YAML path, version) the store recorded for the grid named ``grid``; None when the store
        has no such grid."""
        exp = self.client.get_experiment_by_name(grid)
        if exp is None:
            return None
        return exp.tags.get(contract.TAG_GRID_SOURCE), exp.tags.get(contract.TAG_GRID_VERSION)

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

    @property
    def shared(self) -> bool:
        """True for a tracking server (workers on other machines can reach it), False for a
        sqlite file, which only this machine's processes can open."""
        return not self.uri.startswith("sqlite:")

    def start(self, experiment: str, run_name: str, tags: dict[str, str], params: dict[str, str]) -> str:
        """Create a RUNNING run held by this process (``locks.holder_tags``, heartbeat renewed
        until ``finish``/``fail``/``release``) with ``tags`` set atomically at creation, then its
        params; return its id."""
        experiment_id = self.experiment_id(experiment)
        run_id = None
        try:  # an interruption right after the run exists must not leave it RUNNING
            with interrupt.deferred():  # one during the creation is raised once the id is known
                run_id = self.client.create_run(experiment_id, run_name=run_name, tags={
                    **locks.holder_tags(), **{k: str(v) for k, v in tags.items()}}).info.run_id
                locks.Heartbeat.of(self.uri).add(run_id)
            self.annotate(run_id, {}, params)
        except BaseException as exc:
            if run_id is not None:
                self.fail(run_id, (environment_fault(exc, self.uri) or exc) if isinstance(exc, Exception) else exc)
            raise
        return run_id

    def annotate(self, run_id: str, tags: dict[str, str], params: dict[str, str]) -> None:
        """Log ``tags`` and ``params`` on a run, in batches of 100 of each (MLflow's limit)."""
        params_list = [Param(k, str(v)) for k, v in params.items()]
        tags_list = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, max(len(params_list), len(tags_list)), 100):
            self.client.log_batch(run_id, params=params_list[i:i + 100], tags=tags_list[i:i + 100])

    def release(self, run_id: str) -> None:
        """Stop renewing the run's heartbeat (it is ending, or no longer ours)."""
        locks.Heartbeat.of(self.uri).remove(run_id)

    def store_teacher_files(self, run_id: str, folder: Path) -> None:
        """On a tracking server, log a teacher's folder as the artifacts ``teacher/`` of its run
        (tag ``study.teacher_artifacts``), so a worker on any machine can download it; with a
        sqlite store (one machine) the local cache is enough and nothing is copied."""
        if not self.shared:
            return
        self.client.log_artifacts(run_id, str(folder), contract.TEACHER_ARTIFACT_PATH)
        self.client.set_tag(run_id, contract.TAG_TEACHER_ARTIFACTS, contract.TEACHER_ARTIFACT_PATH)

    def log_metrics(self, run_id: str, points: Iterable[tuple[str, float, int]]) -> None:
        """Log ``(key, value, step)`` points in batches."""
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(s)) for k, v, s in points]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + _BATCH])

    def finish(self, run_id: str) -> None:
        """End the run FINISHED."""
        self.release(run_id)
        self.client.set_terminated(run_id, "FINISHED")

    def fail(self, run_id: str, exc: BaseException) -> None:
        """Record the error (tag ``study.error`` and the traceback as an artifact) and end the run.

        An interruption (``KeyboardInterrupt``: Ctrl-C, or SIGTERM via ``study.execution.interrupt``)
        or an ``EnvironmentFault`` (a full disk, a dead server) ends it KILLED, not FAILED: the cell
        did not fail, so ``--skip-failed`` must not skip it. Ending it then is best effort: a store
        that refuses (busy, gone) never replaces the interruption or the fault, a server that
        stopped answering is not asked again, and a run left RUNNING by a dead process is marked
        KILLED by the next ``study run`` (``locks.reap``).
        """
        self.release(run_id)
        if isinstance(exc, Exception) and not isinstance(exc, EnvironmentFault):
            exc = environment_fault(exc, self.uri) or exc  # a dead server's error is its fault, not the run's
        if isinstance(exc, (KeyboardInterrupt, EnvironmentFault)):
            # The frames the interruption left keep their locals alive: a store connection in the
            # middle of a write (Ctrl-C is not deferred) would hold the sqlite lock while we write.
            # Cleared, and the cycles they were in collected, the pool rolls that write back.
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
            self._end_killed(run_id, exc)
            return
        message = f"{type(exc).__name__}: {exc}"[:4000]
        self.client.set_tag(run_id, contract.TAG_ERROR, message)
        try:
            self.client.log_text(run_id, "".join(traceback.format_exception(exc)), "error.txt")
        except Exception:  # the error tag is what matters; an artifact store problem must not hide it
            pass
        self.client.set_terminated(run_id, "FAILED")

    def _end_killed(self, run_id: str, exc: BaseException, attempts: int = 3) -> None:
        """End the run KILLED, retried a few times (a sqlite store busy with the heartbeat's write, a
        session an interrupted request left behind), giving up quietly after a store error."""
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "environment fault"
        if server_stopped(exc):  # each request would wait out its timeout: leave the run to be reaped
            return
        for attempt in range(attempts):
            try:
                with self.quickly():
                    self.client.set_tag(run_id, contract.TAG_ERROR, f"{why} ({type(exc).__name__}: {exc})"[:4000])
                    self.client.set_terminated(run_id, "KILLED")
                return
            except Exception as err:
                if isinstance(exc, EnvironmentFault) or attempt == attempts - 1:
                    # the store is away or refuses: the next `study run` reaps the run
                    print(f"warning: run {run_id} could not be ended KILLED ({type(err).__name__}: "
                          f"{' '.join(str(err).split())[:300]}); the next `study run` marks it", file=sys.stderr)
                    return
                time.sleep(0.5)

    @contextmanager
    def quickly(self):
        """Within the block, a tracking server's requests are not retried and time out after 10 s
        (``PROBE_ENV``): for ending runs after an interruption or a fault, never worth minutes."""
        if not self.shared:
            yield
            return
        with mock.patch.dict(os.environ, PROBE_ENV):
            yield

    def kill_orphans(self, runs: list) -> int:
        """Mark KILLED the RUNNING runs of ``runs`` whose holder is dead (``locks.dead_reason``:
        its process is gone from this machine, or another machine's heartbeat is older than
        ``claim_timeout_s``); a live run elsewhere is left alone. Returns how many."""
        return len(locks.reap(self, runs, self.claim_timeout_s))


class UninterruptedClient:
    """An ``MlflowClient`` whose every call runs under ``interrupt.deferred()``: a SIGTERM that
    arrives during a store request is raised when the request returns, so the request is never cut
    in half (a run created but its id lost, a write transaction left open and the store locked)."""

    def __init__(self, client: MlflowClient):
        self.wrapped = client

    def __getattr__(self, name: str):
        if name == "wrapped":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        attr = getattr(self.wrapped, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with interrupt.deferred():
                return attr(*args, **kwargs)
        return call


_ALLOWED_URIS = ("allowed: http(s)://HOST:PORT of a running MLflow server, or sqlite:///PATH, given "
                 "by --tracking-uri or MLFLOW_TRACKING_URI (unset both to use runs/mlflow.db)")


def _open_error(uri: str, exc: Exception) -> str:
    """One line saying why the store at ``uri`` could not be opened, and what is allowed."""
    text = " ".join(str(exc).split())
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        if "refused" in text.lower():
            why = "connection refused"
        elif "timed out" in text.lower() or "timeout" in text.lower():
            why = f"no answer within {PROBE_ENV['MLFLOW_HTTP_REQUEST_TIMEOUT']} s"
        elif (code := re.search(r"error code (\d+)", text)) is not None:
            why = f"it answered HTTP {code.group(1)}, not as an MLflow server"
        else:
            why = text[:160]
        return f"Cannot reach the MLflow tracking server {uri!r} ({why}); {_ALLOWED_URIS}."
    if "://" not in uri or "Supported URI schemes" in text or "Could not find a registered" in text:
        return f"MLflow tracking URI {uri!r} is not one this study can use; {_ALLOWED_URIS}."
    return f"Cannot open the MLflow store {uri!r} ({text[:160]}); {_ALLOWED_URIS}."


@contextmanager
def _probe_env(uri: str):
    """``PROBE_ENV`` for a tracking server's first request, except what the user set."""
    if not uri.startswith(("http://", "https://")):
        yield
        return
    with mock.patch.dict(os.environ, {k: v for k, v in PROBE_ENV.items() if k not in os.environ}):
        yield


def relocate_artifacts(db: str | os.PathLike) -> int:
    """Point a copied or moved sqlite store's artifact locations back beside it; return how many
    experiments moved.

    MLflow stores each experiment's artifact location (and each run's artifact URI) as an
    absolute path fixed at creation, so a copied ``runs/`` would keep writing artifacts into the
    original folder. Experiments this package created keep theirs in ``<store folder>/mlartifacts/
    <name>``; one whose location is an ``mlartifacts/<name>`` folder elsewhere is rewritten to
    this store's folder, with its runs. Other locations (set by hand, remote) are left alone.
    Call it under the schema lock: it writes the database directly, as MLflow offers no API to
    change an artifact location.
    """
    db = Path(db).resolve()
    here = db.parent / "mlartifacts"
    moved = 0
    with sqlite3.connect(db, timeout=60) as con:
        rows = con.execute("SELECT experiment_id, name, artifact_location FROM experiments").fetchall()
        for exp_id, name, location in rows:
            if not location or not location.startswith("file://"):
                continue
            old = Path(unquote(urlparse(location).path))
            new = here / old.name
            if old.parent.name != "mlartifacts" or old.name != name or old == new:
                continue
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                        (new.as_uri(), exp_id))
            con.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                        "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                        (new.as_uri(), len(location) + 1, exp_id, len(location), location))
            moved += 1
    return moved
