"""The ``study`` command: run grids, show their status, browse them in MLflow, render reports.

Commands import the runner (torch, transformers, mlflow) in their own bodies, so that
``study --help`` and the refusals of a mistyped command answer at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from study.core.errors import EXIT_ENVIRONMENT, EnvironmentFault, StudyConfigError
from study.core.paths import make_directory, runs_dir, writable_runs_dir
from study.core.paths import tracking_uri as resolve_uri
from study.execution.interrupt import exit_code, signals_as_interrupt

# MLflow sets its loggers' level from this when it is first imported (a setLevel before that is
# undone); its INFO lines ("Creating initial MLflow database tables...") would break one-line
# refusals. Set before any command imports mlflow.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

app = typer.Typer(help="Reproducible knowledge-distillation studies: `study run --grid smoke`.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
err = Console(stderr=True)
out = Console()


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers  # here, not at the top: `study --help` must not import torch

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _fail(exc: Exception) -> typer.Exit:
    """Print the refusal as one line on stderr (no markup, no wrapping) and exit with code 2."""
    typer.echo("error: " + " ".join(str(exc).split()), err=True)
    return typer.Exit(2)


def _interrupted(exc: KeyboardInterrupt) -> typer.Exit:
    typer.echo(f"interrupted ({str(exc) or 'Ctrl-C'}): the run in progress is marked KILLED; "
               "`study run` again retrains it", err=True)
    return typer.Exit(exit_code(exc))


GridOpt = typer.Option(..., "--grid", "-g", help="A shipped grid name (see study/grids/) or a YAML path.")
UriOpt = typer.Option(None, "--tracking-uri", help="MLflow store; default $MLFLOW_TRACKING_URI or runs/mlflow.db.")


@app.command()
def run(
    grid: str = GridOpt,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="GLUE folder in the official layout; default $STUDY_DATA_DIR, else the hub."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells, their state, the teachers to fine-tune and a wall-time forecast; train nothing."),
    retry_failed: bool = typer.Option(True, "--retry-failed/--skip-failed", help="Train cells whose last run failed."),
    tracking_uri: Optional[str] = UriOpt,
    executor: str = typer.Option("serial", "--executor", help="Where cells run: serial (this process) or ray (one Ray task per group of --group-size cells)."),
    address: Optional[str] = typer.Option(None, "--address", help="ray: HOST:PORT of a running Ray cluster's head, or auto; default: start a local cluster."),
    num_cpus: Optional[float] = typer.Option(None, "--num-cpus", help="ray: CPUs per task (default 1)."),
    num_gpus: Optional[float] = typer.Option(None, "--num-gpus", help="ray: GPUs per task, fractions allowed (default 0)."),
    ray_resources: Optional[str] = typer.Option(None, "--ray-resources", help='ray: custom resources per task as JSON, e.g. \'{"accelerator_type:A100": 0.5}\'.'),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", help="ray: retries of a task whose worker died (default 2)."),
    local_cpus: Optional[int] = typer.Option(None, "--local-cpus", help="ray: CPUs of the local cluster started without --address (default: all)."),
    claim_timeout: float = typer.Option(600.0, "--claim-timeout", help="Seconds without a heartbeat after which another machine's running cell counts as dead."),
    system_metrics: bool = typer.Option(False, "--system-metrics", help="Log MLflow's system metrics (CPU, memory; GPU utilisation and memory with nvidia-ml-py) to every cell run, every $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL s (default 10)."),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="Cells that share data, seed, budget shape and teacher train together on the same batches (one teacher pass per batch), up to this many (e.g. 8 on a GPU); 1: one cell at a time. Default: the grid's group_size, else 1."),
    keep_student: Optional[str] = typer.Option(None, "--keep-student", help="none or all: save every trained student (safetensors, with its tokenizer) as an artifact of its run, for `study export`. Default: the grid's keep_student, else none."),
    checkpoint_every: Optional[float] = typer.Option(None, "--checkpoint-every", help="Minutes between checkpoints of the cells in training (a killed run resumes from the last one); 0: none. Default: 5 on CPU, 10 on a GPU."),
    checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir", help="Where checkpoints go; default runs/checkpoints. With workers on several machines, a path they all share."),
) -> None:
    """Train every pending cell of a grid (finished cells are never retrained).

    Exit 0 when every cell finished, 1 when a cell failed, 2 for bad input, 75 when the
    environment failed (full disk, read-only store, lost data, dead tracking server: the grid
    stops with its cells pending), 128+N on signal N.
    """
    _quiet_libraries()
    # imported per command, not at the top: `study --help` must not import torch or mlflow
    from study.execution.executors import make_executor
    from study.execution.runner import dry_run as dry_run_report
    from study.execution.runner import print_summary, run_grid
    from study.execution.tracking import Tracker
    from study.grid import load_grid
    from study.tasks.catalogue import resolve_data_dir

    try:
        ex = make_executor(executor, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                           ray_resources=ray_resources, max_retries=max_retries, local_cpus=local_cpus)
        g = load_grid(grid)
        resolve_data_dir(data_dir)
        group_size = g.group_size if group_size is None else group_size
        if dry_run:
            dry_run_report(g, Tracker(tracking_uri), data_dir, device, retry_failed, out, group_size=group_size)
            return
        writable_runs_dir()
        with signals_as_interrupt():
            summary = run_grid(g, data_dir=data_dir, device=device, tracking_uri=tracking_uri,
                               retry_failed=retry_failed, console=err, executor=ex,
                               claim_timeout_s=claim_timeout, group_size=group_size,
                               keep_student=keep_student, system_metrics=system_metrics,
                               checkpoint_every_min=checkpoint_every, checkpoint_dir=checkpoint_dir)
    except EnvironmentFault as exc:
        typer.echo(f"stopped, the environment failed: {exc}", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    except (StudyConfigError, ValueError) as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt as exc:
        raise _interrupted(exc) from None
    print_summary(summary, summary.tracking_uri, out)
    if summary.failed:
        raise typer.Exit(1)


def _cell_table(g, status: dict[str, str], title: str) -> None:
    table = Table(title=title)
    for col in ("cell", "cell_id", "state"):
        table.add_column(col)
    for cell in g.cells():
        state = status.get(cell.cell_id, "pending")
        table.add_row(cell.name, cell.cell_id, state)
    out.print(table)


@app.command()
def status(grid: str = GridOpt, tracking_uri: Optional[str] = UriOpt,
           cells: bool = typer.Option(False, "--cells", help="List every cell, not just the counts.")) -> None:
    """Count a grid's cells that are done, failed, running or pending."""
    _quiet_libraries()
    # imported per command, not at the top: `study --help` must not import torch or mlflow
    from study.execution.tracking import Tracker

    try:
        tracker = Tracker(tracking_uri)  # read-only stores are fine here
        g = load_known_grid(grid, tracker)
        cells_list = g.validate()
    except StudyConfigError as exc:
        raise _fail(exc) from None
    st = tracker.cell_status(g.name)
    counts: dict[str, int] = {}
    for c in cells_list:
        s = st.get(c.cell_id, "pending")
        counts[s] = counts.get(s, 0) + 1
    if cells:
        _cell_table(g, st, f"grid {g.name}")
    line = ", ".join(f"{k} {counts.get(k, 0)}" for k in ("done", "failed", "running", "killed", "pending"))
    out.print(f"grid {g.name}: {len(cells_list)} cells: {line}  (store {tracker.uri})")


