"""Augmenting a training split: one policy (``augment``) or an ordered pipeline of them
(``resolve_pipeline``, ``augment_pipeline``); see the package docstring for how steps chain."""

from __future__ import annotations

import random
from pathlib import Path

from study.augment.cache import (
    cache_path,
    check_cache_key,
    fingerprint,
    model_files_sha256,
    read_cache,
    step_cache_path,
    write_cache,
)
from study.augment.policy import AUGMENTATIONS, Augmentation, resolve, version
from study.core.errors import StudyConfigError
from study.core.registry import lookup
from study.tasks.spec import Split


def _copies(
    source: Split, aug: Augmentation, resolved: dict, rng: random.Random, path: Path | None,
    header: dict,
) -> tuple[Split, dict]:
    """``aug``'s copies of ``source``: read from ``path`` when it holds them for the same
    ``header`` (completed here with the source, operations and model files), else made and
    written there."""
    if path is not None:
        header = {
            **header,
            "operations": aug.operations(),
            "models_sha256": {m: model_files_sha256(resolved[m]) for m in aug.models},
            "n_source": len(source),
            "source_sha256": fingerprint(source),
        }
        cached = read_cache(path, header, n_copies=resolved.get("n_aug", 0) * len(source))
        if cached is not None:
            return cached
    copies, extra = aug.make_copies(source, rng, resolved)
    if path is not None:
        write_cache(path, header, copies, extra)
    return copies, extra


def _join(originals: Split, *copies: Split) -> Split:
    texts, labels = list(originals.texts), list(originals.labels)
    for c in copies:
        texts += c.texts
        labels += c.labels
    return Split(texts=texts, labels=labels)


def augment(
    split: Split,
    policy: str,
    seed: int,
    params: dict | None = None,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
) -> tuple[Split, dict]:
    """Return (originals followed by augmented copies, metadata) for one policy.

    The result has ``(1 + n_aug) * len(split)`` examples, or is ``split`` itself for ``none``.
    Randomness comes only from ``random.Random(seed)``. Metadata (JSON-friendly, for logging):
    ``policy``, ``version``, ``n_aug``, ``alpha`` (None unless EDA), ``operations`` and
    ``operation_counts`` for EDA, and what the policy's ``make_copies`` reports.

    With both ``cache_dir`` and ``cache_key`` (a name for the dataset, e.g. "sst2-train-n1000"),
    the copies are read from / written atomically to
    ``<cache_dir>/augment/<policy>-<cache_key>-s<seed>.jsonl``; a cache built from other
    originals, parameters, operations, model files or version is rebuilt.

    Raises:
        StudyConfigError: unknown policy, unknown or invalid parameter, a model that cannot be
            loaded, or a ``cache_key`` that is not a plain file-name part ([A-Za-z0-9._-]).
    """
    aug = AUGMENTATIONS.get(policy)
    resolved = resolve(aug, params)
    meta = {
        "policy": aug.name,
        "version": aug.version,
        "n_aug": resolved.get("n_aug", 0),
        "alpha": resolved.get("alpha"),
    }
    if aug.name == "none":
        return split, {**meta, "operations": [], "operation_counts": {}}
    path = None
    if cache_dir is not None and cache_key is not None:
        check_cache_key(cache_key)
        path = cache_path(cache_dir, aug.name, cache_key, seed)
    copies, extra = _copies(split, aug, resolved, random.Random(seed), path, {**meta, "seed": seed})
    return _join(split, copies), {**meta, **extra}


