"""Data augmentation of a training split, as a table of policies (``AUGMENTATIONS``).

``eda`` is EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance
on Text Classification Tasks", Sec. 2): each augmented copy applies one randomly chosen
operation to a whitespace-split text, changing ``n = max(1, int(alpha * len(words)))`` words.

Operations and how they differ from the paper:
- ``random_swap``: swap two random positions, ``n`` times (as in EDA).
- ``random_deletion``: delete ``n`` distinct random words, never all of them. EDA deletes each
  word with probability ``alpha``; a fixed count makes ``alpha`` the same "fraction of words
  changed" for every operation and cannot empty a text.
- ``random_insertion``: insert a copy of a random word of the text at a random position, ``n``
  times. EDA inserts a WordNet synonym of a random word; WordNet is not available offline here.
- ``synonym_replacement``: replace ``n`` distinct non-stop words by a random WordNet synonym (as
  in EDA). Only offered when ``nltk`` and its wordnet corpus load; the metadata's
  ``operations`` says which operations a run had.

EDA's text cleaning (lower-casing, dropping non-letters) is not applied: the originals are kept
as they are, and the copies should differ from them only by the operation.

Originals are kept and the copies appended (originals first, then the copies of example 0, of
example 1, ...); a copy's label is its original's. Pair tasks get each text field augmented
independently (its own randomly chosen operation).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from study.data import Split
from study.registry import StudyConfigError, lookup

VERSION = "1"

Words = list[str]

# EDA's stop-word list (from the authors' code), kept out of synonym replacement.
_STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now""".split()
)


def _n_changed(words: Words, alpha: float) -> int:
    return max(1, int(alpha * len(words)))