@app.command()
def clean(tracking_uri: Optional[str] = UriOpt,
          checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir", help="Where checkpoints are; default runs/checkpoints."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing.")) -> None:
    """Remove what no run will use again: checkpoints of cells whose run finished or failed (or
    that the store has no run of), and the temporary files of killed writers. Checkpoints of
    killed or running cells are kept: the next `study run` resumes from them."""
    _quiet_libraries()
    from study.execution.checkpoints import CheckpointStore, orphans
    from study.execution.students import remove_stale
    from study.execution.tracking import Tracker

    try:
        tracker = Tracker(tracking_uri)
    except StudyConfigError as exc:
        raise _fail(exc) from None
    store = CheckpointStore(checkpoint_dir)
    stale = 0 if dry_run else store.remove_stale_files() + remove_stale()
    found = orphans(store, tracker.cell_status())
    for cell_id, why in found:
        out.print(f"{'would remove' if dry_run else 'removed'} {store.folder(cell_id)}: {why}", soft_wrap=True)
        if not dry_run:
            store.remove(cell_id)
    kept = len(store.cell_ids()) - (len(found) if dry_run else 0)
    out.print(f"{len(found)} orphan checkpoint(s) {'found' if dry_run else 'removed'}, {stale} temporary "
              f"file(s) of killed writers removed; {kept} checkpoint(s) kept for resuming (store {tracker.uri})",
              soft_wrap=True)


