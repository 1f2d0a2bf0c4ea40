"""Seed-to-seed noise beside the factors' effects (Bouthillier et al. 2021, "Accounting for
Variance in Machine Learning Benchmarks"): how much the score moves when only the seed changes.

:func:`seed_noise` gives, per dataset, the s.d. across seeds of one configuration's score (pooled
over configurations), and the share of the within-dataset variance of the score that seeds explain
(the rest is the treatment factors and their interactions). Used by ``analysis.findings`` and the
report.
"""

from __future__ import annotations

import math

import pandas as pd


def _config_columns(df: pd.DataFrame, seed: str) -> list[str]:
    factors = list(df.attrs.get("factors") or df.attrs.get("treatments") or [])
    cols = [c for c in ("dataset", *factors) if c in df.columns and c != seed]
    return list(dict.fromkeys(cols))


def seed_noise(df: pd.DataFrame, metric: str = "score", seed: str = "seed",
               scale: float = 100.0) -> tuple[pd.DataFrame, float | None]:
    """Per-dataset seed s.d. and the share of variance seeds explain.

    Args:
        df: tidy runs (``analysis.table.load_runs``): ``dataset``, ``seed``, ``metric`` and the
            factors (``df.attrs["factors"]``, else ``["treatments"]``).
        scale: multiplies the s.d. (100: score → points).

    Returns:
        ``(table, share)``: ``table`` has one row per dataset, ``dataset``, ``seed_sd`` (pooled
        within-configuration s.d. across seeds, ddof 1, × ``scale``), ``configs`` (configurations
        with ≥ 2 seeds); ``share`` is the pooled within-configuration sum of squares over the
        sum of squares about each dataset's mean (0..1), None when no configuration has 2 seeds.
    """
    empty = pd.DataFrame(columns=["dataset", "seed_sd", "configs"])
    if seed not in df.columns or metric not in df.columns or df[seed].nunique() < 2:
        return empty, None
    data = df.assign(dataset=df["dataset"].astype(str)) if "dataset" in df.columns else df.assign(dataset="all")
    cols = _config_columns(data, seed) or ["dataset"]
    keyed = data.assign(_cfg=data[cols].astype(str).agg("|".join, axis=1))
    grouped = keyed.groupby("_cfg")[metric]
    dev = keyed[metric] - grouped.transform("mean")
    keyed = keyed.assign(_ss=dev ** 2)
    rows = []
    for ds, part in keyed.groupby("dataset", observed=True):
        dof = float(part.groupby("_cfg")[metric].size().sub(1).clip(lower=0).sum())
        configs = int((part.groupby("_cfg")[metric].size() > 1).sum())
        sd = math.sqrt(float(part["_ss"].sum()) / dof) * scale if dof else float("nan")
        rows.append({"dataset": ds, "seed_sd": sd, "configs": configs})
    within_ds = keyed[metric] - keyed.groupby("dataset", observed=True)[metric].transform("mean")
    total = float((within_ds ** 2).sum())
    share = float(keyed["_ss"].sum()) / total if total > 0 else None
    return pd.DataFrame(rows), share
