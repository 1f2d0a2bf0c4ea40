"""Reading a task from the Hugging Face hub (``datasets.load_dataset``), when no data directory is
given: GLUE from ``nyu-mll/glue``, whose "validation" split is our "dev"."""

from __future__ import annotations

from typing import Any

from study.core.errors import StudyConfigError
from study.tasks.spec import TaskSpec

DATA_DIR_ENV = "STUDY_DATA_DIR"
HUB_DATASET = "nyu-mll/glue"


def load_hub(spec: TaskSpec) -> Any:
    """``datasets.load_dataset(spec.hub.path, spec.hub.config)`` (a ``DatasetDict``).

    Raises:
        StudyConfigError: the dataset cannot be loaded (offline, unknown id); the message says
            how to point the study at a local data folder instead.
    """
    import datasets  # heavy import, only needed without a local directory

    hub = spec.hub
    try:
        return datasets.load_dataset(hub.path, hub.config)
    except (ConnectionError, OSError) as exc:
        raise StudyConfigError(
            f"No data directory was given, and {hub.path!r} ({hub.config}) could not be "
            f"loaded from the hub: {exc}. Point --data-dir or ${DATA_DIR_ENV} at a data folder "
            f"holding {spec.collection + '/' if spec.collection else ''}{spec.folder}/ (e.g. ../shared/data)."
        ) from exc


def hub_columns(spec: TaskSpec) -> dict[str, tuple[list[tuple[str, ...]], list[Any]]]:
    """Per split of ours: (texts, raw label values) from the hub's ``text_fields`` and
    ``label_field`` columns; the task type turns the raw values into targets.

    Raises:
        StudyConfigError: see ``load_hub``.
    """
    ds = load_hub(spec)
    hub = spec.hub
    out = {}
    for ours, theirs in hub.splits:
        part = ds[theirs]
        columns = [part[f] for f in hub.text_fields]
        out[ours] = (list(zip(*columns, strict=True)), list(part[hub.label_field]))
    return out