def resolve_pipeline(value, params_by_name: dict | None = None) -> list[dict]:
    """The grid's ``augmentation`` value as ordered, resolved steps.

    ``value``: ``"none"``, ``None`` or ``[]`` -> ``[]``; a policy name (``"eda"``) or a label
    joined by ``+`` (``"eda+mlm"``) or a list of names (``["eda", "mlm"]``) -> one step per name,
    in order: ``[{"name": "eda", "params": {...defaults filled in...}}, ...]``.
    ``params_by_name``: ``{policy: params}`` (the grid's ``augmentation_params``); a policy used
    twice gets the same parameters both times; entries for policies not in ``value`` are checked
    for their names only.

    Raises:
        StudyConfigError: a value of another type, an unknown policy (with the closest name),
            ``none`` inside a list of several, or an unknown or out-of-range parameter.
    """
    if value is None:
        return []
    if isinstance(value, str):
        names = value.split("+")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise StudyConfigError(
            f"Data augmentation must be a policy name or an ordered list of names, got {value!r}. "
            f"Allowed names: {', '.join(sorted(AUGMENTATIONS))}."
        )
    params_by_name = dict(params_by_name or {})
    for name in params_by_name:
        lookup(AUGMENTATIONS, name, "data augmentation policy in augmentation_params")
    if names in (["none"], []):
        if params_by_name.get("none"):
            resolve(AUGMENTATIONS["none"], params_by_name["none"])  # refuses any
        return []
    if "none" in names:
        raise StudyConfigError(
            f"Data augmentation {value!r}: 'none' cannot be a step of a pipeline; give 'none' "
            f"alone or only the policies to apply."
        )
    steps = []
    for name in names:
        aug = AUGMENTATIONS.get(name)
        steps.append({"name": aug.name, "params": resolve(aug, params_by_name.get(name))})
    return steps


def pipeline_label(steps: list[dict]) -> str:
    """A short name for display and cell names: ``"none"``, ``"eda"``, ``"eda+mlm"``."""
    return "+".join(s["name"] for s in steps) or "none"


def pipeline_version(steps: list[dict]) -> str:
    """The versions of the steps' policies, for a cell's identity: ``version("none")`` for no
    steps, else ``"<name>=<version(name)>"`` joined by ``,`` in step order (EDA's version names
    the operations and WordNet this machine offers)."""
    if not steps:
        return version("none")
    return ",".join(f"{s['name']}={version(s['name'])}" for s in steps)


def _step_rng(seed: int, k: int) -> random.Random:
    # Step 0 draws as augment() does, so a one-step pipeline gives augment()'s copies; later steps
    # get their own stream, named by position (a string seed is hashed with sha512: stable).
    return random.Random(seed) if k == 0 else random.Random(f"augment-step{k}-seed{seed}")


def augment_pipeline(
    split: Split,
    steps: list[dict],
    seed: int,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
) -> tuple[Split, dict]:
    """Return (originals followed by the copies of every step, metadata).

    ``steps`` as ``resolve_pipeline`` returns them. Step 1 augments the originals; step k > 1
    augments step k - 1's copies (chained, as Distiller applies its augmenters in order; see the
    module docstring). The result is ``originals + copies_1 + ... + copies_K``; every copy keeps
    its original's label. No steps: ``split`` itself.

    Step k (0-based) draws from its own ``random.Random`` derived from ``seed`` and k (step 0 from
    ``random.Random(seed)``, so a one-step pipeline equals ``augment(split, name, seed, params)``).
    With ``cache_dir`` and ``cache_key`` each step's copies are cached in
    ``step_cache_path(cache_dir, steps, k, cache_key, seed)``; a file built from another input,
    parameters, operations, model files or version is rebuilt.

    Metadata: ``pipeline`` (label), ``version`` (``pipeline_version``), ``n_original``,
    ``steps``: per step ``name``, ``params``, ``version``, ``n_copies`` and the policy's report.

    Raises:
        StudyConfigError: an unknown policy or parameter in ``steps``, a model that cannot be
            loaded, or a ``cache_key`` that is not a plain file-name part.
    """
    if cache_dir is not None and cache_key is not None:
        check_cache_key(cache_key)
    resolved_steps = []
    for step in steps:
        aug = AUGMENTATIONS.get(step["name"])
        params = resolve(aug, step.get("params"))
        resolved_steps.append({"name": aug.name, "params": params})
    meta = {"pipeline": pipeline_label(resolved_steps),
            "version": pipeline_version(resolved_steps), "n_original": len(split), "steps": []}
    source = split
    all_copies: list[Split] = []
    for k, step in enumerate(resolved_steps):
        aug = AUGMENTATIONS[step["name"]]
        path = None
        if cache_dir is not None and cache_key is not None:
            path = step_cache_path(cache_dir, resolved_steps, k, cache_key, seed)
        header = {"policy": aug.name, "version": aug.version, "step": k, "params": step["params"],
                  "seed": seed}
        copies, extra = _copies(source, aug, step["params"], _step_rng(seed, k), path, header)
        meta["steps"].append({"name": aug.name, "params": step["params"],
                              "version": version(aug.name), "n_copies": len(copies), **extra})
        all_copies.append(copies)
        source = copies
    if not all_copies:
        return split, meta
    return _join(split, *all_copies), meta
