"""Data augmentation gain against training-set size (He et al. 2021, Distiller, finding 3:
augmentation helps most on small datasets).

A Distiller run counts as *augmented* when it ran at least one ``contextual``,
``backtranslation`` or ``random`` augmentation step, or used ``mixup`` (``TRUE``)
(``analysis.csvtable.distiller_augmented``). Within each (task, student, teacher) block that ran
both, the gain is the best augmented score minus the best non-augmented score (best-tuned, so
that the other choices are tuned on both sides); per task (one training-set size, ``#example``)
the gains are averaged over blocks (``analysis.figures.gain_by_size``). ``--stat mean`` compares
mean scores instead.

    python paper_figures/distiller_aug_gain_vs_size.py --out DIR
    python paper_figures/distiller_aug_gain_vs_size.py --grid NAME --size-col max_train_examples --out DIR

With --grid, augmented means ``augmentation != none`` and the size is a numeric column of the
grid's table (the training budget ``max_train_examples`` by default).

Writes ``distiller_aug_gain_vs_size.png`` and ``.csv`` (one row per size).
"""

from __future__ import annotations

import _common

NAME = "distiller_aug_gain_vs_size"


def main() -> None:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--metric", default="score", help="score column (default score)")
    p.add_argument("--stat", choices=("max", "mean"), default="max",
                   help="best-tuned (max, default) or mean score per block and level")
    p.add_argument("--size-col", default=None,
                   help="training-set size column (default #example, or max_train_examples with --grid)")
    args = p.parse_args()

    from analysis.figures import gain_by_size, score_vs_train_size

    if args.grid:
        from analysis.analyze import grid_design

        df = _common.load_grid(args.grid, args.tracking_uri)
        if "augmentation" not in df.columns:
            _common.fail(f"grid {args.grid!r} has no augmentation column")
        df["augmented"] = df["augmentation"].astype(str) != "none"
        size_col, label = args.size_col or "max_train_examples", "dataset"
        _, block = grid_design(df)
        block = [b for b in block if b != "augmentation"]
    else:
        df = _common.load_distiller_table(args.csv)
        size_col, label, block = args.size_col or "#example", "task", ["task", "Model", "Teacher"]
    for col in (args.metric, size_col):
        if col not in df.columns:
            _common.fail(f"column {col!r} is not in the table; columns: {', '.join(map(str, df.columns))}")
    if df["augmented"].nunique() < 2:
        _common.fail("every run has the same augmentation setting: no gain to measure")
    try:
        table = gain_by_size(df, args.metric, size_col, "augmented", block, args.stat)
        fig = score_vs_train_size(df, args.metric, size_col, "augmented", stat=args.stat,
                                  label=label, block=block)
    except ValueError as exc:
        _common.fail(exc)
    names = df.groupby(df[size_col].astype(float))[label].agg(
        lambda s: "/".join(sorted(map(str, set(s)))))
    table.insert(1, label, [names[float(v)] for v in table[size_col]])
    _common.write(args.out, NAME, fig, table)


if __name__ == "__main__":
    main()
