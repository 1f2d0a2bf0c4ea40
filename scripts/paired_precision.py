"""Paired comparison of two grids that differ only in a setting, e.g. fp32 against bf16.

Usage::

    python scripts/paired_precision.py BASE OTHER [--tracking-uri URI]
        [--seed-sd-grid GRID --seed-sd-uri URI]

BASE and OTHER are grid (experiment) names in the store (``$STUDY_RUNS_DIR``/``runs/mlflow.db``,
or ``--tracking-uri``), e.g. ``smoke`` and ``smoke-bf16`` (``study/grids/smoke.yaml`` with
``training.precision: bf16`` and ``teacher.precision: bf16``, see the README's "Precision"). Each
FINISHED cell of OTHER is paired with the cell of BASE that has the same factor values (dataset,
student, objective, initialisation, augmentation, seed and each grid's own factors, read by
``analysis.table.load_runs``). It prints, in points (dev score x 100): each pair's scores and
difference OTHER - BASE, the teachers' dev scores, the mean difference with its 95% t-interval
over the pairs and the exact sign-flip p (``analysis.smallsample.unit_inference``), and the
seed-to-seed s.d. of one configuration's score (``analysis.seednoise.seed_noise``) from BASE when
it has several seeds, else from ``--seed-sd-grid`` (in ``--seed-sd-uri``, read only). The
verdict: within seed noise when the whole interval lies within +-1 seed s.d.; a systematic effect
when it excludes 0; otherwise inconclusive.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

KEYS = ("dataset", "student", "objective", "initialisation", "augmentation", "seed")


def _pair_keys(base, other) -> list[str]:
    """The factor columns both tables share (the standard slots and each grid's own factors)."""
    factors = list(dict.fromkeys([*KEYS, *base.attrs.get("factors", []), *other.attrs.get("factors", [])]))
    return [f for f in factors if f in base.columns and f in other.columns and "precision" not in f]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="the reference grid, e.g. smoke (fp32)")
    ap.add_argument("other", help="the grid compared with it, e.g. smoke-bf16")
    ap.add_argument("--tracking-uri", default=None, help="store of both grids (default $MLFLOW_TRACKING_URI or runs/mlflow.db)")
    ap.add_argument("--seed-sd-grid", default=None, help="a grid with several seeds to take the seed s.d. from when BASE has one seed")
    ap.add_argument("--seed-sd-uri", default=None, help="its store (default: --tracking-uri)")
    args = ap.parse_args(argv)

    from analysis.seednoise import seed_noise
    from analysis.smallsample import unit_inference
    from analysis.table import load_runs

    base = load_runs(args.base, args.tracking_uri)
    other = load_runs(args.other, args.tracking_uri)
    keys = _pair_keys(base, other)
    cols = [*keys, "name", "score", "teacher_score"]
    pairs = base[cols].astype({k: str for k in keys}).merge(other[cols].astype({k: str for k in keys}), on=keys,
                                                             suffixes=("_base", "_other"))
    if pairs.empty:
        print(f"no cell of {args.other} has a finished counterpart in {args.base} (paired on {', '.join(keys)})")
        return 2
    pairs["diff"] = (pairs["score_other"] - pairs["score_base"]) * 100
    width = max(len(n) for n in pairs["name_base"])
    print(f"paired on {', '.join(keys)}: {len(pairs)} pairs ({len(base)} cells in {args.base}, "
          f"{len(other)} in {args.other})\n")
    print(f"{'cell':<{width}}  {args.base:>10}  {args.other:>10}  {'diff (pts)':>10}")
    for _, r in pairs.sort_values("name_base").iterrows():
        print(f"{r['name_base']:<{width}}  {r['score_base'] * 100:10.2f}  {r['score_other'] * 100:10.2f}  {r['diff']:+10.2f}")
    for label, col in ((args.base, "teacher_score_base"), (args.other, "teacher_score_other")):
        print(f"teacher dev score ({label}): " + ", ".join(f"{v * 100:.2f}" for v in sorted(pairs[col].unique())))

    res = unit_inference(pairs["diff"].to_numpy(), np.random.default_rng(0))
    print(f"\nmean difference {args.other} - {args.base}: {res['estimate']:+.2f} points, 95% t-interval "
          f"[{res['low']:+.2f}, {res['high']:+.2f}] over {int(res['g'])} pairs (t, {int(res['g']) - 1} df); "
          f"s.d. of the differences {res['sd']:.2f}; exact sign-flip p {res['p']:.3f}")

    source, sd = args.base, None
    table, _ = seed_noise(base)
    if table.empty and args.seed_sd_grid:
        source = f"{args.seed_sd_grid} ({args.seed_sd_uri or args.tracking_uri or 'default store'})"
        table, _ = seed_noise(load_runs(args.seed_sd_grid, args.seed_sd_uri or args.tracking_uri))
    if table.empty:
        print(f"\n{args.base} has one seed per configuration and no --seed-sd-grid was given: no seed s.d.")
    else:
        for _, r in table.iterrows():
            print(f"\nseed-to-seed s.d. of one configuration's score, {source}, {r['dataset']}: "
                  f"{r['seed_sd']:.2f} points (pooled over {r['configs']} configurations)")
        sd = float(table["seed_sd"].mean())
    if sd is None:
        return 0
    if -sd <= res["low"] and res["high"] <= sd:
        verdict = f"within seed noise: the whole interval lies within +-{sd:.2f} points (1 seed s.d.)"
    elif res["low"] > 0 or res["high"] < 0:
        verdict = (f"a systematic effect: the interval excludes 0 (mean {res['estimate']:+.2f} points, "
                   f"{abs(res['estimate']) / sd:.2f} seed s.d.)")
    else:
        verdict = f"inconclusive: the interval contains 0 but reaches beyond +-{sd:.2f} points (1 seed s.d.)"
    print(f"verdict: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
