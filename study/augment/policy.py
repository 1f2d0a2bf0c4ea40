"""What a data augmentation policy is, the registry of policies (``AUGMENTATIONS``, filled by the
modules of ``study.augment.policies``), and a policy's resolved parameters and version."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from study.augment.params import PolicyParams
from study.core.errors import StudyConfigError
from study.core.registry import Registry
from study.core.schema import validate_settings
from study.tasks.spec import Split

VERSION = "1"  # of EDA and of the table's conventions (layout, cache format)


@dataclass(frozen=True)
class Augmentation:
    """A policy: ``make_copies(split, rng, params) -> (copies, metadata)``; ``params``, the
    pydantic model of its parameters (defaults included); ``operations()``, the operation names
    this environment offers (they enter the version); ``models``, the parameters that name models
    (a local directory's files are hashed into the cache header)."""

    name: str
    make_copies: Callable[[Split, random.Random, dict], tuple[Split, dict]]
    params: type[PolicyParams] = PolicyParams
    operations: Callable[[], list[str]] = list
    version: str = VERSION
    models: tuple[str, ...] = ()


#: The registered policies by name; each module of ``study.augment.policies`` adds one.
AUGMENTATIONS: Registry[Augmentation] = Registry("data augmentation policy",
                                                 "study.augment.policies")


def resolve(aug: Augmentation, params: dict | None) -> dict:
    """``aug``'s parameters with defaults filled in, in the model's field order, values as given.

    Raises:
        StudyConfigError: an unknown key (with the allowed ones and the closest) or a value out
            of range; the message names it as ``augmentation_params.<policy>.<key>``.
    """
    values = dict(params or {})
    where = f"augmentation_params.{aug.name}"
    if values and not aug.params.model_fields:  # validate_settings would list no allowed key
        raise StudyConfigError(
            f"Unknown key(s) {', '.join(map(repr, sorted(values)))} in {where}: data augmentation "
            f"policy {aug.name!r} takes no parameters. Allowed: none."
        )
    return validate_settings(aug.params, values, where)


def resolve_params(policy: str, params: dict | None) -> dict:
    """The policy's parameters with defaults filled in (used to build a cell's identity).

    Raises:
        StudyConfigError: unknown policy or parameter, or a value out of range.
    """
    return resolve(AUGMENTATIONS.get(policy), params)


def version(policy: str) -> str:
    """The policy's version for a cell's identity, including the operations this machine offers
    (EDA's synonym operations exist only where a WordNet loads, and which WordNet matters).

    Raises:
        StudyConfigError: unknown policy.
    """
    aug = AUGMENTATIONS.get(policy)
    ops = aug.operations()
    return f"{aug.version}:{'+'.join(sorted(ops))}" if ops else aug.version
