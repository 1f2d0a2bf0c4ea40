"""Leave-one-dataset-out (LODO) evaluation of the recommender (AutoDistiller, He et al. 2021, sec. 6).

For each dataset, the recommender (``analysis.recommend``) and the best single recipe
(``analysis.recipe.best_recipe``) are fit on the other datasets only; their picks on the held-out
dataset are scored by *regret* (the dataset's best configuration minus the pick's actual score),
beside the expected regret of a random pick. ``distiller_lodo`` runs it on the published Distiller
table, ``grid_lodo`` on one of our grids' tidy tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.dataset_features import dataset_meta_features, load_distiller_features, load_distiller_runs
from analysis.recipe import best_recipe, configuration_scores
from analysis.recommend import fit_recommender, rank_candidates
from analysis.table import treatment_factors

# The choices searched in the Distiller table (``distiller_lodo`` says why these).
DISTILLER_FACTORS = ("intermediate_loss_type", "intermediate_strategy", "kd_loss_type", "mixup", "alpha")
DISTILLER_CONTEXT = ("Model", "Teacher")
DISTILLER_TARGET = "ratio"
DISTILLER_DATASET_COL = "task"
#: What a grid's recommender predicts: the student's score relative to its teacher's.
GRID_TARGET = "score_ratio"


def _label(row: pd.Series, factors: list[str]) -> str:
    return "/".join(str(row[f]) for f in factors)


def _recipe_pick(table: pd.DataFrame, candidates: pd.DataFrame, factors: list[str]) -> tuple[int, int]:
    """(position in ``candidates``, 1-based rank in the recipe table) of the best-ranked recipe
    that was run among the candidates, or (-1, -1) if none was."""
    order = table[factors].reset_index(drop=True)
    order["recipe_rank"] = np.arange(1, len(order) + 1)
    cands = candidates[factors].reset_index(drop=True)
    cands["position"] = np.arange(len(cands))
    hits = cands.merge(order, on=factors, how="inner")
    if hits.empty:
        return -1, -1
    top = hits.sort_values("recipe_rank", kind="mergesort").iloc[0]
    return int(top["position"]), int(top["recipe_rank"])


def _training_recipe(train: pd.DataFrame, target: str, factors: list[str], block: list[str]) -> pd.DataFrame:
    try:
        return best_recipe(train, target, factors, block)[1]
    except ValueError:
        # No configuration was run in half of the training blocks: rank them all anyway.
        return best_recipe(train, target, factors, block, min_blocks=1)[1]


def evaluate_lodo(
    df: pd.DataFrame,
    target: str,
    factors: Sequence[str],
    dataset_col: str,
    features: pd.DataFrame,
    seed: int = 0,
    *,
    context: Sequence[str] = (),
    n_pca: int = 2,
    model: str = "gbr",
    centre: bool = False,
    min_candidates: int = 2,
) -> pd.DataFrame:
    """Leave-one-dataset-out regret of the recommender and of two baselines.

    For each dataset d: the recommender is fit on the runs of every other dataset (and only
    their features), and so is the best single recipe (``best_recipe`` with blocks
    ``[dataset_col, *context]``). The *candidates* on d are the configurations actually run on d,
    within each (d, context) block, each scored by the mean ``target`` of its runs there
    (replicates and every column that is neither a factor nor context averaged). Per block:

    - ``regret_recommender``: block best minus the actual target of the top-predicted candidate;
    - ``regret_best_recipe``: block best minus the actual target of the training recipe; when
      the winning recipe was not run in the block, the next configuration of the recipe table
      (ordered as ``best_recipe`` orders it) that was run is used instead
      (``recipe_fallbacks`` counts those blocks);
    - ``regret_random``: the expected regret of a uniformly random candidate, exactly
      ``mean(best - target)`` over the candidates.

    Regrets are in target units (score-ratio points for ``ratio``) and >= 0; the target is taken
    as higher-is-better. Blocks with fewer than ``min_candidates`` candidates are skipped (every
    method has zero regret there); a dataset's row is the mean over its blocks, and a dataset
    with no block left is omitted. ``seed``, ``n_pca``, ``model`` and ``centre`` go to
    ``fit_recommender``.

    Returns:
        One row per dataset: ``dataset_col``, ``n_blocks``, ``n_candidates`` (summed over
        blocks), ``best`` (mean block best), ``regret_recommender``, ``regret_best_recipe``,
        ``regret_random``, ``recipe_fallbacks``, ``recommended`` and ``recipe`` (the picked
        configurations as ``level/level/...``, one per block, ``; ``-joined); then a last row
        with ``dataset_col == "mean"``, the unweighted mean over datasets of the numeric columns.

    Raises: KeyError if a column or a dataset's features are missing; ValueError if no dataset
    has a block with ``min_candidates`` candidates.
    """
    factors, context = list(factors), list(context)
    block = [dataset_col, *context]
    configs = configuration_scores(df, target, factors, block)
    absent = sorted({d for d in configs[dataset_col] if d not in features.index}, key=str)
    if absent:
        raise KeyError(f"no dataset features for {absent}")
    rows = []
    for dataset in sorted(configs[dataset_col].unique(), key=str):
        blocks = _held_out_blocks(configs[configs[dataset_col] == dataset], context, min_candidates)
        if not blocks:
            continue
        train = df[df[dataset_col] != dataset]
        train_datasets = sorted(train[dataset_col].dropna().unique(), key=str)
        recommender = fit_recommender(
            train, target, factors, dataset_col, features.loc[train_datasets], seed,
            context=context, n_pca=n_pca, model=model, centre=centre,
        )
        recipe_table = _training_recipe(train, target, factors, block)
        features_row = features.loc[dataset]
        per_block = pd.DataFrame([_block_regrets(recommender, recipe_table, cands, features_row, target, factors)
                                  for cands in blocks])
        rows.append({dataset_col: dataset, **_dataset_summary(per_block)})
    table = pd.DataFrame(rows)
    if table.empty:
        raise ValueError(f"no dataset has a block with at least {min_candidates} candidates")
    numeric = ["n_blocks", "n_candidates", "best", "regret_recommender", "regret_best_recipe",
               "regret_random", "recipe_fallbacks"]
    mean_row = {dataset_col: "mean", **table[numeric].mean().to_dict(), "recommended": "", "recipe": ""}
    table[dataset_col] = table[dataset_col].astype(object)
    return pd.concat([table, pd.DataFrame([mean_row])], ignore_index=True)


def _held_out_blocks(held_out: pd.DataFrame, context: list[str], min_candidates: int) -> list[pd.DataFrame]:
    """The held-out dataset's configurations split into its context blocks, those with at least
    ``min_candidates`` candidates."""
    blocks = [g for _, g in held_out.groupby(context, dropna=False, observed=True, sort=True)] if context else [held_out]
    return [b.reset_index(drop=True) for b in blocks if len(b) >= min_candidates]


def _block_regrets(recommender, recipe_table: pd.DataFrame, cands: pd.DataFrame, features_row,
                   target: str, factors: list[str]) -> dict:
    """One held-out block: the best actual target, each method's regret and pick."""
    actual = cands[target].to_numpy(dtype=float)
    best = actual.max()
    top = rank_candidates(recommender, cands, features_row).index[0]
    position, recipe_rank = _recipe_pick(recipe_table, cands, factors)
    return {
        "n_candidates": len(cands),
        "best": best,
        "regret_recommender": best - actual[top],
        "regret_best_recipe": best - actual[position] if position >= 0 else np.nan,
        "regret_random": float(np.mean(best - actual)),
        "recipe_fallbacks": int(recipe_rank != 1),
        "recommended": _label(cands.loc[top], factors),
        "recipe": _label(cands.loc[position], factors) if position >= 0 else "",
    }