def load_known_grid(grid: str, tracker):
    """The grid ``grid`` names: a shipped grid or a YAML path, else a grid the store knows by name
    (``study run --grid path/to/NAME.yaml`` recorded the path on its experiment)."""
    from study.grid import load_grid

    try:
        return load_grid(grid)
    except StudyConfigError:
        known = None if grid.endswith((".yaml", ".yml")) else tracker.grid_source(grid)
        if known is None:
            raise
    source, version = known
    if source and Path(source).is_file():
        g = load_grid(source)
        if g.name == grid:
            return g
    raise StudyConfigError(f"Grid {grid!r} is in the store (version {version or 'unknown'}) but its YAML "
                           f"{'was ' + repr(source) + ', which no longer holds it' if source else 'was not recorded'}; "
                           f"pass the file: --grid path/to/{grid}.yaml")


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_PORT_TAKEN = ("Port {port} on {host} is already served by another process (`ss -ltnp 'sport = :{port}'` "
               "names it); stop it "
               "or pass another --port.")


@app.command()
def ui(port: int = typer.Option(5000, help="Port to serve on."),
       host: str = typer.Option("127.0.0.1", help="Address to bind; anything but 127.0.0.1 exposes every run without a login."),
       tracking_uri: Optional[str] = UriOpt) -> None:
    """Start the MLflow UI on the project's store, on 127.0.0.1 unless --host says otherwise.

    The server runs in its own process group; Ctrl-C, SIGTERM or SIGHUP to this process stop the
    whole group (MLflow's server starts worker processes that would otherwise keep serving).
    """
    uri = resolve_uri(tracking_uri)
    _check_bind(host, port)
    out.print(f"MLflow UI for {uri} at http://{host}:{port} (Ctrl-C to stop)")
    _print_runs_links(uri, f"http://{host}:{port}")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
           "--port", str(port)]
    raise typer.Exit(run_process_group(cmd))


def _print_runs_links(uri: str, base: str, most: int = 12) -> None:
    """Print each experiment's runs-list link: MLflow 3.17's UI opens an experiment on its GenAI
    overview whatever the experiment's kind, unless the link names the runs list."""
    from mlflow.tracking import MlflowClient

    try:
        experiments = [e for e in MlflowClient(uri).search_experiments() if e.name != "Default"]
    except Exception:  # no store yet, or one the UI will report on itself
        return
    for e in experiments[:most]:
        out.print(f"  {e.name}: {base}/#/experiments/{e.experiment_id}/runs", soft_wrap=True)
    if len(experiments) > most:
        out.print(f"  ... and {len(experiments) - most} more experiment(s)")


@app.command()
def server(backend_store_uri: Optional[str] = typer.Option(None, "--backend-store-uri", help="Where runs are kept; default the project's runs/mlflow.db."),
           artifacts_destination: Optional[Path] = typer.Option(None, "--artifacts-destination", help="Folder the server keeps artifacts (teachers) in; default runs/mlartifacts."),
           host: str = typer.Option("127.0.0.1", help="Address to bind; anything but 127.0.0.1 exposes every run without a login."),
           port: int = typer.Option(5000, help="Port to serve on."),
           workers: int = typer.Option(2, help="Server worker processes."),
           allowed_hosts: Optional[str] = typer.Option(None, "--allowed-hosts", help="Host headers the server accepts (MLflow's default: localhost and private IPs); add the name workers use to reach it.")) -> None:
    """Start an MLflow tracking server for the project, that workers on every machine log to.

    It serves the runs (default: the project's sqlite store) and proxies artifacts (teachers), so
    workers need only its URI: `study run --tracking-uri http://HOST:PORT`. MLflow's job consumers
    (GenAI jobs) are not started unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION says so. Stopping it
    (Ctrl-C, SIGTERM, SIGHUP) stops its whole process group; a SIGKILL of this process stops it
    too (a guard process watches it). A port already in use is refused.
    """
    store = backend_store_uri or resolve_uri(None)
    if store.startswith(("http://", "https://")):
        raise _fail(StudyConfigError(f"--backend-store-uri {store!r} is a tracking server, not a store; allowed: "
                                     "sqlite:///PATH or a database URI (postgresql://...)."))
    destination = (artifacts_destination or runs_dir() / "mlartifacts").resolve()
    try:
        make_directory(destination, "artifacts folder")
        if store.startswith("sqlite:///"):
            from study.execution.tracking import Tracker  # here, not at the top: imports mlflow and torch

            Tracker(store)  # creates (under its lock) or checks the schema before the server opens it
    except StudyConfigError as exc:
        raise _fail(exc) from None
    _check_bind(host, port)
    shown = "HOST" if host in ("0.0.0.0", "::") else host
    out.print(f"MLflow tracking server for {store}, artifacts in {destination}")
    out.print(f"tracking URI: http://{shown}:{port}   (study run --tracking-uri http://{shown}:{port}, "
              f"or export MLFLOW_TRACKING_URI=http://{shown}:{port}; Ctrl-C to stop)")
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
           "--artifacts-destination", str(destination), "--serve-artifacts", "--host", host,
           "--port", str(port), "--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    raise typer.Exit(run_process_group(cmd))


