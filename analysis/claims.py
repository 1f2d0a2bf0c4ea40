"""The seed studies' claims as data: ``analysis/claims.yaml``, one checked schema per test kind.

Each claim names the paper, the claim as its abstract states it, the grid that tests it, a *test*
(a key of ``PARAMS``, implemented in ``analysis.claim_tests``) and the test's parameters. The
parameters are validated with the test's pydantic model on load, so a misspelt key, a wrong type
or an unknown ``expect`` is refused in one line naming the claim, the key, the value and what is
allowed (``study.core.schema.validate_settings``). What a test found is a ``Finding``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from study.core.errors import StudyConfigError
from study.core.registry import lookup
from study.core.schema import validate_settings

CLAIMS_FILE = Path(__file__).resolve().parent / "claims.yaml"
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "underpowered", "not testable", "not run",
            "incomplete")
REQUIRED_KEYS = ("id", "paper", "statement", "grid", "test")


@dataclass(frozen=True)
class Claim:
    """One claim: ``id``, ``paper``, ``statement`` (as the paper's abstract states it), ``grid``,
    ``test`` (a name in ``PARAMS``) and its ``params`` (as written in the YAML)."""

    id: str
    paper: str
    statement: str
    grid: str
    test: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    """What a test found. ``estimate``, ``ci_low``, ``ci_high`` in points (score × 100) unless
    ``unit`` says otherwise; ``eta_sq``: partial η² of the factor (None when not computed);
    ``n_units``: replicate units (dataset × seed) the estimate rests on. Power (Card et al. 2020):
    ``mde`` the minimum effect the design detects with 80% power at α = 0.05 (in ``mde_unit``),
    ``paper_effect`` the effect the paper claims (same unit; None where its record gives none),
    ``detectable`` whether ``mde`` ≤ ``paper_effect``, ``power_note`` the seeds or datasets a
    conclusive test would need. Seed noise (Bouthillier et al. 2021): ``seed_sd`` the seed-to-seed
    s.d. per dataset (points, dataset -> s.d.), ``seed_share`` the share of the within-dataset
    variance that seeds explain. ``units``: the unit-level values (points, one row per (dataset,
    seed): ``dataset``, ``seed``, ``value``) a unit-based test decided on, for ``study plan``."""

    claim: Claim
    verdict: str
    reason: str
    rule: str = ""
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = "points"
    eta_sq: float | None = None
    p_value: float | None = None
    n_units: int = 0
    n_runs: int = 0
    detail: pd.DataFrame | None = None
    mde: float | None = None
    mde_unit: str = "points"
    paper_effect: float | None = None
    detectable: bool | None = None
    power_note: str = ""
    seed_sd: dict[str, float] = field(default_factory=dict)
    seed_share: float | None = None
    units: pd.DataFrame | None = None


# --------------------------------------------------------------------------- parameter schemas

#: A factor level as YAML writes it (``eda``, ``1000``, ``0.5``, ``true``); compared as text.
Level = Union[bool, int, float, str]


class _Params(BaseModel):
    """Every test's parameters include ``paper_effect``: the effect the paper reports (points of
    the estimate's unit, as a magnitude, from the paper's public record), None where it reports none."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    paper_effect: float | None = Field(None, ge=0)


class ContrastParams(_Params):
    """Level ``a`` minus level ``b`` of ``factor``; ``expect`` its sign, or ``negligible``
    (within ``margin`` points); ``where``: column -> level(s) to keep first."""

    factor: str
    a: Level
    b: Level
    where: dict[str, Union[Level, list[Level]]] | None = None
    expect: Literal["positive", "negative", "negligible"] = "positive"
    margin: float = Field(0.0, ge=0)


class BestLevelParams(_Params):
    """``level`` of ``factor`` against the best other level (on the ``where`` subset)."""

    factor: str
    level: Level
    where: dict[str, Union[Level, list[Level]]] | None = None


class LargestShareParams(_Params):
    """``factor`` (or a family of factors) against every other treatment factor's partial η²."""

    factor: Union[str, list[str]] = Field(min_length=1)
    n_boot: int = Field(500, ge=1)


class WorstCostParams(_Params):
    """The worst-case cost of a sub-optimal level among ``factors``, against ``published`` (%)."""

    factors: list[str] = Field(min_length=1)
    published: float
    n_boot: int = Field(500, ge=1)


class RecipeRegretParams(_Params):
    """One ``recipe`` (factor -> level, the others tuned) against the best; ``margin`` in points."""

    recipe: dict[str, Level] = Field(min_length=1)
    margin: float = Field(1.0, ge=0)


class InteractionParams(_Params):
    """Does ``a`` − ``b`` of ``factor`` grow as ``by`` goes from ``high`` to ``low``?"""

    factor: str
    a: Level
    b: Level
    by: str
    low: Level
    high: Level


class RecommenderParams(_Params):
    """Leave-one-dataset-out regret of the recommender; a verdict needs ``min_datasets``."""

    min_datasets: int = Field(4, ge=2)


class DescribeParams(_Params):
    """No verdict: ``why`` the claim cannot be tested."""

    why: str = "no verdict"


#: Test kind -> the schema of its parameters (``analysis.claim_tests.TESTS`` implements each).
PARAMS: dict[str, type[_Params]] = {
    "contrast": ContrastParams,
    "best_level": BestLevelParams,
    "largest_share": LargestShareParams,
    "worst_cost": WorstCostParams,
    "recipe_regret": RecipeRegretParams,
    "interaction": InteractionParams,
    "recommender": RecommenderParams,
    "describe": DescribeParams,
}


def claim_params(claim: Claim) -> Any:
    """The claim's parameters parsed by its test's schema (defaults filled in).

    Raises:
        StudyConfigError: an unknown test, an unknown key, a missing or mistyped value; one line
            naming the claim, the key, the value and what is allowed.
    """
    schema = lookup(PARAMS, claim.test, f"claim test (claim {claim.id!r})")
    where = f"claim {claim.id!r} (test {claim.test}) params"
    validate_settings(schema, claim.params, where)
    return schema.model_validate(claim.params)


def load_claims(path: str | Path = CLAIMS_FILE) -> list[Claim]:
    """The claims declared in ``path`` (a YAML list), each with its parameters checked.

    Raises:
        StudyConfigError: a missing file, an entry without a required key, an unknown test (with
            a did-you-mean) or a bad parameter (see ``claim_params``).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyConfigError(f"claims file {path} does not exist")
    docs = yaml.safe_load(path.read_text())
    if not isinstance(docs, list):
        raise StudyConfigError(f"{path}: expected a YAML list of claims, got {type(docs).__name__}")
    claims = []
    for i, doc in enumerate(docs):
        missing = [k for k in REQUIRED_KEYS if k not in (doc or {})]
        if missing:
            raise StudyConfigError(f"{path}: claim {i} lacks {', '.join(missing)}")
        claim = Claim(doc["id"], doc["paper"], " ".join(str(doc["statement"]).split()), doc["grid"],
                      doc["test"], dict(doc.get("params") or {}))
        claim_params(claim)
        claims.append(claim)
    return claims