def _dataset_summary(per_block: pd.DataFrame) -> dict:
    """A held-out dataset's row: regrets averaged over its blocks, counts summed, picks joined."""
    return {
        "n_blocks": len(per_block),
        "n_candidates": int(per_block["n_candidates"].sum()),
        "best": per_block["best"].mean(),
        "regret_recommender": per_block["regret_recommender"].mean(),
        "regret_best_recipe": per_block["regret_best_recipe"].mean(),
        "regret_random": per_block["regret_random"].mean(),
        "recipe_fallbacks": int(per_block["recipe_fallbacks"].sum()),
        "recommended": "; ".join(per_block["recommended"]),
        "recipe": "; ".join(per_block["recipe"]),
    }


def distiller_lodo(
    runs: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    *,
    student: str | None = "TinyBERT4",
    teacher: str | None = "BERT_BASE",
    factors: Sequence[str] = DISTILLER_FACTORS,
    seed: int = 0,
    model: str = "gbr",
    n_pca: int = 2,
    centre: bool = False,
) -> pd.DataFrame:
    """LODO on the published Distiller table, target ``ratio``, datasets ``task``.

    Factors (the recommended choices): the intermediate-layer loss, the layer mapping
    (``intermediate_strategy``), the prediction-layer KD loss, mixup and MI-α, the choices that
    the Distiller search varied on every task. Augmentation settings (``aug_p``,
    ``repeated_aug``, step counts) are nuisance: averaged into a candidate's score.

    Student and teacher: by default the evaluation is restricted to the TinyBERT4 student of a
    BERT-base teacher, the pair of the search proper (768 of the 1,239 runs, 46-130 per task, and
    the pair of the paper's own AutoDistiller candidates); the other pairs are a student/teacher
    sweep of two to five configurations each. With ``student=None`` and ``teacher=None`` all runs
    are used and ``Model``/``Teacher`` are *context*: model inputs given by the user, never
    recommended, and candidates compete only within one (task, Model, Teacher) block.

    Dataset features: ``load_distiller_features`` (log10 training-set size, label count, task
    type, and ``n_pca`` principal components of the 100-dimensional task embedding, fit on the
    training tasks of each fold).
    """
    runs = load_distiller_runs() if runs is None else runs
    features = load_distiller_features() if features is None else features
    context: tuple[str, ...] = ()
    if student is not None:
        runs = runs[runs["Model"] == student]
    if teacher is not None:
        runs = runs[runs["Teacher"] == teacher]
    if student is None or teacher is None:
        context = tuple(c for c, fixed in zip(DISTILLER_CONTEXT, (student, teacher)) if fixed is None)
    return evaluate_lodo(
        runs, DISTILLER_TARGET, list(factors), DISTILLER_DATASET_COL, features, seed,
        context=context, n_pca=n_pca, model=model, centre=centre,
    )


