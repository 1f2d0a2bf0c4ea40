"""The seed studies' claims, tested on our own grids: an estimate, a 95% interval and a verdict.

Claims are data (``analysis/claims.yaml``, read and checked by ``analysis.claims.load_claims``);
each names a test of ``analysis.claim_tests.TESTS``. ``evaluate`` reads each claim's grid once
and runs its test; a grid without runs gives ``not run``, and a grid stopped part-way
(``evaluate``'s ``expected``) gives ``incomplete``. ``to_markdown`` writes what ``study findings``
publishes. Rerunning a grid on CPU gives the same runs, so the same table.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.claim_tests import TESTS, held_fixed
from analysis.claims import Claim, Finding
from analysis.seednoise import seed_noise
from analysis.smallsample import MIN_UNITS
from analysis.table import load_runs, treatment_factors

# --------------------------------------------------------------------------- running and writing


def _named_factors(claim: Claim) -> list[str]:
    """The factors a claim's parameters name (``factor``, ``factors``, the keys of ``recipe``)."""
    p, out = claim.params, []
    for key in ("factor", "factors"):
        value = p.get(key)
        out += value if isinstance(value, list) else [value] if value else []
    out += list(p.get("recipe") or {})
    return list(dict.fromkeys(out))


def inert_factor(df: pd.DataFrame, factor: str, metric: str = "score") -> bool:
    """True when ``factor`` varies in ``df`` but made no difference to any run: wherever the other
    factors (and dataset, seed) are equal, every level gave the same ``metric`` (to 1e-12). This
    happens when two levels resolve to the same training, e.g. a teacher whose best-metric and
    lowest-loss checkpoints are the same epoch. False when no two runs can be compared."""
    if factor not in df.columns or df[factor].nunique() < 2:
        return False
    others = held_fixed(df, factor)
    groups = df.groupby(others, observed=True, dropna=False)[metric] if others else [(None, df[metric])]
    compared = False
    for _, scores in groups:
        if len(scores) < 2:
            continue
        compared = True
        if float(scores.max() - scores.min()) > 1e-12:
            return False
    return compared


def evaluate(claims: list[Claim], tracking_uri: str | None = None,
             loader: Callable[[str, str | None], pd.DataFrame] | None = None,
             expected: dict[str, int] | None = None) -> list[Finding]:
    """Each claim's finding, reading each grid once from ``tracking_uri``. A grid without runs
    gives ``not run`` findings (with the command that runs it), never an error; a grid with
    fewer finished cells than ``expected`` (grid -> its cell count) gives ``incomplete``
    findings: a grid stopped part-way is an unbalanced design, and no verdict is drawn from it."""
    loader = loader or load_runs
    tables: dict[str, pd.DataFrame | str] = {}
    out = []
    for claim in claims:
        if claim.grid not in tables:
            try:
                df = loader(claim.grid, tracking_uri)
                if len(df) == 0:
                    raise ValueError("no finished runs")
                df.attrs.setdefault("treatments", treatment_factors(df))
                tables[claim.grid] = df
            except Exception:  # noqa: BLE001 - reported in the finding
                tables[claim.grid] = (f"no finished run of grid {claim.grid} in this store: "
                                      f"run `study run --grid {claim.grid}`")
        df = tables[claim.grid]
        if isinstance(df, str):
            out.append(Finding(claim, "not run", df))
            continue
        want = (expected or {}).get(claim.grid)
        if want is not None and len(df) < want:
            out.append(Finding(claim, "incomplete", f"{len(df)} of the {want} cells of grid {claim.grid} have "
                               f"finished: run `study run --grid {claim.grid}` to finish it (a grid stopped "
                               "part-way is an unbalanced design, so no estimate is drawn from it)",
                               n_runs=len(df)))
            continue
        finding = TESTS[claim.test](df, claim)
        finding.n_runs = finding.n_runs or len(df)
        inert = [f for f in _named_factors(claim) if inert_factor(df, f)]
        if inert:
            finding.reason += (f"; {', '.join(inert)} changed no run: in every cell its levels gave the same score "
                               "(e.g. both teacher checkpoints were the same epoch), so this grid cannot weigh it")
        if finding.verdict in ("reproduced", "not reproduced") and finding.ci_low is not None \
                and finding.n_units < MIN_UNITS:
            finding.verdict = "underpowered"
            finding.reason += f"; {finding.n_units} replicate unit(s), fewer than the {MIN_UNITS} a verdict needs"
        noise, share = seed_noise(df)
        finding.seed_sd = {str(r.dataset): float(r.seed_sd) for r in noise.itertuples() if np.isfinite(r.seed_sd)}
        finding.seed_share = share
        out.append(finding)
    return out


