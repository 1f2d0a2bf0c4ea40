"""What every paper-figure script shares: its command line, where its data comes from, and
how it writes. Not a figure itself (the leading underscore keeps it out of the list).

Each script runs as ``python paper_figures/<name>.py [--grid NAME | --csv FILE] --out DIR``;
without --grid or --csv it reads the published Distiller table where that makes sense. Bad
input prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project's packages importable
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

EXIT_BAD_INPUT = 2


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--grid", help="a grid whose MLflow runs to read (study run --grid NAME)")
    source.add_argument("--csv", type=Path,
                        help="a CSV in the Distiller table's layout (default: the published table)")
    p.add_argument("--tracking-uri", help="MLflow store for --grid; default runs/mlflow.db")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "paper_figures",
                   help="folder for the PNG and CSV (default runs/paper_figures)")
    return p


def fail(message: object) -> None:
    """Print one line on stderr and exit with code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def load_grid(name: str, tracking_uri: str | None):
    """A grid's tidy table (``analysis.table.load_runs``); exits 2 when there is nothing."""
    from analysis.table import load_runs

    try:
        df = load_runs(name, tracking_uri=tracking_uri)
    except LookupError as exc:
        fail(exc)
    if df.empty:
        fail(f"grid {name!r} has no finished cell yet: run `study run --grid {name}`")
    return df


def load_distiller_table(path: Path | None):
    """The Distiller table (``analysis.csvtable.load_distiller``); exits 2 when it is absent."""
    from analysis.csvtable import load_distiller

    try:
        return load_distiller(path)
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)


def write(out: Path, name: str, fig, table) -> None:
    """Save ``fig`` as ``<out>/<name>.png`` and ``table`` as ``<out>/<name>.csv``."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    table.to_csv(out / f"{name}.csv", index=False)
    print(f"wrote {out / (name + '.png')} and {out / (name + '.csv')}")
