"""Identities and seeds: a stable hash of a canonical JSON form, and named random streams."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def _canonical(obj: Any) -> Any:
    """Canonical JSON-able form: floats via repr (stable), tuples as lists, dict keys sorted later."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    raise TypeError(f"cannot canonicalise {type(obj).__name__}: {obj!r}")


def stable_hash(identity: Mapping[str, Any], length: int = 16) -> str:
    """sha256 of the canonical JSON of ``identity`` (sorted keys), first ``length`` hex digits."""
    text = json.dumps(_canonical(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream (``init``, ``data_order``, ``dropout``...).

    Streams depend on the cell's seed and the stream's name only, so cells that differ in one
    factor share initial weights and data order (common random numbers): a paired comparison.
    """
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
