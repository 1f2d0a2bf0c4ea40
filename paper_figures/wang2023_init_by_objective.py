"""Student initialisation × distillation objective (Wang et al. 2023, "How to Distill your
BERT: An Empirical Study on the Impact of Weight Initialisation and Distillation Objectives").

A heat-map of the mean score of each (objective, initialisation) cell, centred within blocks
(dataset × student) so that an easy dataset does not colour a cell, with the number of runs; and
the same numbers as CSV with the uncentred mean. It needs a grid that crossed both factors: the
Distiller table has no student-initialisation factor, so this script requires --grid.

    python paper_figures/wang2023_init_by_objective.py --grid NAME --out DIR

Writes ``wang2023_init_by_objective.png`` and ``.csv``.
"""

from __future__ import annotations

import _common

NAME = "wang2023_init_by_objective"
ROW, COL = "objective", "initialisation"


def cell_table(df, metric: str, block: list[str]):
    """One row per (objective, initialisation): runs, mean score, block-centred mean."""
    data = df.dropna(subset=[metric]).copy()
    data["centred"] = data[metric] - data.groupby(block, observed=True)[metric].transform("mean")
    table = (
        data.groupby([ROW, COL], observed=True)
        .agg(runs=(metric, "size"), mean_score=(metric, "mean"), centred_score=("centred", "mean"))
        .reset_index()
    )
    return table


def main() -> None:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--metric", default="score", help="score column (default score)")
    args = p.parse_args()
    if not args.grid:
        _common.fail(
            "this figure needs --grid NAME: it crosses student initialisation with the objective, "
            "and the Distiller table (or a CSV) has no initialisation factor. Run a grid that "
            "varies both objective and initialisation (`study run --grid NAME`) and pass its name."
        )
    from analysis.analyze import grid_design
    from analysis.figures import interaction_heatmap

    df = _common.load_grid(args.grid, args.tracking_uri)
    for col in (ROW, COL):
        if col not in df.columns or df[col].nunique() < 2:
            _common.fail(f"grid {args.grid!r} does not vary {col!r}: nothing to cross")
    factors, block = grid_design(df)
    block = [b for b in block if b not in (ROW, COL)] or ["dataset"]
    fig = interaction_heatmap(df, args.metric, ROW, COL, block=block)
    _common.write(args.out, NAME, fig, cell_table(df, args.metric, block))


if __name__ == "__main__":
    main()