def random_swap(words: Words, n: int, rng: random.Random) -> Words:
    """Swap two random positions ``n`` times (EDA retries up to 3 times to get two different
    positions). Fewer than 2 words: unchanged."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i = rng.randrange(len(out))
        j = i
        for _ in range(3):
            j = rng.randrange(len(out))
            if j != i:
                break
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: Words, n: int, rng: random.Random) -> Words:
    """Delete ``min(n, len(words) - 1)`` distinct random words; at least one word always stays."""
    k = min(n, len(words) - 1)
    if k <= 0:
        return list(words)
    drop = set(rng.sample(range(len(words)), k))
    return [w for i, w in enumerate(words) if i not in drop]


def random_insertion(words: Words, n: int, rng: random.Random) -> Words:
    """Insert a copy of a random word of the (growing) text at a random position, ``n`` times."""
    out = list(words)
    if not out:
        return out
    for _ in range(n):
        out.insert(rng.randrange(len(out) + 1), rng.choice(out))
    return out


def synonym_replacement(
    words: Words, n: int, rng: random.Random, synonyms: Callable[[str], list[str]]
) -> Words:
    """Replace every occurrence of up to ``n`` distinct non-stop words by one random synonym."""
    out = list(words)
    candidates = sorted({w for w in out if w.lower() not in _STOP_WORDS})
    rng.shuffle(candidates)
    replaced = 0
    for word in candidates:
        options = synonyms(word)
        if not options:
            continue
        new = rng.choice(options)
        out = [new if w == word else w for w in out]
        replaced += 1
        if replaced >= n:
            break
    # A multi-word synonym ("look up") becomes several words, as in EDA.
    return " ".join(out).split()


@functools.lru_cache(maxsize=1)
def _wordnet_synonyms() -> Callable[[str], list[str]] | None:
    """WordNet synonym lookup when nltk and its wordnet corpus load, else None."""
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
    except (ImportError, LookupError, OSError):
        return None

    def synonyms(word: str) -> list[str]:
        found = set()
        for synset in wordnet.synsets(word):
            for lemma in synset.lemmas():
                name = lemma.name().replace("_", " ").replace("-", " ").lower()
                name = "".join(c for c in name if c == " " or c.isalpha()).strip()
                if name and name != word.lower():
                    found.add(name)
        return sorted(found)

    return synonyms


def eda_operations() -> dict[str, Callable[[Words, int, random.Random], Words]]:
    """The EDA operations available in this environment, by name (fixed order)."""
    ops: dict[str, Callable[[Words, int, random.Random], Words]] = {}
    synonyms = _wordnet_synonyms()
    if synonyms is not None:
        ops["synonym_replacement"] = functools.partial(synonym_replacement, synonyms=synonyms)
    ops["random_insertion"] = random_insertion
    ops["random_swap"] = random_swap
    ops["random_deletion"] = random_deletion
    return ops


def _eda_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    ops = eda_operations()
    names = list(ops)
    counts = dict.fromkeys(names, 0)
    texts: list[tuple[str, ...]] = []
    labels = []
    for example, label in zip(split.texts, split.labels, strict=True):
        for _ in range(params["n_aug"]):
            fields = []
            for text in example:
                words = text.split()
                op = rng.choice(names)
                counts[op] += 1
                fields.append(" ".join(ops[op](words, _n_changed(words, params["alpha"]), rng)))
            texts.append(tuple(fields))
            labels.append(label)
    return Split(texts=texts, labels=labels), {"operations": names, "operation_counts": counts}


def _no_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    return Split(texts=[], labels=[]), {"operations": [], "operation_counts": {}}


def _check_n_aug(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StudyConfigError(f"Augmentation parameter n_aug must be an int >= 1, got {value!r}")


def _check_alpha(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise StudyConfigError(f"Augmentation parameter alpha must be in (0, 1], got {value!r}")


@dataclass(frozen=True)
class Augmentation:
    """A policy: ``make_copies(split, rng, params) -> (copies, metadata)`` plus its parameters'
    defaults and checks."""

    name: str
    make_copies: Callable[[Split, random.Random, dict], tuple[Split, dict]]
    defaults: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    operations: Callable[[], list[str]] = list  # names this environment offers
    version: str = VERSION


AUGMENTATIONS: dict[str, Augmentation] = {
    "none": Augmentation("none", _no_copies),
    "eda": Augmentation(
        "eda",
        _eda_copies,
        defaults={"n_aug": 1, "alpha": 0.1},
        checks={"n_aug": _check_n_aug, "alpha": _check_alpha},
        operations=lambda: list(eda_operations()),
    ),
}

_CACHE_KEY = re.compile(r"^[A-Za-z0-9._-]+$")


def _resolve_params(aug: Augmentation, params: dict | None) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(aug.defaults))
    if unknown:
        allowed = ", ".join(sorted(aug.defaults)) or "none"
        raise StudyConfigError(
            f"Unknown parameter(s) {', '.join(map(repr, unknown))} for data augmentation policy "
            f"{aug.name!r}. Allowed: {allowed}."
        )
    resolved = {**aug.defaults, **params}
    for name, check in aug.checks.items():
        check(resolved[name])
    return resolved


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars among the labels
        return value.item()
    raise TypeError(f"not JSON-serialisable: {value!r}")


def _fingerprint(split: Split) -> str:
    payload = json.dumps([split.texts, split.labels], ensure_ascii=False, default=_json_default)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path, policy: str, cache_key: str, seed: int) -> Path:
    """Where ``augment`` keeps the copies of (dataset ``cache_key``, ``policy``, ``seed``)."""
    return Path(cache_dir) / "augment" / f"{policy}-{cache_key}-s{seed}.jsonl"


def _read_cache(path: Path, header: dict, n_copies: int) -> tuple[Split, dict] | None:
    """The cached copies when the file exists, is whole and was built from the same inputs,
    else None (the caller rebuilds it)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(f.readline())
            if first.get("header") != header:
                return None
            records = [json.loads(line) for line in f]
        texts = [tuple(r["texts"]) for r in records]
        labels = [r["label"] for r in records]
        extra = first["extra"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    if len(texts) != n_copies:
        return None
    return Split(texts=texts, labels=labels), extra


def _write_cache(path: Path, header: dict, copies: Split, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"header": header, "extra": extra}, ensure_ascii=False) + "\n")
            for t, y in zip(copies.texts, copies.labels, strict=True):
                f.write(
                    json.dumps(
                        {"texts": list(t), "label": y}, ensure_ascii=False, default=_json_default
                    )
                    + "\n"
                )
        os.replace(tmp, path)  # readers see the old file or the whole new one, never a part
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def augment(
    split: Split,
    policy: str,
    seed: int,
    params: dict | None = None,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
) -> tuple[Split, dict]:
    """Return (originals followed by augmented copies, metadata).

    The result has ``(1 + n_aug) * len(split)`` examples for ``eda`` and is ``split`` itself for
    ``none``. Randomness comes only from ``random.Random(seed)``. Metadata (JSON-friendly, for
    logging): ``policy``, ``version``, ``operations`` (names available to this run),
    ``operation_counts`` (per operation, how many text fields it changed), ``n_aug``, ``alpha``.

    With both ``cache_dir`` and ``cache_key`` (a name for the dataset, e.g. "sst2-train-n1000"),
    the copies are read from / written atomically to
    ``<cache_dir>/augment/<policy>-<cache_key>-s<seed>.jsonl``; a cache built from other
    originals, parameters, operations or version is rebuilt.

    Raises:
        StudyConfigError: unknown policy, unknown or invalid parameter, or a ``cache_key`` that
            is not a plain file-name part ([A-Za-z0-9._-]).
    """
    aug = lookup(AUGMENTATIONS, policy, "data augmentation policy")
    resolved = _resolve_params(aug, params)
    meta = {
        "policy": aug.name,
        "version": aug.version,
        "n_aug": resolved.get("n_aug", 0),
        "alpha": resolved.get("alpha"),
    }
    if aug.name == "none":
        return split, {**meta, "operations": [], "operation_counts": {}}

    use_cache = cache_dir is not None and cache_key is not None
    if use_cache:
        if not _CACHE_KEY.match(cache_key):
            raise StudyConfigError(
                f"cache_key {cache_key!r} must be a plain file-name part ([A-Za-z0-9._-])"
            )
        path = cache_path(cache_dir, aug.name, cache_key, seed)
        header = {
            **meta,
            "seed": seed,
            "operations": aug.operations(),
            "n_source": len(split),
            "source_sha256": _fingerprint(split),
        }
        cached = _read_cache(path, header, n_copies=meta["n_aug"] * len(split))
        if cached is not None:
            copies, extra = cached
            return _join(split, copies), {**meta, **extra}

    copies, extra = aug.make_copies(split, random.Random(seed), resolved)
    if use_cache:
        _write_cache(path, header, copies, extra)
    return _join(split, copies), {**meta, **extra}


def _join(originals: Split, copies: Split) -> Split:
    return Split(
        texts=list(originals.texts) + list(copies.texts),
        labels=list(originals.labels) + list(copies.labels),
    )


def resolve_params(policy: str, params: dict | None) -> dict:
    """The policy's parameters with defaults filled in (used to build a cell's identity).

    Raises:
        StudyConfigError: unknown policy or parameter, or a value out of range.
    """
    return _resolve_params(lookup(AUGMENTATIONS, policy, "data augmentation policy"), params)


def version(policy: str) -> str:
    """The policy's version for a cell's identity, including the operations this machine offers
    (EDA's synonym replacement exists only where WordNet is installed, which changes results)."""
    aug = lookup(AUGMENTATIONS, policy, "data augmentation policy")
    ops = aug.operations()
    return f"{aug.version}:{'+'.join(sorted(ops))}" if ops else aug.version