#: MLflow 3's server starts job consumers (huey: 7 more processes of ~270 MB each here, for its GenAI
#: jobs) unless told not to; the runs of a study need none of them. A value the user set wins.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def run_process_group(cmd: list[str], grace_s: float = 10.0) -> int:
    """Run ``cmd`` in a new session (its own process group) and return its exit status; its
    environment is this one's, with ``SERVER_ENV`` where this one does not set those names.

    SIGINT, SIGTERM and SIGHUP received meanwhile are passed to the whole group as SIGTERM;
    when the command ends, for whatever reason, any process left in its group gets SIGTERM, then
    SIGKILL after ``grace_s`` seconds, so no server process outlives this one.
    """
    proc = subprocess.Popen(cmd, start_new_session=True, env={**SERVER_ENV, **os.environ})
    _guard_group(proc.pid, grace_s)

    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def forward(signum, frame):
        signal_group(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # a handler set by a caller; the group still gets SIGTERM
                signal_group(signal.SIGTERM)
    finally:
        signal_group(signal.SIGTERM)  # workers the server started, if it left any
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.1)
        if _group_alive(proc.pid):
            signal_group(signal.SIGKILL)
        for s, h in previous.items():
            signal.signal(s, h)
    return rc


#: The guard: waits for EOF on stdin (its parent, this process, ended however it ended, SIGKILL
#: included), then stops the group: SIGTERM, and SIGKILL after the grace period.
_GUARD = ("import os, signal, sys, time\n"
          "pgid, grace = int(sys.argv[1]), float(sys.argv[2])\n"
          "sys.stdin.buffer.read()\n"
          "def alive():\n"
          "    try:\n        os.killpg(pgid, 0); return True\n"
          "    except OSError:\n        return False\n"
          "if alive():\n"
          "    os.killpg(pgid, signal.SIGTERM)\n"
          "    end = time.monotonic() + grace\n"
          "    while alive() and time.monotonic() < end:\n        time.sleep(0.2)\n"
          "    if alive():\n        os.killpg(pgid, signal.SIGKILL)\n")
_guards: list = []  # the guards' pipes: open while this process lives


def _guard_group(pgid: int, grace_s: float) -> None:
    """Start a small process that stops the group ``pgid`` once this process is gone, even by
    SIGKILL (which no handler sees): it reads a pipe whose only writer is this process."""
    read, write = os.pipe()
    subprocess.Popen([sys.executable, "-c", _GUARD, str(pgid), str(grace_s)], stdin=read,
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(read)
    os.set_inheritable(write, False)
    _guards.append(write)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port)) == 0


def _check_bind(host: str, port: int) -> None:
    """Refuse a port already in use (a stale server, say); warn before binding a non-local host."""
    if _port_in_use(host, port):
        raise _fail(StudyConfigError(_PORT_TAKEN.format(port=port, host=host)))
    if host not in LOCAL_HOSTS:
        typer.echo(f"warning: binding {host}: anyone who can reach port {port} can read, change and "
                   "delete every run, without a login. For a shared server run MLflow's basic-auth "
                   "app (`mlflow server --app-name basic-auth`, see the README).", err=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@app.command()
def report(grid: str = GridOpt, tracking_uri: Optional[str] = UriOpt,
           out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for the HTML; default runs/reports/.")) -> None:
    """Render the grid's HTML report (results, type-II ANOVA, figure) with papermill."""
    _quiet_libraries()
    # imported per command, not at the top: `study --help` must not import torch or mlflow
    from analysis.report import ReportError, report_grid
    from study.execution.tracking import Tracker
    from study.grid import load_grid

    try:
        Tracker(tracking_uri)  # an unusable store is refused here, in seconds
        try:
            name = load_grid(grid).name
        except StudyConfigError:
            if grid.endswith((".yaml", ".yml")):
                raise
            name = grid  # a grid run from a YAML elsewhere: its experiment carries its name
        path = report_grid(name, tracking_uri=tracking_uri, out_dir=out_dir)
    except (StudyConfigError, LookupError, ValueError, ReportError) as exc:
        raise _fail(exc) from None
    out.print(f"report written: {path}")


# The analysis commands (analyze, recommend) live in their own module; an import error there
# must surface, not silently drop the commands.
from study.cli.analysis import register as _register_analysis  # noqa: E402
from study.cli.plan import plan_command as _plan_command  # noqa: E402

_register_analysis(app)
app.command("plan")(_plan_command)

from study.cli.export import register as _register_export  # noqa: E402

_register_export(app)


if __name__ == "__main__":
    app()
