"""Intermediate-distillation objective, compared per task (He et al. 2021, Distiller, the
comparison of intermediate objectives behind their finding 2: MI-α is best).

Per task and intermediate objective: the runs, the mean score, and the tuned regret: within each
(student, teacher) block of the task that ran at least two objectives, the block's best score
minus the objective's best score (``analysis.cost.tuned_cost`` per task), averaged over those
blocks. 0 = the objective was the best in every block. Because a level's best is taken over its
runs, objectives run more often (mi: ~70% of Distiller's runs) get more chances to look good;
the ``runs`` column is there to read it against.

    python paper_figures/distiller_intermediate_by_task.py --out DIR            # Distiller
    python paper_figures/distiller_intermediate_by_task.py --grid NAME --out DIR  # objective by dataset

Writes ``distiller_intermediate_by_task.png`` (heat-map task × objective of the tuned regret)
and ``.csv``.
"""

from __future__ import annotations

import _common

NAME = "distiller_intermediate_by_task"


def by_task(df, metric: str, factor: str, task: str, within: list[str]):
    """One row per (task, level): runs, mean_score, tuned_regret, worst_regret, blocks."""
    import pandas as pd

    from analysis.cost import tuned_cost

    rows = []
    for name, sub in df.groupby(task, observed=True, sort=True):
        if sub[factor].nunique() < 1:
            continue
        cost = tuned_cost(sub, metric, [factor], within)
        means = sub.groupby(factor, observed=True)[metric].agg(["size", "mean"])
        for level, (n, mean) in means.iterrows():
            c = cost[cost["level"] == str(level)].iloc[0]
            rows.append({
                task: str(name), factor: str(level), "runs": int(n), "mean_score": mean,
                "tuned_regret": c["mean_cost"], "worst_regret": c["worst_cost"],
                "blocks": int(c["blocks"]),
            })
    return pd.DataFrame(rows)


def figure(table, metric: str, factor: str, task: str):
    import matplotlib.pyplot as plt
    import seaborn as sns

    wide = table.pivot(index=task, columns=factor, values="tuned_regret")
    runs = table.pivot(index=task, columns=factor, values="runs").reindex_like(wide)
    annot = wide.copy().astype(object)
    for r in wide.index:
        for c in wide.columns:
            v, n = wide.loc[r, c], runs.loc[r, c]
            annot.loc[r, c] = "" if v != v else f"{100 * v:.1f}\nn={int(n)}"
    fig, ax = plt.subplots(figsize=(1.3 * wide.shape[1] + 2.5, 0.6 * wide.shape[0] + 1.5))
    sns.heatmap(100 * wide.astype(float), annot=annot.to_numpy(), fmt="", cmap="rocket_r", ax=ax,
                cbar_kws={"label": f"tuned regret (points of {metric})"},
                annot_kws={"fontsize": 8})
    ax.set_title(f"{factor} by {task}: best in block minus best of the level\n"
                 "(0 = best; blank = not compared; n = runs)", fontsize=10)
    fig.tight_layout()
    return fig


def main() -> None:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--metric", default=None, help="score column (default score)")
    args = p.parse_args()
    if args.grid:
        from analysis.analyze import grid_design

        df = _common.load_grid(args.grid, args.tracking_uri)
        # Distiller's factor is the intermediate loss; a grid of presets varies the objective
        factor = next((f for f in ("intermediate.loss", "objective")
                       if f in df.columns and df[f].nunique() > 1), None)
        if factor is None:
            _common.fail(f"grid {args.grid!r} varies neither the intermediate loss nor the objective: "
                         "nothing to compare")
        task = "dataset"
        _, block = grid_design(df)
        within = [b for b in block if b != task]
    else:
        df = _common.load_distiller_table(args.csv)
        factor, task, within = "intermediate_loss_type", "task", ["Model", "Teacher"]
    metric = args.metric or "score"
    if metric not in df.columns:
        _common.fail(f"metric column {metric!r} is not in the table")
    table = by_task(df, metric, factor, task, within)
    _common.write(args.out, NAME, figure(table, metric, factor, task), table)


if __name__ == "__main__":
    main()
