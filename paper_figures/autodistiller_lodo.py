"""AutoDistiller, leave one dataset out (He et al. 2021, Distiller, sec. 6): does a recommender fit
on other datasets pick a better KD configuration for a new one than the best single recipe?

For each task of the Distiller search, a recommender fit on the other tasks' runs ranks the KD
configurations that were run on the held-out task; its regret (the task's best score ratio minus
the ratio of its top pick) is compared with the best single recipe of the training tasks and with
a random pick (``analysis.lodo.evaluate_lodo``). Default: the TinyBERT4 <- BERT-base runs
(the search proper); ``--all-pairs`` adds every student/teacher pair as context.

    python paper_figures/autodistiller_lodo.py --out DIR [--csv FILE] [--features FILE]
        [--seed 0] [--model gbr|rf] [--all-pairs]
    python paper_figures/autodistiller_lodo.py --grid NAME --out DIR   # one of our grids

Writes ``DIR/lodo.csv`` (one row per held-out dataset, then the mean) and ``DIR/lodo.png``
(regret per dataset and method), and prints the table.
"""

from __future__ import annotations

from pathlib import Path

import _common

NAME = "lodo"

METHOD_NAMES = {
    "regret_recommender": "recommender",
    "regret_best_recipe": "best single recipe",
    "regret_random": "random candidate",
}


def figure(per_dataset, dataset_col: str, target: str):
    """Grouped bars of regret per held-out dataset and method, on a symlog axis (one collapse
    can cost ~1.0 while the rest are ~0.01)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = per_dataset.melt(id_vars=[dataset_col], value_vars=list(METHOD_NAMES), var_name="method",
                            value_name="regret")
    long["method"] = long["method"].map(METHOD_NAMES)
    fig, ax = plt.subplots(figsize=(1.1 * len(per_dataset) + 2.5, 4))
    sns.barplot(data=long, x=dataset_col, y="regret", hue="method", ax=ax)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel(f"held-out {dataset_col}")
    ax.set_ylabel(f"regret ({target} points, symlog)")
    ax.set_title("leave one dataset out: best minus the picked configuration's " + target, fontsize=10)
    ax.legend(title=None, frameon=False)
    fig.tight_layout()
    return fig


def summary_lines(per_dataset) -> list[str]:
    """The medians, and on how many datasets the recommender beats each baseline."""
    lines = ["median regret: " + ", ".join(f"{name} {per_dataset[c].median():.4f}" for c, name in METHOD_NAMES.items())]
    for baseline in ("regret_best_recipe", "regret_random"):
        wins = int((per_dataset["regret_recommender"] < per_dataset[baseline]).sum())
        ties = int((per_dataset["regret_recommender"] == per_dataset[baseline]).sum())
        lines.append(f"recommender beats the {METHOD_NAMES[baseline]} on {wins} of {len(per_dataset)} "
                     f"datasets ({ties} ties)")
    return lines


def main(argv: list[str] | None = None):
    import pandas as pd

    from analysis import dataset_features, lodo

    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, default=None,
                   help="the Distiller dataset-features CSV (default: the one beside --csv, else the shared one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=["gbr", "rf"], default="gbr",
                   help="gradient boosting (default) or random forest")
    p.add_argument("--all-pairs", action="store_true",
                   help="Distiller: every student/teacher pair as context, not TinyBERT4 <- BERT_BASE only")
    args = p.parse_args(argv)

    try:
        if args.grid:
            df = _common.load_grid(args.grid, args.tracking_uri)
            table = lodo.grid_lodo(df, seed=args.seed, model=args.model)
            dataset_col, target = "dataset", lodo.GRID_TARGET
        else:
            runs = dataset_features.load_distiller_runs(args.csv)
            features_path = args.features
            beside = args.csv.parent / "dataset_features_50_concat.csv" if args.csv else None
            if features_path is None and beside is not None and beside.is_file():
                features_path = beside
            features = dataset_features.load_distiller_features(features_path)
            pair = (None, None) if args.all_pairs else ("TinyBERT4", "BERT_BASE")
            table = lodo.distiller_lodo(runs, features, student=pair[0], teacher=pair[1],
                                        seed=args.seed, model=args.model)
            dataset_col, target = lodo.DISTILLER_DATASET_COL, lodo.DISTILLER_TARGET
    except (FileNotFoundError, KeyError, ValueError) as exc:
        _common.fail(exc)

    per_dataset = table[table[dataset_col] != "mean"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns=["recommended", "recipe"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\n".join(summary_lines(per_dataset)))
    _common.write(args.out, NAME, figure(per_dataset, dataset_col, target), table)
    return table


if __name__ == "__main__":
    main()
