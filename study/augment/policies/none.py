"""``none``: no copies (the split as it is); it takes no parameters."""

from __future__ import annotations

import random

from study.augment.policy import AUGMENTATIONS, Augmentation
from study.tasks.spec import Split


def no_copies(split: Split, rng: random.Random, params: dict) -> tuple[Split, dict]:
    """No copies, and no operations."""
    return Split(texts=[], labels=[]), {"operations": [], "operation_counts": {}}


AUGMENTATIONS.add("none", Augmentation("none", no_copies))