def _fmt(x: float | None, unit: str) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.2f}" if unit in ("points", "η²") else f"{x:.2f}"


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return "∞" if np.isinf(x) else f"{x:.2f}"


def seed_sd_text(f: Finding) -> str:
    """The seed-to-seed s.d. per dataset in points, e.g. ``mrpc 0.84, sst2 0.41``; ``–`` without."""
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(f.seed_sd.items())) or "–"


def summary_table(findings: list[Finding]) -> pd.DataFrame:
    """One row per finding: claim, paper, grid, estimate, interval, unit, η², units, MDE (80%
    power), the paper's effect, whether the design detects it, the seed s.d. per dataset
    (points), verdict."""
    rows = []
    for f in findings:
        interval = "–" if f.ci_low is None else f"[{_fmt(f.ci_low, f.unit)}, {_fmt(f.ci_high, f.unit)}]"
        detect = "–" if f.detectable is None else "yes" if f.detectable else "no"
        rows.append({"claim": f.claim.id, "paper": f.claim.paper, "grid": f.claim.grid,
                     "estimate": _fmt(f.estimate, f.unit), "95% interval": interval, "unit": f.unit,
                     "partial η²": "–" if f.eta_sq is None else f"{f.eta_sq:.2f}", "units": f.n_units,
                     "MDE": _num(f.mde), "paper effect": _num(f.paper_effect), "detectable": detect,
                     "seed SD": seed_sd_text(f), "verdict": f.verdict})
    return pd.DataFrame(rows)


def _power_line(f: Finding) -> str:
    if f.mde is None and not f.power_note:
        return ""
    text = "- Power (80%, α = 0.05): "
    if f.mde is not None:
        text += f"minimum detectable effect {_num(f.mde)} {f.mde_unit}"
        if f.paper_effect is not None:
            text += (f"; the paper's effect {_num(f.paper_effect)} is "
                     + ("detectable" if f.detectable else "not detectable") + " with this design")
        else:
            text += "; the paper's public record gives no effect size"
    if f.power_note:
        text += ("; " if f.mde is not None else "") + f.power_note
    return text + "."


def _seed_line(f: Finding) -> str:
    if not f.seed_sd:
        return ""
    share = "" if f.seed_share is None else f"; seeds explain {100 * f.seed_share:.0f}% of the within-dataset variance"
    return f"- Seed noise: seed-to-seed s.d. per dataset (points) {seed_sd_text(f)}{share}."


def to_markdown(findings: list[Finding], command: str = "study findings") -> str:
    """The findings as a Markdown document: a summary table, then one section per claim with the
    grid's command, the estimate and interval, the verdict and its rule, and the per-level detail."""
    lines = ["# What the studies' claims look like when rerun", "",
             f"Generated by `{command}` from the MLflow store; every number below comes from the runs "
             "the commands shown produce (CPU runs are deterministic, so a rerun gives the same table). "
             "Intervals: 95% t-intervals over (dataset, seed) units with G − 1 degrees of freedom, "
             "each verdict also needing an exact sign-flip test over units at α = 0.05 and at least "
             f"{MIN_UNITS} units (else *underpowered*); the worst-case cost's interval is the t-interval of its "
             "per-unit costs; η² shares use a 95% cluster bootstrap (500 draws, seeded) with the F-test as "
             "their test. MDE: the minimum "
             "effect the design detects with 80% power under that rule, simulated from the units' seed "
             "and dataset variance as `study plan` does (Card et al. 2020). Seed SD: the seed-to-seed "
             "s.d. of one configuration's score, per dataset (Bouthillier et al. 2021). "
             "Points = score × 100.", "",
             summary_table(findings).to_markdown(index=False), ""]
    for f in findings:
        c = f.claim
        lines += [f"## {c.id}: {c.paper}", "", f"> {c.statement}", "",
                  f"- Grid: `{c.grid}` — `study run --grid {c.grid}`, then `study findings`.",
                  f"- Test: `{c.test}` {', '.join(f'{k}={v}' for k, v in c.params.items())}.",
                  f"- Finding: {f.reason}.",
                  f"- Verdict: **{f.verdict}**" + (f" ({f.rule})." if f.rule else "."),
                  f"- Runs: {f.n_runs}; replicate units: {f.n_units}."
                  + ("" if f.eta_sq is None else f" Partial η² of the factor: {f.eta_sq:.2f}"
                     + ("" if f.p_value is None else f" (F-test p {f.p_value:.3g})") + ".")]
        lines += [x for x in (_power_line(f), _seed_line(f)) if x] + [""]
        if f.detail is not None and len(f.detail):
            lines += [f.detail.round(3).to_markdown(index=False), ""]
    return "\n".join(lines)
