"""EDA's word operations (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting
Performance on Text Classification Tasks", Sec. 2) on a whitespace-split text, and the set of them
this environment offers (the synonym operations need a WordNet)."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

from study.augment import wordnet

Words = list[str]

# EDA's stop-word list (from the authors' code), kept out of synonym replacement.
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now""".split()
)


def n_changed(words: Words, fraction: float) -> int:
    """How many words an operation changes: ``max(1, int(fraction * len(words)))`` (EDA's n)."""
    return max(1, int(fraction * len(words)))


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


def random_insertion(
    words: Words, n: int, rng: random.Random, synonyms: Callable[[str], list[str]] | None = None
) -> Words:
    """Insert a word at a random position, ``n`` times.

    With ``synonyms`` (WordNet), as EDA's ``add_word``: a random synonym of a random word of the
    (growing) text, up to 10 tries to find a word that has one; a multi-word synonym becomes
    several words. Without: a copy of a random word of the text.
    """
    out = list(words)
    if not out:
        return out
    for _ in range(n):
        if synonyms is None:
            out.insert(rng.randrange(len(out) + 1), rng.choice(out))
            continue
        for _ in range(10):
            options = synonyms(rng.choice(out))
            if options:
                out.insert(rng.randrange(len(out) + 1), rng.choice(options))
                break
    return " ".join(out).split()


def synonym_replacement(
    words: Words, n: int, rng: random.Random, synonyms: Callable[[str], list[str]]
) -> Words:
    """Replace every occurrence of up to ``n`` distinct non-stop words by one random synonym
    (EDA's ``synonym_replacement``)."""
    out = list(words)
    candidates = sorted({w for w in out if w.lower() not in STOP_WORDS})
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


def eda_operations() -> dict[str, Callable[[Words, int, random.Random], Words]]:
    """The EDA operations available in this environment, by name (fixed order)."""
    ops: dict[str, Callable[[Words, int, random.Random], Words]] = {}
    synonyms = wordnet.synonym_lookup()
    if synonyms is not None:
        ops["synonym_replacement"] = functools.partial(synonym_replacement, synonyms=synonyms)
        ops["random_insertion"] = functools.partial(random_insertion, synonyms=synonyms)
    else:
        ops["random_insertion"] = random_insertion
    ops["random_swap"] = random_swap
    ops["random_deletion"] = random_deletion
    return ops


def eda_operation_names() -> list[str]:
    """The operation names EDA offers here, and the WordNet release when synonyms are among them."""
    names = list(eda_operations())
    if "synonym_replacement" in names:
        # Synonyms depend on the WordNet release; a fake lookup (tests) has no source.
        names.append(wordnet.wordnet_source() or "wordnet-unknown")
    return names