def grid_choices(df: pd.DataFrame) -> list[str]:
    """The choices a grid varies that a recommender recommends: its treatment factors (from the
    runs, ``analysis.table.treatment_factors``) less ``student``, which a deployment fixes."""
    return [f for f in treatment_factors(df) if f != "student"]


def grid_lodo(
    df: pd.DataFrame,
    features: pd.DataFrame | None = None,
    *,
    seed: int = 0,
    model: str = "gbr",
    n_pca: int = 2,
    centre: bool = False,
) -> pd.DataFrame:
    """LODO on one of our grids' tidy table (``analysis.table.load_runs``), target ``score_ratio``.

    Factors: the grid's treatment factors that vary (``grid_choices``). Context:
    ``student`` when it varies (a deployment budget fixes it; the recommender does not choose
    it), and ``teacher`` when some dataset was distilled from several teachers (one teacher per
    dataset is part of the dataset). Seeds are replicates. Dataset features come from
    ``analysis.dataset_features.dataset_meta_features`` (teacher score; label count and task
    type where the runs logged them, else regression read from the score metric), joined with
    ``features`` if given.

    Raises: ValueError if no factor varies or fewer than two datasets have a score ratio.
    """
    factors = grid_choices(df)
    if not factors:
        raise ValueError("no choice varies in this grid (its factors, less dataset, seed and student, "
                         "each have one level)")
    context = []
    if "student" in df.columns and df["student"].nunique(dropna=True) > 1:
        context.append("student")
    if "teacher" in df.columns and (df.groupby("dataset", observed=True)["teacher"].nunique() > 1).any():
        context.append("teacher")
    scored = df.dropna(subset=[GRID_TARGET])
    if scored["dataset"].nunique() < 2:
        raise ValueError("leave-one-dataset-out needs runs with a score ratio on at least two datasets")
    meta = dataset_meta_features(scored, "dataset", features=features)
    return evaluate_lodo(
        scored, GRID_TARGET, factors, "dataset", meta, seed,
        context=context, n_pca=n_pca, model=model, centre=centre,
    )
