"""The cost of a sub-optimal KD choice, per factor and level (the question of Sultan et al.
2024: what does a practitioner lose by committing to one choice rather than the best?).

``tuned_cost`` (``analysis.cost``): within each block, the best score overall minus the best
score with the choice fixed, averaged (``mean_cost``) and maximised (``worst_cost``) over the
blocks that ran at least two levels; ``runs`` beside it, because levels run more often get more
chances to be tuned. On a complete grid the table also has ``averaged_cost`` (the cost with the
other choices at each of their levels) in columns ``avg_mean_cost``, ``avg_worst_cost``.

    python paper_figures/sultan2024_cost_table.py --out DIR                # Distiller
    python paper_figures/sultan2024_cost_table.py --grid NAME --out DIR

Distiller: factors intermediate_loss_type, intermediate_strategy, kd_loss_type, mixup; blocks
task × Model × Teacher; costs also as a fraction of the teacher's score. A grid: the factors that
vary among objective, initialisation, augmentation, student; blocks dataset × student.

Writes ``sultan2024_cost_table.png`` (bars) and ``.csv``.
"""

from __future__ import annotations

import _common

NAME = "sultan2024_cost_table"


def main() -> None:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--metric", default="score", help="score column (default score)")
    args = p.parse_args()

    from analysis.cost import averaged_cost, tuned_cost
    from analysis.figures import cost_bars

    if args.grid:
        from analysis.analyze import grid_design

        df = _common.load_grid(args.grid, args.tracking_uri)
        try:
            factors, block = grid_design(df)
        except ValueError as exc:
            _common.fail(exc)
    else:
        from analysis.csvtable import DISTILLER_BLOCK, DISTILLER_FACTORS

        df = _common.load_distiller_table(args.csv)
        factors, block = list(DISTILLER_FACTORS), list(DISTILLER_BLOCK)
    teacher = "teacher_score" if "teacher_score" in df.columns else None
    try:
        table = tuned_cost(df, args.metric, factors, block, teacher_col=teacher)
    except ValueError as exc:
        _common.fail(exc)
    try:
        averaged = averaged_cost(df, args.metric, factors, block)
    except ValueError:
        averaged = None  # unbalanced (Distiller's search): the tuned cost is the only one
    if averaged is not None:
        table = table.merge(
            averaged[["factor", "level", "mean_cost", "worst_cost"]].rename(
                columns={"mean_cost": "avg_mean_cost", "worst_cost": "avg_worst_cost"}),
            on=["factor", "level"], how="left",
        )
    _common.write(args.out, NAME, cost_bars(table), table)


if __name__ == "__main__":
    main()
