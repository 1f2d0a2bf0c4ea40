"""``eda``: EDA (Wei & Zou 2019), each copy one random word operation per text field."""

from __future__ import annotations

import random

from study.augment.operations import eda_operation_names, eda_operations, n_changed
from study.augment.params import Fraction, PolicyParams, PositiveInt
from study.augment.policy import AUGMENTATIONS, Augmentation
from study.tasks.spec import Split


class EdaParams(PolicyParams):
    """``n_aug``: copies per example; ``alpha``: the fraction of a text's words an operation
    changes (at least one)."""

    n_aug: PositiveInt = 1
    alpha: Fraction = 0.1


def eda_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    """EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on
    Text Classification Tasks", Sec. 2): each copy applies one randomly chosen operation to a
    whitespace-split text, changing ``n = max(1, int(alpha * len(words)))`` words.

    Operations and how they differ from the paper:
    - ``synonym_replacement``: replace ``n`` distinct non-stop words by a random WordNet synonym
      (as in EDA). Offered only where a WordNet loads (NLTK's data, or Debian's ``wordnet-base``);
      the metadata's ``operations`` and ``version()`` say which operations a run had.
    - ``random_insertion``: with WordNet, insert a random synonym of a random word, ``n`` times
      (as in EDA); without, insert a copy of a random word of the text.
    - ``random_swap``: swap two random positions, ``n`` times (as in EDA).
    - ``random_deletion``: delete ``n`` distinct random words, never all of them. EDA deletes each
      word with probability ``alpha``; a fixed count makes ``alpha`` the same "fraction of words
      changed" for every operation and cannot empty a text.

    EDA's text cleaning (lower-casing, dropping non-letters) is not applied: the copies should
    differ from the originals only by the operation. EDA applies all four operations to make
    ``n_aug`` copies per sentence (``n_aug / 4`` each); here each copy draws one operation.
    Metadata: ``operations``, ``operation_counts`` (text fields each operation changed).
    """
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
                fields.append(" ".join(ops[op](words, n_changed(words, params["alpha"]), rng)))
            texts.append(tuple(fields))
            labels.append(label)
    return Split(texts=texts, labels=labels), {"operations": names, "operation_counts": counts}


AUGMENTATIONS.add("eda", Augmentation("eda", eda_copies, EdaParams, operations=eda_operation_names))
