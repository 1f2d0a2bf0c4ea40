"""Build small MLflow stores that follow the runner's schema, for the analysis tests.

Imported by the tests (``from mlflow_fixtures import ...``) rather than living in a conftest, so
that it cannot clash with other conftest fixtures. Runs are written with ``MlflowClient`` exactly
as the runner logs them: tags ``study.*``, params as strings, metrics, terminal status.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

# A fixed clock, so "latest run" in tests never depends on how fast the test machine is.
T0_MS = 1_700_000_000_000


@dataclass
class Cell:
    dataset: str = "sst2"
    student: str = "L2_H384"
    objective: str = "logit_kd"
    initialisation: str = "random"
    augmentation: str = "none"
    seed: int = 0
    score: float | None = 0.8
    teacher_score: float = 0.9
    status: str = "FINISHED"
    error: str | None = None
    start_offset_s: int = 0
    extra_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return (
            f"{self.dataset}-{self.student}-{self.objective}-{self.initialisation}"
            f"-{self.augmentation}-s{self.seed}"
        )

    @property
    def cell_id(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:12]


@functools.cache
def _empty_store() -> Path:
    """An empty, migrated MLflow sqlite store, made once per test process (migrating takes seconds)."""
    directory = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def sqlite_uri(directory: Path) -> str:
    """The URI of a fresh, empty sqlite store ``directory/mlflow.db``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_empty_store(), directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


def log_teacher(uri: str, teacher_id: str = "teacher-sst2", score: float = 0.9) -> str:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("teachers")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("teachers")
    )
    run = client.create_run(
        experiment_id,
        run_name=teacher_id,
        tags={"study.kind": "teacher", "study.teacher_id": teacher_id},
        start_time=T0_MS,
    )
    client.log_metric(run.info.run_id, "dev_score", score)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0_MS + 1000)
    return run.info.run_id


def log_cells(uri: str, grid: str, cells: list[Cell]) -> list[str]:
    """Log ``cells`` as runs of experiment ``grid`` (created if needed); returns the run ids."""
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(grid)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(grid)
    run_ids = []
    for cell in cells:
        teacher_id = f"teacher-{cell.dataset}"
        start = T0_MS + 1000 * cell.start_offset_s
        run = client.create_run(
            experiment_id,
            run_name=cell.name,
            tags={
                "study.kind": "cell",
                "study.cell_id": cell.cell_id,
                "study.grid": grid,
                "study.teacher_id": teacher_id,
            },
            start_time=start,
        )
        run_id = run.info.run_id
        params = {
            "dataset": cell.dataset,
            "student": cell.student,
            "objective": cell.objective,
            "initialisation": cell.initialisation,
            "augmentation": cell.augmentation,
            "seed": str(cell.seed),
            "teacher": teacher_id,
            "epochs": "3",
            "learning_rate": "5e-05",
            "batch_size": "32",
            "max_length": "128",
            "max_train_examples": "1000",
            "objective.temperature": "2.0",
        }
        logged = []
        if cell.status == "FINISHED":
            metrics = {
                "dev_score": cell.score,
                "dev_accuracy": cell.score,
                "teacher_dev_score": cell.teacher_score,
                "wall_time_s": 12.5,
                "train_examples_per_s": 80.0,
                "peak_memory_mb": 512.0,
                **cell.extra_metrics,
            }
            logged += [
                Metric("train_loss", loss, start + step, step)
                for step, loss in enumerate((1.0, 0.6, 0.4))
            ]
            logged += [Metric(key, value, start + 400, 0) for key, value in metrics.items()]
        tags = []
        if cell.status == "FAILED":
            tags.append(RunTag("study.error", cell.error or "RuntimeError: boom"))
        # one batch per run: logging value by value makes a sqlite store take seconds per run
        client.log_batch(
            run_id, metrics=logged, params=[Param(k, v) for k, v in params.items()], tags=tags
        )
        if cell.status != "RUNNING":
            client.set_terminated(run_id, cell.status, end_time=start + 500)
        run_ids.append(run_id)
    return run_ids
